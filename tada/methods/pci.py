"""Prompt conditioning interpolation (PCI), the reference method that sets every α range.

With T sampler steps and an integer α ∈ [−T, T], the model is conditioned on the neutral prompt
for the first T − |α| steps and on the positive (α > 0) or negative (α < 0) prompt for the
remaining |α| steps. α = 0 is plain generation of the neutral prompt; |α| = T is generation of
the directional prompt. Global PCI switches the conditioning every cross-attention layer reads
(on a backend whose text also enters outside cross-attention, e.g. a pooled embedding, that
part is not switched: see :attr:`switches_all_text`); localized PCI switches it only at the
functional layers, the others keep reading the neutral prompt.

All three prompts are encoded to the same token count, so every layer's keys keep their shape.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from tada.models.interventions import SwapCondition

from .base import MethodVariant, SweepRow


def common_text_length(model: Any, prompts: Sequence[str]) -> int | None:
    """Token count that fits every prompt (None where the backend pads to a fixed length)."""
    fixed = getattr(model, "text_length", None)
    if fixed:
        return int(fixed)
    return max(int(model.token_count(p)) for p in prompts)


def swap_interventions(model: Any, prompts: Sequence[str], layers: Sequence[int] | None,
                       start_steps: Sequence[int], text_length: int | None) -> list[SwapCondition]:
    """SwapConditions giving `layers` (None = all) the encoder states of `prompts` (one per row)
    from each row's start step on, one per text stream the backend has."""
    encoded = model.encode_prompts(list(prompts), text_length=text_length)
    if isinstance(encoded, torch.Tensor):
        return [SwapCondition(layers, encoded, start_steps=list(start_steps))]
    if isinstance(encoded, Mapping) and hasattr(model, "layer_streams"):
        chosen = set(range(len(model.layers)) if layers is None else layers)
        out = []
        for stream, states in encoded.items():
            stream_layers = [i for i, s in enumerate(model.layer_streams) if s == stream and i in chosen]
            if stream_layers:
                out.append(SwapCondition(stream_layers, states, start_steps=list(start_steps)))
        return out
    raise TypeError(f"{type(model).__name__}.encode_prompts returns {type(encoded).__name__}; "
                    "PCI needs the encoder states its cross-attention layers read")


class PCIVariant(MethodVariant):
    """PCI on all cross-attention layers (layers=None) or on a layer set."""

    family = "pci"
    integer_alpha = True

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        steps = int(steps)
        starts, targets = [], []
        for row in rows:
            a = int(round(row.alpha))
            if a != row.alpha or abs(a) > steps:
                raise ValueError(f"{self.name}: α must be an integer in [-{steps}, {steps}], got {row.alpha}")
            starts.append(steps - abs(a))  # a start step of T is never reached: α = 0 is untouched
            targets.append(row.positive if a > 0 else row.negative if a < 0 else row.neutral)
        if all(s >= steps for s in starts):
            return []
        length = common_text_length(model, [p for r in rows for p in (r.neutral, r.positive, r.negative)])
        return swap_interventions(model, targets, self.layers, starts, length)

    def text_length(self, model: Any, rows: Sequence[SweepRow]) -> int | None:
        return common_text_length(model, [p for r in rows for p in (r.neutral, r.positive, r.negative)])

    def max_alpha(self, steps: int) -> float:
        return float(steps)

    @property
    def switches_all_text(self) -> bool:
        return self.layers is None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["switches"] = "every cross-attention layer" if self.layers is None else "functional layers"
        return out
