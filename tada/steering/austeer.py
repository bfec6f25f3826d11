"""AUSteer in its additive form.

Per (step, layer, dim), over all pairs × frames, the momentum m = a(p+) − a(p−); r+ and r− are
the fractions of samples with m > 0 and m < 0; the score is β = sign(r+ − r−) · max(r+, r−)
(0 when r+ = r−: no consistent direction). At every step a global top-k of |β| over the active
layers is kept and the rest zeroed; the steering update is h ← h + α·β_sparse.

Per-frame activations are used at the steps where the store has them, the time-averaged ones
elsewhere. The dense scores do not depend on the layer set, so they are computed once per
concept (:func:`scores_from_store`, saved with :func:`save_scores`) and the layer sets (and
multi-concept sums) are cut from them with :func:`sparse_topk`.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from . import contrast
from .vectors import SteeringVector, load_tensors, save_tensors

SCORES_FORMAT = "tada.austeer_scores"


def sign_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Counts of m > 0 and m < 0 over the leading axis for m = pos − neg, and the sample count."""
    m = np.asarray(pos, dtype=np.float32) - np.asarray(neg, dtype=np.float32)
    return (m > 0).sum(axis=0), (m < 0).sum(axis=0), int(m.shape[0])


def consistency(n_pos: np.ndarray, n_neg: np.ndarray, n: int) -> np.ndarray:
    """β = sign(r+ − r−) · max(r+, r−) from sign counts over `n` samples."""
    if n <= 0:
        raise ValueError("no samples")
    r_pos, r_neg = np.asarray(n_pos, dtype=np.float64) / n, np.asarray(n_neg, dtype=np.float64) / n
    return np.sign(r_pos - r_neg) * np.maximum(r_pos, r_neg)


def scores_from_arrays(pos: np.ndarray, neg: np.ndarray, sample_axes: int = 1) -> np.ndarray:
    """β from paired activations; the first `sample_axes` axes (e.g. pairs, frames) are samples."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    shape = pos.shape[sample_axes:]
    n_pos, n_neg, n = sign_counts(pos.reshape(-1, *shape), neg.reshape(-1, *shape))
    return consistency(n_pos, n_neg, n)


def scores_from_store(store: Any, use_frames: bool = True) -> tuple[list[int], np.ndarray, list[str]]:
    """Dense β for every layer of the store: (model layers, (steps, layers, dim), source per step).

    The source of a step is "frames" when per-frame activations were used, else "means".
    """
    pos, neg = contrast.pair_rows(store.samples)
    layers, lpos = contrast.layer_positions(store, None)
    n_steps, d = int(store.means.shape[1]), int(store.means.shape[-1])
    n_pos = np.zeros((n_steps, len(layers), d), dtype=np.int64)
    n_neg = np.zeros_like(n_pos)
    for a, b in contrast.iter_pair_means(store, pos, neg, lpos):
        p, q, _ = sign_counts(a, b)
        n_pos += p
        n_neg += q
    beta = consistency(n_pos, n_neg, len(pos))
    sources = ["means"] * n_steps
    if use_frames:
        for f, step in enumerate(contrast.frame_steps(store)):
            if step >= n_steps:
                continue
            for j, p in enumerate(lpos):
                fp, fn, count = 0, 0, 0
                for a, b in contrast.iter_pair_frames(store, pos, neg, f, p):
                    # (pairs, frames, width): every pair × frame is a sample
                    q_pos, q_neg, n = sign_counts(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
                    fp, fn, count = fp + q_pos, fn + q_neg, count + n
                beta[step, j] = 0.0
                beta[step, j, :len(fp)] = consistency(fp, fn, count)
            sources[step] = "frames"
    return layers, beta, sources


def sparse_topk(beta: np.ndarray, k: int, active: Sequence[int] | None = None,
                widths: Sequence[int] | None = None) -> tuple[np.ndarray, int]:
    """Keep, at every step, the global top-k |β| over the active layer positions; zero the rest.

    `beta` is (steps, layers, dim); `active` are positions on its layer axis (None = all);
    `widths` are the true widths of the layers (dims beyond are padding and never chosen).
    Returns the sparse array (same shape, inactive layers all zero) and the k used (clipped to
    the number of active dimensions).
    """
    beta = np.asarray(beta, dtype=np.float64)
    s, n_layers, d = beta.shape
    active = list(range(n_layers)) if active is None else sorted(int(a) for a in active)
    if not active:
        raise ValueError("no active layers")
    widths = [d] * n_layers if widths is None else [int(w) for w in widths]
    valid = np.zeros((len(active), d), dtype=bool)
    for j, a in enumerate(active):
        valid[j, :widths[a]] = True
    k = int(min(int(k), int(valid.sum())))
    if k < 1:
        raise ValueError("top_k must be >= 1")
    sub = torch.from_numpy(np.ascontiguousarray(beta[:, active].reshape(s, -1)))
    magnitude = sub.abs().masked_fill(~torch.from_numpy(valid.reshape(-1)), -1.0)
    idx = magnitude.topk(k, dim=1, sorted=False).indices
    kept = torch.zeros_like(sub).scatter_(1, idx, sub.gather(1, idx))
    out = np.zeros_like(beta)
    out[:, active] = kept.numpy().reshape(s, len(active), d)
    return out, k


def austeer_vector(beta: np.ndarray, score_layers: Sequence[int], active: Sequence[int], *, k: int,
                   concept: str, model: dict[str, Any], layer_set: str = "custom",
                   source: dict[str, Any] | None = None) -> SteeringVector:
    """The sparse AUSteer :class:`SteeringVector` on the `active` model layers."""
    score_layers = [int(x) for x in score_layers]
    missing = sorted(set(int(a) for a in active) - set(score_layers))
    if missing:
        raise KeyError(f"no AUSteer scores for layers {missing}; scores cover {score_layers}")
    positions = [score_layers.index(int(a)) for a in sorted(active)]
    widths = [int(model["widths"][i]) for i in score_layers]
    sparse, k_used = sparse_topk(beta, k, positions, widths)
    return SteeringVector(
        vectors={score_layers[p]: sparse[:, p, :widths[p]] for p in positions}, method="austeer",
        concept=concept,
        model=model, layer_set=layer_set,
        hyperparameters={"top_k": int(k), "top_k_used": k_used, "form": "additive", "branch": "cond"},
        source=dict(source or {}))


def save_scores(path: str | os.PathLike, layers: Sequence[int], beta: np.ndarray, *, concept: str,
                model: dict[str, Any], sources: Sequence[str], source: dict[str, Any]) -> None:
    save_tensors(path, {"beta": np.asarray(beta, dtype=np.float32)},
                 {"format": SCORES_FORMAT, "concept": concept, "layers": [int(x) for x in layers],
                  "model": model, "step_sources": list(sources), "source": source})


def load_scores(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """(β (steps, layers, dim), metadata) of a scores file."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != SCORES_FORMAT:
        raise ValueError(f"{path}: not an AUSteer scores file (format {meta.get('format')!r})")
    return tensors["beta"].numpy().astype(np.float64), meta
