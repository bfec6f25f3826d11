"""The file-to-file steps of the baseline rules (``rules/baselines.smk``).

Each writes one artifact (:mod:`.baseline_artifact`) per (family, layer set, concept) at
``results/{model}/vectors/{family}/{layer_set}/{concept}.safetensors``, recording the config
block, the tada version and the model that made it:

* ``textemb`` / ``freesliders``: the layer set and the hyper-parameters only (no model needed);
* ``tokenemb``: the token direction over the base prompts (:func:`.token_embeddings.token_direction`);
* ``sliders``: the trained LoRA (:func:`.slider_training.train_slider`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import tada

from .baseline_artifact import check_support, make_artifact

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def _plan(path: PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _concept(concepts_path: PathLike, concept: str) -> Any:
    from tada.prompts import load_concepts

    return load_concepts(concepts_path).steering(concept)


def _bases(path: PathLike, limit: int | None) -> list[str]:
    from tada.prompts.templates import load_prompt_list

    bases = load_prompt_list(path)
    return bases[: int(limit)] if limit else bases


def build_spec(family: str, concept: str, layer_set: str, plan: PathLike, hyper: Mapping[str, Any],
               model_cfg: Mapping[str, Any], out: PathLike) -> None:
    """Text Embeddings / FreeSliders: layers and hyper-parameters."""
    check_support(str(model_cfg.get("backend")), [family])
    info = {"tada": tada.__version__, "model_config": dict(model_cfg)}
    make_artifact(family, concept, layer_set, _plan(plan), {"backend": model_cfg.get("backend")},
                  dict(hyper), info=info).save(out)


def build_token(model: Any, concepts_path: PathLike, base_prompts: PathLike, concept: str, layer_set: str,
                plan: PathLike, hyper: Mapping[str, Any], out: PathLike) -> None:
    """Token Embeddings: the direction at the concept token."""
    from .token_embeddings import token_direction

    check_support(model.backend, ["tokenemb"])
    c = _concept(concepts_path, concept)
    direction, info = token_direction(model, c, _bases(base_prompts, hyper.get("base_prompts")),
                                      carrier=hyper.get("carrier"))
    info["tada"] = tada.__version__
    log.info("%s: token %r, %d base prompts, |d| = %.4f, carrier used for %d prompts", concept, info["token"],
             info["bases"], info["direction_norm"], len(info["carried"]))
    make_artifact("tokenemb", concept, layer_set, _plan(plan), model.describe(), dict(hyper),
                  info=info, tensors={"direction": direction}).save(out)


def build_slider(model: Any, concepts_path: PathLike, base_prompts: PathLike, concept: str, layer_set: str,
                 plan: PathLike, hyper: Mapping[str, Any], out: PathLike) -> dict[str, Any]:
    """Concept Sliders: train the LoRA of one concept on one layer set."""
    from .slider_training import slider_hyperparameters, train_slider

    check_support(model.backend, ["sliders"])
    c = _concept(concepts_path, concept)
    art = make_artifact("sliders", concept, layer_set, _plan(plan), model.describe(), dict(hyper))
    tensors, info = train_slider(model, c, _bases(base_prompts, None), art.layers, **slider_hyperparameters(hyper))
    info["tada"] = tada.__version__
    log.info("%s/%s: %d LoRA targets, loss %.4g -> %.4g in %.1f s", concept, layer_set, info["targets"],
             info["loss_first"], info["loss_last"], info["seconds"])
    art.tensors, art.info = tensors, info
    art.save(out)
    return info
