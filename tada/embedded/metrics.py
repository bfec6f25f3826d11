"""Measurements of world log-mels that training and the quality bar share, and the fitting of
the world's concept classifiers on a training set.

* :func:`frame_flux`, :func:`spectral_flux`: frame-to-frame change of log-mel frames;
* :func:`boundary_flux_ratio`: flux across token boundaries relative to flux inside tokens;
* :func:`onset_rates`: note onsets per second (:func:`tada.world.descriptors.onset_rate`);
* :func:`fit_classifiers`, :func:`fit_world_classifiers`: :class:`~tada.world.classifiers.ConceptClassifiers`
  on the rendered clips of a ``dataset.npz``.

Everything here reads the world only; the quality bar that generates with the model and scores
with the scorers is :mod:`tada.embedded_quality`, one layer up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_text
from ..world import features
from ..world.attributes import ClipAttributes
from ..world.classifiers import ConceptClassifiers
from ..world.dataset import make_dataset
from ..world.descriptors import onset_rate


def _as_batch(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float32)
    return mels[None] if mels.ndim == 2 else mels


def frame_flux(mels: np.ndarray) -> np.ndarray:
    """Mean absolute frame-to-frame change per transition: (B, frames - 1)."""
    m = _as_batch(mels)
    return np.abs(np.diff(m, axis=1)).mean(axis=2)


def spectral_flux(mels: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of log-mel frames (batch mean)."""
    return float(frame_flux(mels).mean())


def boundary_flux_ratio(mels: np.ndarray, frames_per_token: int) -> float:
    """Flux across token boundaries / flux between frames of the same token.

    With one frame per token every transition crosses a boundary and the ratio is 1 by
    definition (the output convolution still mixes neighbouring tokens).
    """
    flux = frame_flux(mels)
    p = int(frames_per_token)
    if p <= 1:
        return 1.0
    pos = np.arange(flux.shape[1])
    boundary = (pos % p) == p - 1
    return float(flux[:, boundary].mean() / max(flux[:, ~boundary].mean(), 1e-12))


def onset_rates(mels: np.ndarray, fps: float | None = None) -> np.ndarray:
    """Note onsets per second of each clip, from its log-mel frames (the world descriptor; mels
    it cannot read, such as another band count, fall back to librosa's onset detection)."""
    m = _as_batch(mels)
    try:
        return np.asarray(onset_rate(m), dtype=np.float64).reshape(len(m))
    except Exception:
        return np.array([_onset_rate_mel(x, fps) for x in m])


def _onset_rate_mel(mel: np.ndarray, fps: float | None) -> float:
    import librosa

    if fps is None:
        fps = features.SR / features.HOP
    env = np.maximum(np.diff(mel, axis=0), 0).mean(axis=1)
    env = np.concatenate([[0.0], env])
    hop = 512
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=int(round(fps * hop)), hop_length=hop)
    return len(onsets) / (mel.shape[0] / fps)


def fit_classifiers(data: dict[str, Any], limit: int | None = None) -> ConceptClassifiers:
    """ConceptClassifiers fitted on (the first `limit`) rendered clips of a ``dataset.npz``."""
    n = len(data["attributes"]) if limit is None else min(int(limit), len(data["attributes"]))
    attrs = [ClipAttributes.from_dict(json.loads(s)) for s in data["attributes"][:n]]
    mels = np.asarray(data["mels"][:n], dtype=np.float32)
    return ConceptClassifiers().fit(mels, attrs)


def fit_world_classifiers(dataset: str | Path, out_dir: str | Path, heldout_clips: int = 300,
                          seed: int = 99) -> dict[str, Any]:
    """Fit ConceptClassifiers on a training ``dataset.npz`` (rendered ground truth), save them to
    `out_dir` and record their accuracy on held-out rendered clips (``heldout_accuracy.json``)."""
    data = dict(np.load(dataset, allow_pickle=False))
    clf = fit_classifiers(data)
    clf.save(out_dir)
    ho = make_dataset(heldout_clips, seed=seed, split="heldout")
    acc = clf.evaluate(np.asarray(ho.mels, dtype=np.float32), ho.attributes)
    acc.update(train_clips=int(len(data["attributes"])), heldout_clips=int(heldout_clips))
    write_text(Path(out_dir) / "heldout_accuracy.json", json.dumps(acc, indent=1))
    return acc
