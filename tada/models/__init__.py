"""Backends behind the :class:`~tada.models.base.SteerableModel` protocol.

``load_model(cfg)`` builds a backend from a model's config block (see ``config.yaml``): the block
is checked against the config schema (the one list of the keys each backend reads, with their
defaults: :func:`tada.config.check_block`), ``backend`` picks the class, and the checked block,
defaults filled, goes to its ``from_config``.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from ..config import check_block
from .base import CrossAttentionLayer, Generation, SteerableModel, resolve_device, resolve_dtype
from .interventions import (AddVector, Ablate, Capture, Intervention, PatchKV, SwapCondition,
                            apply_interventions)

#: backend name -> "module:Class"; imported lazily so the core does not import diffusers.
BACKENDS: dict[str, str] = {
    "embedded": "tada.models.embedded:EmbeddedModel",
    "stable_audio": "tada.models.stable_audio:StableAudioModel",
    "audioldm2": "tada.models.audioldm2:AudioLDM2Model",
    "ace_step15": "tada.models.ace_step:AceStep15Model",
    "generic": "tada.models.generic:GenericModel",
}


def backend_class(name: str) -> type[SteerableModel]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; choose one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_model(cfg: Mapping[str, Any], key: str = "model") -> SteerableModel:
    """Build the backend described by one `models.<name>` config block.

    `key` is the config path used in error messages (e.g. ``models.stable_audio``).
    """
    if "backend" not in cfg:
        raise KeyError(f"{key}: missing required key 'backend'")
    cls = backend_class(cfg["backend"])
    return cls.from_config(check_block(cfg, "model", key), key=key)  # type: ignore[attr-defined]


__all__ = [
    "AddVector", "Ablate", "BACKENDS", "Capture", "CrossAttentionLayer", "Generation", "Intervention",
    "PatchKV", "SteerableModel", "SwapCondition", "apply_interventions", "backend_class", "load_model",
    "resolve_device", "resolve_dtype",
]
