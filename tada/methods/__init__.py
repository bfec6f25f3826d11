"""Method variants for the evaluation: each turns (model, prompts, α) into interventions.

A variant is named ``<family>`` (global: every cross-attention layer), ``<family>_localized``
(the functional layers) or ``<family>_ablated`` (all but the functional layers), e.g.
``caa_localized`` or ``pci``. :func:`build_variant` makes one from its name; activation
families read their steering-vector file, the baselines (Text / Token Embeddings, FreeSliders,
Concept Sliders) their artifact at the same place, PCI needs only the layer set.
"""

from __future__ import annotations

import os
from typing import Sequence

from .base import MethodVariant, SweepRow, Unsteered
from .pci import PCIVariant, common_text_length
from .vector import VectorVariant
from .baseline_artifact import BaselineArtifact, check_support
from .freesliders import FreeSlidersVariant
from .sliders import SlidersVariant
from .text_embeddings import TextEmbeddingsVariant
from .token_embeddings import TokenEmbeddingsVariant

#: method family -> (variant class, does it read a steering-vector file?). The baselines read
#: their artifact (``vectors/<family>/<layer set>/<concept>.safetensors``) in its place.
FAMILIES: dict[str, tuple[type[MethodVariant], bool]] = {
    "caa": (VectorVariant, True),
    "austeer": (VectorVariant, True),
    "sae": (VectorVariant, True),
    "pci": (PCIVariant, False),
    "textemb": (TextEmbeddingsVariant, True),
    "tokenemb": (TokenEmbeddingsVariant, True),
    "freesliders": (FreeSlidersVariant, True),
    "sliders": (SlidersVariant, True),
}
#: the baseline families (their artifacts are made by rules/baselines.smk)
BASELINES = ("textemb", "tokenemb", "freesliders", "sliders")
LAYER_SET_SUFFIX = {"global": "", "localized": "_localized", "ablated": "_ablated"}


def parse_variant_name(name: str) -> tuple[str, str]:
    """``caa_localized`` -> ("caa", "localized"); ``pci`` -> ("pci", "global")."""
    for layer_set, suffix in LAYER_SET_SUFFIX.items():
        if suffix and name.endswith(suffix):
            family = name[: -len(suffix)]
            break
    else:
        family, layer_set = name, "global"
    if family not in FAMILIES:
        raise ValueError(f"unknown method variant '{name}': family '{family}' is not one of {sorted(FAMILIES)}")
    return family, layer_set


def variant_name(family: str, layer_set: str) -> str:
    return f"{family}{LAYER_SET_SUFFIX[layer_set]}"


def needs_vector(name: str) -> bool:
    return FAMILIES[parse_variant_name(name)[0]][1]


def build_variant(name: str, *, vector: str | os.PathLike | None = None,
                  layers: Sequence[int] | None = None, renorm: bool = False) -> MethodVariant:
    """The variant `name`; `vector` is its steering-vector file (activation families), `layers`
    its layer set's indices (PCI; None = every layer)."""
    family, layer_set = parse_variant_name(name)
    cls, reads_vector = FAMILIES[family]
    if reads_vector:
        if vector is None:
            raise ValueError(f"method variant '{name}' needs its steering-vector file")
        return cls(name, family, layer_set, vector, renorm=renorm)
    return cls(name, layer_set, None if layer_set == "global" else layers)


__all__ = ["BASELINES", "BaselineArtifact", "FAMILIES", "MethodVariant", "PCIVariant", "SweepRow", "Unsteered",
           "VectorVariant", "build_variant", "check_support", "common_text_length", "needs_vector",
           "parse_variant_name", "variant_name"]
