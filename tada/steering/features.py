"""Choosing SAE features for a concept (TF-IDF) and turning them into a steering vector.

For every frame step (the steps where the store kept per-frame activations) and SAE layer, the
mean activation of each feature over the positive prompts' frames, ``mean_pos``, and over the
negative prompts' frames, ``mean_neg``, are computed once per concept (:func:`feature_stats`).
The score of feature f is

    TF-IDF(f) = mean_pos(f) · log(1 + 1 / (mean_neg(f) + ε))

(for the reversed direction of an axis the roles of pos and neg swap). The steering vector of a
layer at a step is the sum of the unit decoder columns of the `top_features` best features.
Sampler steps between frame steps use the features of the nearest frame step.

Multi-concept: the signed terms' TF-IDF scores are summed and twice as many features are kept.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import contrast
from .sae import BatchTopKSAE
from .vectors import SteeringVector, load_tensors, save_tensors

STATS_FORMAT = "tada.sae_feature_stats"
EPS = 1e-6


def tfidf(mean_pos: np.ndarray, mean_neg: np.ndarray, eps: float = EPS) -> np.ndarray:
    """mean_pos · log(1 + 1/(mean_neg + ε))."""
    mean_pos, mean_neg = np.asarray(mean_pos, np.float64), np.asarray(mean_neg, np.float64)
    return mean_pos * np.log1p(1.0 / (np.maximum(mean_neg, 0.0) + eps))


def signed_tfidf(stats: Mapping[str, np.ndarray], sign: int, eps: float = EPS) -> np.ndarray:
    """TF-IDF of the "+" side (sign > 0) or of the "−" side (sign < 0) of an axis."""
    if sign > 0:
        return tfidf(stats["mean_pos"], stats["mean_neg"], eps)
    return tfidf(stats["mean_neg"], stats["mean_pos"], eps)


@torch.no_grad()
def mean_activation(sae: BatchTopKSAE, blocks, mode: str = "topk") -> tuple[np.ndarray, int]:
    """Mean feature activation over all rows of the (n, d) blocks, and the row count."""
    total = torch.zeros(sae.n_features, dtype=torch.float64)
    n = 0
    for block in blocks:
        x = torch.as_tensor(block, dtype=torch.float32).to(sae.W_enc.device)
        if x.shape[0]:
            total += sae.encode(x, mode).double().sum(dim=0).cpu()
            n += x.shape[0]
    if n == 0:
        raise ValueError("no activations to encode")
    return (total / n).numpy(), n


def feature_stats(store: Any, saes: Mapping[int, BatchTopKSAE], mode: str = "topk") -> dict[str, Any]:
    """mean_pos / mean_neg, each (frame_steps, layers, features), for the SAEs' layers."""
    fsteps = contrast.frame_steps(store)
    if not fsteps:
        raise ValueError("SAE feature scores need per-frame activations: the store has none "
                         "(set cache.frame_steps in the config)")
    pos, neg = contrast.pair_rows(store.samples)
    layers, lpos = contrast.layer_positions(store, sorted(saes))
    n_feat = {saes[layer].n_features for layer in layers}
    if len(n_feat) != 1:
        raise ValueError(f"the SAEs have different feature counts {sorted(n_feat)}")
    shape = (len(fsteps), len(layers), n_feat.pop())
    mean_pos, mean_neg = np.zeros(shape), np.zeros(shape)
    for f in range(len(fsteps)):
        for j, (layer, p) in enumerate(zip(layers, lpos)):
            mean_pos[f, j], _ = mean_activation(saes[layer], contrast.iter_role_frames(store, pos, f, p), mode)
            mean_neg[f, j], _ = mean_activation(saes[layer], contrast.iter_role_frames(store, neg, f, p), mode)
    return {"mean_pos": mean_pos, "mean_neg": mean_neg, "frame_steps": fsteps, "layers": layers,
            "pairs": int(len(pos))}


def save_feature_stats(path: str | os.PathLike, stats: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    save_tensors(path, {"mean_pos": np.asarray(stats["mean_pos"], np.float32),
                        "mean_neg": np.asarray(stats["mean_neg"], np.float32)},
                 {"format": STATS_FORMAT, "frame_steps": list(stats["frame_steps"]),
                  "layers": list(stats["layers"]), "pairs": stats.get("pairs"), **meta})


def load_feature_stats(path: str | os.PathLike) -> dict[str, Any]:
    tensors, meta = load_tensors(path)
    if meta.get("format") != STATS_FORMAT:
        raise ValueError(f"{path}: not an SAE feature-statistics file (format {meta.get('format')!r})")
    return {"mean_pos": tensors["mean_pos"].numpy().astype(np.float64),
            "mean_neg": tensors["mean_neg"].numpy().astype(np.float64), **meta}


def nearest_frame_step(n_steps: int, frame_steps: Sequence[int]) -> np.ndarray:
    """For every sampler step, the index of the nearest frame step (ties go to the earlier)."""
    fs = np.asarray(frame_steps)
    if fs.size == 0:
        raise ValueError("no frame steps")
    return np.abs(np.arange(n_steps)[:, None] - fs[None, :]).argmin(axis=1)


def top_features(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` highest scores along the last axis (best first)."""
    n = min(int(n), scores.shape[-1])
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :n]


def sae_vector(terms: Sequence[tuple[Mapping[str, Any], int]], decoders: Mapping[int, torch.Tensor],
               layers: Sequence[int], *, n_steps: int, n_features: int, concept: str,
               model: dict[str, Any], layer_set: str = "custom", eps: float = EPS,
               source: dict[str, Any] | None = None) -> SteeringVector:
    """The SAE :class:`SteeringVector` from signed feature-statistics terms.

    `terms` are (stats, sign) pairs (one term for a single concept); `decoders` maps a layer to
    its unit decoder columns (features, width); `n_features` features are kept per step and layer.
    """
    first = terms[0][0]
    fsteps, stat_layers = list(first["frame_steps"]), [int(x) for x in first["layers"]]
    for stats, _ in terms[1:]:
        if list(stats["frame_steps"]) != fsteps or [int(x) for x in stats["layers"]] != stat_layers:
            raise ValueError("feature statistics of the terms cover different frame steps or layers")
    missing = sorted(set(int(x) for x in layers) - set(stat_layers))
    if missing:
        raise KeyError(f"no SAE for layers {missing}; SAEs exist for {stat_layers}")
    scores = sum(signed_tfidf(stats, sign, eps) for stats, sign in terms)
    step_to_frame = nearest_frame_step(n_steps, fsteps)
    vectors, chosen = {}, {}
    for layer in sorted(int(x) for x in layers):
        j = stat_layers.index(layer)
        best = top_features(scores[:, j], n_features)           # (frame_steps, n)
        cols = decoders[layer].float()
        per_frame = torch.stack([cols[torch.as_tensor(b, dtype=torch.long)].sum(dim=0) for b in best])
        vectors[layer] = per_frame[torch.as_tensor(step_to_frame, dtype=torch.long)]
        chosen[str(layer)] = best.tolist()
    return SteeringVector(
        vectors=vectors, method="sae", concept=concept, model=model, layer_set=layer_set,
        hyperparameters={"top_features": int(n_features), "eps": eps, "score": "tfidf",
                         "frame_steps": fsteps, "step_rule": "nearest frame step"},
        source=dict(source or {}), info={"features": chosen})
