"""Steering vectors (CAA, AUSteer, SAE), their artifact, layer sets, combinations, and how to
apply them (:func:`steer`, :func:`diffusers_processors`).

Submodules are imported on first use, so ``import tada.steering`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SteeringVector": "vectors",
    "IncompatibleVectorError": "vectors",
    "steer": "api",
    "diffusers_processors": "api",
    "BatchTopKSAE": "sae",
    "SAEConfig": "sae",
    "resolve_layer_set": "layersets",
    "LAYER_SETS": "layersets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
