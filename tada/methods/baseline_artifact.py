"""The artifact file of a baseline variant, and which backend can run which baseline.

Every baseline family (``textemb``, ``tokenemb``, ``freesliders``, ``sliders``) reads one file per
(concept, layer set) at the place of a steering vector,
``results/{model}/vectors/{family}/{layer_set}/{concept}.safetensors``, so the sweep rules find it
the way they find vectors. The file holds the layer set's layers, the family's
hyper-parameters, the model it was made for, and the family's tensors: none for Text
Embeddings and FreeSliders, the token direction for Token Embeddings, the LoRA matrices (peft's
key names) for Concept Sliders. The safetensors header metadata key ``tada`` holds JSON:
``format`` (``tada.baseline``), ``version``, ``family``, ``concept``, ``layer_set``, ``layers``,
``hyperparameters``, ``model`` (``SteerableModel.describe()``) and ``info``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

FORMAT = "tada.baseline"
VERSION = 1

#: family -> backends that can run it (see the README's table; `generic` needs its own hooks)
SUPPORT: dict[str, tuple[str, ...]] = {
    "textemb": ("embedded", "stable_audio", "audioldm2", "ace_step15", "generic"),
    "tokenemb": ("embedded", "stable_audio", "audioldm2", "ace_step15"),
    "freesliders": ("embedded", "stable_audio", "audioldm2", "ace_step15"),
    "sliders": ("embedded", "stable_audio", "audioldm2", "ace_step15"),
}
WHY_NOT = {
    ("tokenemb", "generic"): "a generic backend does not map words to encoder-state positions",
    ("freesliders", "generic"): "the extra conditional passes need the denoiser's call convention, which a "
                                "generic backend does not describe",
    ("sliders", "generic"): "training calls the denoiser directly, which a generic backend does not describe",
}


def check_support(backend: str, families: Sequence[str]) -> None:
    """Raise naming the backend and the method when `backend` cannot run a baseline family."""
    for family in families:
        if family in SUPPORT and backend not in SUPPORT[family]:
            why = WHY_NOT.get((family, backend), "not implemented for this backend")
            raise ValueError(f"method '{family}' cannot run on backend '{backend}': {why}; "
                             f"remove its variants from evaluation.variants")


@dataclass
class BaselineArtifact:
    """One baseline's file (module doc)."""

    family: str
    concept: str
    layer_set: str
    layers: list[int] | None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "family": self.family, "concept": self.concept,
                "layer_set": self.layer_set, "layers": self.layers, "hyperparameters": self.hyperparameters,
                "model": self.model, "info": self.info}

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        from tada.io import atomic_path

        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.tensors.items()}
        meta = {"tada": json.dumps(self.metadata(), default=str), "format": "pt"}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BaselineArtifact":
        from safetensors.torch import load_file

        meta = read_metadata(path)
        return cls(family=meta["family"], concept=meta["concept"], layer_set=meta["layer_set"],
                   layers=meta["layers"], hyperparameters=dict(meta.get("hyperparameters") or {}),
                   model=dict(meta.get("model") or {}), info=dict(meta.get("info") or {}),
                   tensors=load_file(str(path)))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``tada`` metadata of a baseline file, without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"baseline file '{path}' does not exist")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    try:
        doc = json.loads(meta["tada"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a baseline file (no readable 'tada' metadata)") from err
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: format '{doc.get('format')}' is not {FORMAT}")
    return doc


def make_artifact(family: str, concept: str, layer_set: str, plan: Mapping[str, Any], model_info: Mapping[str, Any],
                  hyperparameters: Mapping[str, Any] | None = None, **kwargs: Any) -> BaselineArtifact:
    """An artifact on the layer set of `plan` (``vectors/layer_sets.json``)."""
    sets = plan.get("layer_sets", {})
    if layer_set not in sets:
        raise KeyError(f"layer set '{layer_set}' is not in the layer plan (has {sorted(sets)})")
    return BaselineArtifact(family=family, concept=concept, layer_set=layer_set,
                            layers=[int(i) for i in sets[layer_set]], model=dict(model_info),
                            hyperparameters=dict(hyperparameters or {}), **kwargs)
