"""Multi-concept steering: signed combinations of steering axes.

* CAA: the signed sum of the single-concept vectors.
* AUSteer: the signed sum of the dense sign-consistency scores, then the global top-k.
* SAE: the signed sum of the TF-IDF scores (a "−" term scores the axis' negative side), with
  twice as many features kept (``feature_factor``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from . import austeer, features
from .vectors import SteeringVector

#: how many more SAE features a combination keeps than a single concept
FEATURE_FACTOR = 2


def _check_signs(signs: Iterable[int]) -> None:
    bad = [s for s in signs if s not in (1, -1)]
    if bad:
        raise ValueError(f"combination signs must be +1 or -1, got {bad}")


def combine_caa(terms: Sequence[tuple[SteeringVector, int]], name: str) -> SteeringVector:
    """Signed sum of CAA vectors (same model, layers and steps)."""
    if len(terms) < 2:
        raise ValueError("a combination needs at least two terms")
    _check_signs(s for _, s in terms)
    first = terms[0][0]
    for vec, _ in terms[1:]:
        vec.check_compatible(first.model)
        if vec.layers != first.layers or vec.steps != first.steps:
            raise ValueError(f"cannot combine '{first.concept}' (layers {first.layers}, {first.steps} steps) "
                             f"with '{vec.concept}' (layers {vec.layers}, {vec.steps} steps)")
    summed = {i: sum(s * vec.vectors[i] for vec, s in terms) for i in first.layers}
    return SteeringVector(
        vectors=summed, method=first.method, concept=name, model=first.model, layer_set=first.layer_set,
        hyperparameters=dict(first.hyperparameters),
        source={"terms": [{"concept": v.concept, "sign": s, "source": v.source} for v, s in terms]})


def combine_austeer(terms: Sequence[tuple[np.ndarray, Mapping[str, Any], int]], active: Sequence[int], *,
                    k: int, name: str, layer_set: str = "custom") -> SteeringVector:
    """AUSteer vector of the signed sum of dense scores; `terms` are (β, scores metadata, sign)."""
    if len(terms) < 2:
        raise ValueError("a combination needs at least two terms")
    _check_signs(s for _, _, s in terms)
    meta0 = terms[0][1]
    for beta, meta, _ in terms[1:]:
        if list(meta["layers"]) != list(meta0["layers"]) or beta.shape != terms[0][0].shape:
            raise ValueError("AUSteer scores of the terms cover different layers or shapes")
    summed = sum(s * np.asarray(beta, dtype=np.float64) for beta, _, s in terms)
    return austeer.austeer_vector(
        summed, meta0["layers"], active, k=k, concept=name, model=meta0["model"], layer_set=layer_set,
        source={"terms": [{"concept": m["concept"], "sign": s, "source": m.get("source", {})}
                          for _, m, s in terms]})


def combine_sae(terms: Sequence[tuple[Mapping[str, Any], int]], decoders: Mapping[int, torch.Tensor],
                layers: Sequence[int], *, n_steps: int, top_features: int, name: str,
                model: dict[str, Any], layer_set: str = "custom",
                feature_factor: int = FEATURE_FACTOR) -> SteeringVector:
    """SAE vector of the signed sum of TF-IDF scores with ``feature_factor × top_features`` features."""
    if len(terms) < 2:
        raise ValueError("a combination needs at least two terms")
    _check_signs(s for _, s in terms)
    vec = features.sae_vector(terms, decoders, layers, n_steps=n_steps,
                              n_features=feature_factor * int(top_features), concept=name, model=model,
                              layer_set=layer_set,
                              source={"terms": [{"concept": st.get("concept"), "sign": s} for st, s in terms]})
    vec.hyperparameters["feature_factor"] = int(feature_factor)
    return vec


def supported_combinations(combinations: Iterable[Any], concepts: Iterable[str]) -> list[Any]:
    """The combinations (objects with ``.concepts``) all of whose concepts are in `concepts`."""
    have = set(concepts)
    return [c for c in combinations if set(c.concepts) <= have]
