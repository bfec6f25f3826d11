"""Activation steering with a precomputed vector (CAA, AUSteer, SAE): h ← h + α·v.

The vector file fixes the layers (its layer set) and the per-step schedule; α is per row of the
batch, so rows of other variants (α = 0 here) pass through untouched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from tada.steering.vectors import SteeringVector

from .base import MethodVariant, SweepRow


class VectorVariant(MethodVariant):
    """A steering-vector method on the layer set its file was built for."""

    def __init__(self, name: str, family: str, layer_set: str, vector: str | os.PathLike | SteeringVector, *,
                 renorm: bool = False):
        self.family = str(family)
        self.vector = vector if isinstance(vector, SteeringVector) else SteeringVector.load(vector)
        self.path = None if isinstance(vector, SteeringVector) else Path(vector)
        self.renorm = bool(renorm)
        super().__init__(name, layer_set, self.vector.layers)

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        if self.vector.steps > 1 and self.vector.steps != int(steps):
            raise ValueError(f"{self.name}: the vector has {self.vector.steps} steps but the sweep "
                             f"generates with {steps}; use the model's step count the vector was built with")
        self.vector.check_compatible(model)
        return [self.vector.intervention([row.alpha for row in rows], renorm=self.renorm)]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        digest = None if self.path is None else hashlib.sha256(self.path.read_bytes()).hexdigest()
        out.update(vector=None if self.path is None else str(self.path), vector_sha256=digest,
                   concept=self.vector.concept, renorm=self.renorm)
        return out
