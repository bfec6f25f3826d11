"""What the baseline variants share: the artifact they read, the backend check, provenance,
and the lazily encoded prompt states.

A baseline variant is built like an activation variant, ``cls(name, family, layer_set, path)``,
from its artifact (:mod:`.baseline_artifact`), which fixes its layers and hyper-parameters.
Prompt states are encoded when the generation starts, at its ``text_length``
(``model.run_text_length``), so that they have the token count of the states the layers read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .base import MethodVariant, SweepRow
from .baseline_artifact import BaselineArtifact, check_support


class BaselineVariant(MethodVariant):
    """A baseline family on the layer set of its artifact."""

    def __init__(self, name: str, family: str, layer_set: str, artifact: str | os.PathLike | BaselineArtifact, *,
                 renorm: bool = False):
        self.family = str(family)
        self.artifact = artifact if isinstance(artifact, BaselineArtifact) else BaselineArtifact.load(artifact)
        self.path = None if isinstance(artifact, BaselineArtifact) else Path(artifact)
        if self.artifact.family != self.family or self.artifact.layer_set != layer_set:
            raise ValueError(f"{name}: the file {self.path} is a {self.artifact.family} artifact on layer set "
                             f"'{self.artifact.layer_set}', not {self.family} on '{layer_set}'")
        super().__init__(name, layer_set, self.artifact.layers)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.artifact.hyperparameters

    def check_model(self, model: Any) -> None:
        """Raise naming the backend and method when `model` cannot run this family."""
        check_support(getattr(model, "backend", type(model).__name__), [self.family])

    def directional_encoders(self, model: Any, rows: Sequence[SweepRow]) -> tuple[list[float], Callable, Callable] | None:
        """(α per row, encoder of the positive prompts, encoder of the negative ones), or None
        when every α is 0 (no intervention: plain generation). Checks the backend first."""
        alphas = [float(r.alpha) for r in rows]
        if not any(alphas):
            return None
        self.check_model(model)
        return alphas, encoder([r.positive for r in rows]), encoder([r.negative for r in rows])

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        digest = None if self.path is None else hashlib.sha256(self.path.read_bytes()).hexdigest()
        out.update(artifact=None if self.path is None else str(self.path), artifact_sha256=digest,
                   concept=self.artifact.concept, hyperparameters=self.hyperparameters)
        return out


def encoder(prompts: Sequence[str]) -> Callable[[Any], Any]:
    """A function of the model encoding `prompts` at the running generation's text length."""
    prompts = list(prompts)

    def encode(model: Any) -> Any:
        return model.encode_prompts(prompts, text_length=getattr(model, "run_text_length", None))

    return encode


def text_streams(states: Any) -> Any:
    """The states the cross-attention layers read (a tensor, or stream -> tensor without masks)."""
    if isinstance(states, torch.Tensor):
        return states
    if isinstance(states, Mapping):
        return {k: v for k, v in states.items() if not str(k).endswith("_mask")}
    raise TypeError(f"encode_prompts returned {type(states).__name__}; the baselines need the encoder "
                    "states the cross-attention layers read")


def difference(a: Any, b: Any) -> Any:
    """a − b for tensors or dicts of tensors."""
    a, b = text_streams(a), text_streams(b)
    if isinstance(a, torch.Tensor):
        return a - b
    return {k: a[k] - b[k] for k in a}
