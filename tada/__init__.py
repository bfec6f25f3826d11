"""tada: find where text-to-music diffusion models decide musical concepts, and steer them.

The library is usable without Snakemake; the workflow calls the same functions.
``tada.steer`` and ``tada.SteeringVector`` are imported on first use (``import tada`` does not
import torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"steer": "tada.steering.api", "SteeringVector": "tada.steering.vectors"}

__all__ = ["__version__", "steer", "SteeringVector"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tada' has no attribute {name!r}")
