"""File-to-file steps of the vectors stage (each workflow script calls one of these).

Inputs are activation-store manifests (``results/{model}/activations/contrastive_{c}.json``,
the store beside), the layer-set plan written by :func:`plan_layer_sets`, score files and SAE
weights; outputs are :class:`SteeringVector` files and their intermediates.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from . import austeer, caa, combine, contrast, features
from .layersets import functional_layers, layer_sets
from .sae import BatchTopKSAE, SAEConfig, train_layer_sae
from .vectors import SteeringVector

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def _store(manifest: PathLike):
    from tada.cache import open_store

    return open_store(manifest)


def read_plan(path: PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def combination_terms(concepts_path: PathLike, studied: Sequence[str], enabled: bool = True
                      ) -> dict[str, list[tuple[str, int]]]:
    """The combinations of a concepts file whose concepts are all `studied`: id -> [(concept, sign)]."""
    if not enabled:
        return {}
    from tada.prompts.concepts import load_concepts

    table = load_concepts(concepts_path)
    return {c.id: [(t.concept, int(t.sign)) for t in c.terms]
            for c in combine.supported_combinations(table.combinations, studied)}


def plan_layer_sets(manifest: PathLike, layers_json: PathLike | None, *, override: Sequence[int] | None,
                    names: Sequence[str], sae_layer_sets: Sequence[str] | None) -> dict[str, Any]:
    """Resolve every layer set for the model of `manifest` and the layers that need an SAE."""
    info = json.loads(Path(manifest).read_text())
    n_layers = len(info["layers"])
    functional = functional_layers({"localize": {"layers": override}}, layers_json)
    sets = layer_sets(n_layers, functional, list(names))
    sae_sets = list(names) if sae_layer_sets is None else list(sae_layer_sets)
    missing = sorted(set(sae_sets) - set(sets))
    if missing:
        sets.update(layer_sets(n_layers, functional, missing))
    sae_layers = sorted(set().union(*(sets[n] for n in sae_sets))) if sae_sets else []
    return {"n_layers": n_layers, "layer_names": list(info["layers"]), "functional": functional,
            "layer_sets": sets, "sae_layer_sets": sae_sets, "sae_layers": sae_layers}


def build_caa(manifest: PathLike, plan: Mapping[str, Any], concept: str, layer_set: str,
              normalize: bool = False) -> SteeringVector:
    return caa.caa_vector(_store(manifest), concept, plan["layer_sets"][layer_set], unit=normalize,
                          layer_set=layer_set)


def build_austeer_scores(manifest: PathLike, concept: str, out: PathLike) -> None:
    store = _store(manifest)
    layers, beta, sources = austeer.scores_from_store(store)
    austeer.save_scores(out, layers, beta, concept=concept, model=contrast.model_description(store),
                        sources=sources, source={"store_hash": contrast.store_fingerprint(store),
                                                 "pairs": int(len(contrast.pair_rows(store.samples)[0]))})


def build_austeer(scores: PathLike, plan: Mapping[str, Any], concept: str, layer_set: str,
                  top_k: int) -> SteeringVector:
    beta, meta = austeer.load_scores(scores)
    vec = austeer.austeer_vector(beta, meta["layers"], plan["layer_sets"][layer_set], k=top_k, concept=concept,
                                 model=meta["model"], layer_set=layer_set, source=meta.get("source", {}))
    vec.info["step_sources"] = meta.get("step_sources")
    return vec


def build_sae(manifests: Sequence[PathLike], layer: int, config: Mapping[str, Any], weights: PathLike,
              metrics: PathLike, device: str = "cpu") -> dict[str, Any]:
    """Train the SAE of one layer on every store's frames; write weights and a one-row CSV."""
    from tada.io import write_csv

    stores = [_store(m) for m in manifests]
    cfg = SAEConfig.from_dict(dict(config))
    sae, history, m = train_layer_sae(stores, int(layer), cfg, holdout=float(config.get("holdout", 0.1)),
                                      device=device)
    desc = contrast.model_description(stores[0])
    row = {"layer": int(layer), "layer_name": desc["layers"][int(layer)], "width": sae.d_in,
           "features": sae.n_features, "k": sae.k, "train_samples": history.samples,
           "train_steps": history.steps, "final_mse": history.mse[-1] if history.mse else float("nan"),
           "train_seconds": round(history.seconds, 2), **m}
    sae.save(weights, meta={"layer": int(layer), "model": desc, "hyperparameters": cfg.to_dict(),
                            "concepts": [s.samples["concept"].iloc[0] if "concept" in s.samples else str(s.path)
                                         for s in stores],
                            "store_hashes": [contrast.store_fingerprint(s) for s in stores], "metrics": row})
    write_csv(metrics, pd.DataFrame([row]))
    log.info("layer %s: %s", layer, row)
    return row


def build_sae_stats(manifest: PathLike, saes: Mapping[int, PathLike], concept: str, out: PathLike) -> None:
    store = _store(manifest)
    loaded = {int(layer): BatchTopKSAE.load(p)[0] for layer, p in saes.items()}
    stats = features.feature_stats(store, loaded)
    features.save_feature_stats(out, stats, {
        "concept": concept, "model": contrast.model_description(store), "n_steps": int(store.means.shape[1]),
        "source": {"store_hash": contrast.store_fingerprint(store)}})


def load_decoders(saes: Mapping[int, PathLike]) -> dict[int, Any]:
    return {int(layer): BatchTopKSAE.load(p)[0].decoder_columns() for layer, p in saes.items()}


def build_sae_vector(stats: PathLike, saes: Mapping[int, PathLike], plan: Mapping[str, Any], concept: str,
                     layer_set: str, top_features: int, eps: float = features.EPS) -> SteeringVector:
    st = features.load_feature_stats(stats)
    layers = plan["layer_sets"][layer_set]
    return features.sae_vector([(st, 1)], load_decoders({i: saes[i] for i in layers}), layers,
                               n_steps=int(st["n_steps"]), n_features=top_features, concept=concept,
                               model=st["model"], layer_set=layer_set, eps=eps, source=st.get("source", {}))


def build_combination(method: str, name: str, terms: Sequence[tuple[str, int]], inputs: Mapping[str, PathLike],
                      plan: Mapping[str, Any], layer_set: str, *, top_k: int = 2048, top_features: int = 20,
                      saes: Mapping[int, PathLike] | None = None) -> SteeringVector:
    """Multi-concept vector; `inputs` maps each term's concept to its CAA vector (caa), its AUSteer
    scores (austeer) or its SAE feature statistics (sae)."""
    if method == "caa":
        return combine.combine_caa([(SteeringVector.load(inputs[c]), s) for c, s in terms], name)
    if method == "austeer":
        parts = [(*austeer.load_scores(inputs[c]), s) for c, s in terms]
        return combine.combine_austeer(parts, plan["layer_sets"][layer_set], k=top_k, name=name,
                                       layer_set=layer_set)
    if method == "sae":
        layers = plan["layer_sets"][layer_set]
        parts = [(features.load_feature_stats(inputs[c]), s) for c, s in terms]
        st = parts[0][0]
        return combine.combine_sae(parts, load_decoders({i: saes[i] for i in layers}), layers,
                                   n_steps=int(st["n_steps"]), top_features=top_features, name=name,
                                   model=st["model"], layer_set=layer_set)
    raise ValueError(f"unknown steering method '{method}'")
