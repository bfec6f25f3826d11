r"""LPAPS: the preservation distance between two clips (REFERENCE "Evaluation protocol").

Learned perceptual audio patch similarity on the CLAP audio encoder. For two clips :math:`a, b`
let :math:`f^s_p(\cdot) \in \mathbb{R}^{C_s}` be the channel vector of stage :math:`s` at position
:math:`p` (one of the :math:`P_s = H_s W_s` patches of that stage's map,
:meth:`tada.scorers.clap.ClapScorer.stage_features`). With the eps-guarded unit normalisation
:math:`\hat f = f / (\lVert f \rVert_2 + \varepsilon)`, :math:`\varepsilon = 10^{-10}`,

.. math::

    \mathrm{LPAPS}(a, b) = \sum_s \frac{1}{P_s} \sum_p
        \big\lVert \hat f^s_p(a) - \hat f^s_p(b) \big\rVert_2^2 .

Each term is in :math:`[0, 4]` (two unit vectors), so the sum is in :math:`[0, 4 S]`; in practice
about 0-4 (REFERENCE). There are no learned per-channel weights (the "L" is the CLAP features).
The LAION CLAP has :math:`S = 4` stages; the world CLAP (``data/embedded_clap``) has
:math:`S = 2`, so its values are on a smaller scale than the paper's.

Long clips are windowed (:func:`lpaps`): the clip is cut into consecutive non-overlapping
windows; if the length is not a multiple of the window, one last window is taken flush with the
end (it overlaps its predecessor) so that every frame/sample is seen and no window is padded; a
clip no longer than one window is one window (padded by the encoder's own input preparation).
The distance is the mean of the per-window distances. Windows are ``window_s`` seconds of audio
for the LAION CLAP (10 s, its processor's input length; audio is resampled to the processor's
rate first) and :data:`~tada.scorers.clap.WORLD_FRAMES` = 128 log-mel frames (4 s) for the world
CLAP, which is what it sees per clip (``window_s`` is not used there). When the two clips of a
pair differ in length, both are cropped to the shorter one.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .base import Clips, as_clips

#: the eps of the unit normalisation of each position's channel vector
EPS = 1e-10


def _positions(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C); (B, P, C) unchanged; (B, C) -> (B, 1, C)."""
    if x.ndim == 4:
        return x.flatten(2).transpose(1, 2)
    if x.ndim == 3:
        return x
    if x.ndim == 2:
        return x[:, None]
    raise ValueError(f"a stage feature map must be (B, C, H, W), (B, positions, C) or (B, C), got {tuple(x.shape)}")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + EPS)


def lpaps_from_features(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor]) -> np.ndarray:
    """LPAPS (module docstring) of each pair from precomputed stage maps; shape (B,), float64.

    `feats_a[s]` and `feats_b[s]` are stage `s` of the two batches, both ``(B, C, H, W)`` (channels
    first, as :meth:`ClapScorer.stage_features` returns) or both ``(B, positions, C)``.
    """
    if len(feats_a) != len(feats_b):
        raise ValueError(f"lpaps: {len(feats_a)} stage maps for a but {len(feats_b)} for b")
    if not feats_a:
        raise ValueError("lpaps: no stage feature maps")
    total = None
    for s, (fa, fb) in enumerate(zip(feats_a, feats_b)):
        fa, fb = torch.as_tensor(fa), torch.as_tensor(fb)
        if fa.shape != fb.shape:
            raise ValueError(f"lpaps: stage {s} maps differ in shape: a {tuple(fa.shape)}, b {tuple(fb.shape)}")
        pa = _unit(_positions(fa).double())
        pb = _unit(_positions(fb.to(fa.device)).double())
        d = ((pa - pb) ** 2).sum(dim=-1).mean(dim=-1)  # (B,)
        total = d if total is None else total + d
    return total.cpu().numpy()


def _windows(length: int, window: int) -> list[tuple[int, int]]:
    """Consecutive windows covering [0, length); a remainder gets one window flush with the end."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, window))
    if starts[-1] + window < length:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


def _world_mels(view: Clips) -> np.ndarray:
    if view.features is not None:
        return np.asarray(view.features, dtype=np.float32)
    from .clap import _world_mels as mels_of

    return mels_of(view.audio, view.sample_rate)


def lpaps(scorer: Any, clips_a: Any, clips_b: Any, sample_rate: int | None = None,
          window_s: float = 10.0) -> np.ndarray:
    """LPAPS between clip ``i`` of `clips_a` and clip ``i`` of `clips_b`; shape (B,), float64.

    `scorer` is a :class:`~tada.scorers.clap.ClapScorer` (anything with ``stage_features``,
    ``batch_size`` and ``world``). Clips are Generations, :class:`Clips` or audio arrays with
    `sample_rate` (see :func:`tada.scorers.base.as_clips`); for the world CLAP, world log-mel
    ``features`` are used directly (audio is turned into world log-mels). Long clips are
    windowed and the per-window distances averaged (module docstring).
    """
    if not window_s or float(window_s) <= 0:
        raise ValueError(f"lpaps: window_s must be > 0, got {window_s!r}")
    va, vb = as_clips(clips_a, sample_rate), as_clips(clips_b, sample_rate)
    if len(va) != len(vb):
        raise ValueError(f"lpaps pairs clip i of a with clip i of b, but a has {len(va)} clips and b has {len(vb)}")
    n = len(va)
    if n == 0:
        return np.zeros(0, np.float64)
    bs = max(1, int(getattr(scorer, "batch_size", 16)))
    if getattr(scorer, "world", False):
        from .clap import WORLD_FRAMES

        xa, xb = _world_mels(va), _world_mels(vb)  # (B, T, n_mels)
        window, sr = WORLD_FRAMES, None

        def clips_of(x: np.ndarray) -> Clips:
            return Clips(None, va.sample_rate, x)
    else:
        from .clap import _resample

        sr = int(scorer.processor.feature_extractor.sampling_rate)
        xa = np.stack([_resample(a, va.sample_rate, sr) for a in va.audio])
        xb = np.stack([_resample(b, vb.sample_rate, sr) for b in vb.audio])
        window = int(round(float(window_s) * sr))

        def clips_of(x: np.ndarray) -> Clips:
            return Clips(x, sr, None)
    length = min(xa.shape[1], xb.shape[1])
    spans = _windows(length, window)
    out = np.zeros(n, np.float64)
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        for lo, hi in spans:
            fa = scorer.stage_features(clips_of(xa[start:stop, lo:hi]))
            fb = scorer.stage_features(clips_of(xb[start:stop, lo:hi]))
            out[start:stop] += lpaps_from_features(fa, fb)
    return out / len(spans)


__all__ = ["EPS", "lpaps", "lpaps_from_features"]
