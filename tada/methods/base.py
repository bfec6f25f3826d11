"""What a steering method is to the evaluation: an object that turns (model, prompts, α) into
interventions.

A *method variant* is one method on one layer set (``caa_localized`` = CAA on the functional
layers). The sweep engine hands a variant a batch of :class:`SweepRow` (one evaluation prompt
with its neutral / positive / negative rewrites, a seed and an α each) and asks for

* :meth:`MethodVariant.prompts`: the prompts the model generates from (the neutral ones for
  every activation method), and
* :meth:`MethodVariant.interventions`: the interventions active during that one batched call.

Rows whose α is 0 must come out bit-identical to plain generation of the neutral prompt, and
rows of other variants may share a batch (their α is then 0 for this variant), so one batch can
calibrate several variants at once. A new method (a baseline) plugs in by subclassing and
registering its family in :data:`tada.methods.FAMILIES`; the sweep and table rules do not change.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from typing import Any, Sequence


@dataclass(frozen=True)
class SweepRow:
    """One clip of a sweep: an evaluation prompt (and its rewrites), a seed and a signed α."""

    prompt_id: str
    neutral: str
    positive: str
    negative: str
    seed: int
    alpha: float

    @property
    def direction(self) -> str:
        """"pos" for α > 0, "neg" for α < 0, "zero" for α = 0."""
        return "pos" if self.alpha > 0 else ("neg" if self.alpha < 0 else "zero")

    def with_alpha(self, alpha: float) -> "SweepRow":
        return replace(self, alpha=float(alpha))


class MethodVariant(abc.ABC):
    """A method on a layer set. Subclasses set `family` and implement :meth:`interventions`."""

    #: method family, e.g. "caa", "pci"
    family: str = "base"
    #: α must be an integer (PCI's number of switched steps)
    integer_alpha: bool = False

    def __init__(self, name: str, layer_set: str, layers: Sequence[int] | None = None):
        self.name = str(name)
        self.layer_set = str(layer_set)
        self.layers = None if layers is None else [int(i) for i in layers]

    def prompts(self, rows: Sequence[SweepRow]) -> list[str]:
        """The prompts the model generates from (default: the neutral ones)."""
        return [row.neutral for row in rows]

    @abc.abstractmethod
    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        """Interventions for one batched generation of `rows` with `steps` sampler steps."""

    def max_alpha(self, steps: int) -> float | None:
        """The largest |α| the method allows (None: unbounded)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Provenance of the variant, written into sweep metadata."""
        return {"name": self.name, "family": self.family, "layer_set": self.layer_set, "layers": self.layers}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, layers={self.layers})"


class Unsteered(MethodVariant):
    """No intervention: the α = 0 reference clips shared by every method."""

    family = "none"

    def __init__(self) -> None:
        super().__init__("none", "none", None)

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        return []
