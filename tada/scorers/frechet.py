r"""Fréchet audio distance between two sets of clip embeddings.

Fit a Gaussian to each set of embeddings (rows), :math:`\mathcal N(\mu_a, \Sigma_a)` and
:math:`\mathcal N(\mu_b, \Sigma_b)` (sample mean, unbiased sample covariance), and take the
Fréchet (2-Wasserstein squared) distance between them:

.. math::

    d^2 = \lVert \mu_a - \mu_b \rVert_2^2
          + \operatorname{Tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a \Sigma_b)^{1/2}\big).

The matrix square root is :func:`scipy.linalg.sqrtm`. Numerical care: its result can carry tiny
imaginary parts (round-off), so the real part is taken; when the product is singular or nearly
so (typically fewer rows than dimensions) and the square root comes out non-finite or inaccurate
(relative residual :math:`\lVert X X - \Sigma_a\Sigma_b\rVert_F / \lVert\Sigma_a\Sigma_b\rVert_F`
above ``1e-6``), it is recomputed with :math:`\varepsilon I` (``eps = 1e-6``) added to both
covariances. The result is clipped at 0 (it is a squared distance; round-off can make it
``-1e-12``).

The embeddings of the CLAP scorer are :meth:`tada.scorers.clap.ClapScorer.embed_audio` (the
projected, unit-normalised audio embedding; the world CLAP embeds the first 128 log-mel frames,
the LAION CLAP what its processor makes of the clip).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from .base import _slice, as_clips

#: the ridge added to both covariances when their product is (nearly) singular
EPS = 1e-6
#: relative residual of the matrix square root above which the ridge is added
_SQRT_TOL = 1e-6


def _as_set(emb: Any, name: str) -> np.ndarray:
    if hasattr(emb, "detach"):
        emb = emb.detach().cpu().numpy()
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"frechet_distance: {name} must be a 2-d array (n_clips, dim), got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"frechet_distance: {name} has {len(x)} row(s); a covariance needs at least 2")
    if not np.isfinite(x).all():
        raise ValueError(f"frechet_distance: {name} contains non-finite values")
    return x


def _sqrtm_trace(sa: np.ndarray, sb: np.ndarray) -> float:
    """Tr((sa sb)^1/2), with the eps ridge when the plain square root is not trustworthy."""
    prod = sa @ sb
    ref = max(np.linalg.norm(prod), 1e-300)
    root = linalg.sqrtm(prod)
    ok = np.isfinite(root).all() and np.linalg.norm(root @ root - prod) / ref <= _SQRT_TOL
    if not ok:
        ridge = EPS * np.eye(len(sa))
        prod = (sa + ridge) @ (sb + ridge)
        root = linalg.sqrtm(prod)
    return float(np.real(np.trace(root)))


def frechet_distance(emb_a: np.ndarray, emb_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (rows = clips).

    Raises ValueError when a set is not 2-d, has fewer than 2 rows, is non-finite, or the two
    widths differ.
    """
    a, b = _as_set(emb_a, "emb_a"), _as_set(emb_b, "emb_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: embedding widths differ: emb_a has {a.shape[1]}, emb_b has {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sa = np.atleast_2d(np.cov(a, rowvar=False))
    sb = np.atleast_2d(np.cov(b, rowvar=False))
    diff = mu_a - mu_b
    d = float(diff @ diff) + float(np.trace(sa) + np.trace(sb)) - 2.0 * _sqrtm_trace(sa, sb)
    return max(d, 0.0)


def audio_embeddings(scorer: Any, clips: Any, sample_rate: int | None = None) -> np.ndarray:
    """``scorer.embed_audio`` of every clip, in batches of ``scorer.batch_size``: (n, dim) float64."""
    view = as_clips(clips, sample_rate)
    bs = max(1, int(getattr(scorer, "batch_size", 16)))
    out = [np.asarray(scorer.embed_audio(_slice(view, s, s + bs)).detach().cpu().numpy(), dtype=np.float64)
           for s in range(0, len(view), bs)]
    if not out:
        raise ValueError("audio_embeddings: no clips")
    return np.concatenate(out)


def frechet_to_reference(scorer: Any, clips: Any, reference_embeddings: np.ndarray,
                         sample_rate: int | None = None) -> float:
    """Fréchet distance between the embeddings of `clips` (see :func:`audio_embeddings`) and a
    precomputed reference set (n_ref, dim), e.g. ``audio_embeddings(scorer, reference_clips)``."""
    return frechet_distance(audio_embeddings(scorer, clips, sample_rate), reference_embeddings)


__all__ = ["EPS", "audio_embeddings", "frechet_distance", "frechet_to_reference"]
