"""Contrastive activation addition (CAA).

For every (step, layer): v = mean over pairs of a(p+) − a(p−), where a is the conditional-branch
cross-attention output averaged over time frames; optionally unit-normalised. Applied as
h ← h + α·v on every frame of the conditional branch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import contrast
from .vectors import SteeringVector


def mean_difference(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mean over the first axis of pos − neg (paired rows), in float64."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    if pos.shape != neg.shape:
        raise ValueError(f"pos and neg activations differ in shape: {pos.shape} vs {neg.shape}")
    if pos.shape[0] == 0:
        raise ValueError("no pairs")
    return (pos.astype(np.float64) - neg.astype(np.float64)).mean(axis=0)


def normalize(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Unit L2 norm along the last axis (zero vectors stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, eps)


def caa_directions(pos: np.ndarray, neg: np.ndarray, unit: bool = False) -> np.ndarray:
    """CAA from paired time-averaged activations (pairs, steps, layers, dim) -> (steps, layers, dim)."""
    v = mean_difference(pos, neg)
    return normalize(v) if unit else v


def caa_from_store(store: Any, layers: Sequence[int] | None = None, unit: bool = False,
                   branch: str = "cond") -> tuple[list[int], np.ndarray, int]:
    """CAA read blockwise from a store: (model layer indices, (steps, layers, dim) array, pairs)."""
    pos, neg = contrast.pair_rows(store.samples)
    chosen, lpos = contrast.layer_positions(store, layers)
    total = None
    for a, b in contrast.iter_pair_means(store, pos, neg, lpos, branch=branch):
        diff = (a.astype(np.float64) - b.astype(np.float64)).sum(axis=0)
        total = diff if total is None else total + diff
    v = total / len(pos)
    return chosen, (normalize(v) if unit else v), len(pos)


def caa_vector(store: Any, concept: str, layers: Sequence[int] | None = None, *, unit: bool = False,
               layer_set: str = "custom", model: dict[str, Any] | None = None) -> SteeringVector:
    """The CAA :class:`SteeringVector` of `concept` from its contrastive store."""
    chosen, v, n_pairs = caa_from_store(store, layers, unit=unit)
    widths = contrast.layer_widths(store)
    return SteeringVector(
        vectors={layer: v[:, j, :widths[layer]] for j, layer in enumerate(chosen)}, method="caa",
        concept=concept, model=model or contrast.model_description(store), layer_set=layer_set,
        hyperparameters={"normalize": bool(unit), "branch": "cond"},
        source={"store_hash": contrast.store_fingerprint(store), "pairs": int(n_pairs)})
