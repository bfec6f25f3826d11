"""The steering-vector artifact: per-(step, layer) vectors in safetensors with JSON metadata.

File layout
    One tensor per steered layer, named ``layer.{index}`` (the model's 0-based cross-attention
    index), float32, shape ``(steps, width)``. The safetensors header metadata holds one key,
    ``tada``, whose value is a JSON object::

        {"format": "tada.steering_vector", "version": 1,
         "method": "caa", "concept": "tempo", "layer_set": "localized",
         "layers": [3, 4], "steps": 30,
         "model": {"backend": ..., "layers": [names...], "widths": [...], "sample_rate": ...,
                   "weights_sha256": ...},
         "hyperparameters": {...}, "source": {"store_hash": ..., ...}}

    ``model`` is :meth:`SteerableModel.describe` of the model the activations came from; applying
    the vector to a model whose layer names or widths differ, or whose ``weights_sha256``
    differs (other weights of the same architecture), raises :class:`IncompatibleVectorError`
    naming both. A vector without ``weights_sha256`` (an older file) is accepted with a warning.

Score files (AUSteer sign-consistency scores, SAE feature statistics) use the same container
through :func:`save_tensors` / :func:`load_tensors` with their own ``format``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

FORMAT = "tada.steering_vector"
VERSION = 1
META_KEY = "tada"


class IncompatibleVectorError(ValueError):
    """A steering vector does not fit the model it is applied to."""


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write float tensors and a JSON metadata object to a safetensors file, atomically."""
    from safetensors.torch import save_file

    from tada.io import _json_default, atomic_path

    data = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).detach().cpu().contiguous()
            for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata={META_KEY: json.dumps(dict(meta), sort_keys=True,
                                                                 default=_json_default)})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a file written by :func:`save_tensors`, without reading tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a tada file (no '{META_KEY}' metadata in the safetensors header)")
    return json.loads(raw)


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a file written by :func:`save_tensors`."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    return load_file(str(path)), meta


def describe_target(target: Any) -> dict[str, Any]:
    """Model description of a SteerableModel, a SteeringVector's model, or a description dict."""
    if hasattr(target, "describe"):
        return dict(target.describe())
    if isinstance(target, Mapping) and "layers" in target and "widths" in target:
        return dict(target)
    raise TypeError(f"cannot read layer names and widths from {type(target).__name__}")


@dataclass
class SteeringVector:
    """Per-step steering vectors for some cross-attention layers of one model.

    `vectors` maps a layer index to a float32 tensor ``(steps, width)``; every layer has the same
    number of steps. `model` is the description (backend, layer names, widths) of the model the
    vectors were computed on.
    """

    vectors: dict[int, torch.Tensor]
    method: str
    concept: str
    model: dict[str, Any]
    layer_set: str = "custom"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.vectors:
            raise ValueError("a steering vector needs at least one layer")
        vecs: dict[int, torch.Tensor] = {}
        for k, v in sorted(self.vectors.items()):
            t = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).detach().float().cpu()
            if t.ndim == 1:
                t = t[None]
            if t.ndim != 2:
                raise ValueError(f"layer {k}: expected (steps, width), got shape {tuple(t.shape)}")
            vecs[int(k)] = t.contiguous()
        steps = {t.shape[0] for t in vecs.values()}
        if len(steps) != 1:
            raise ValueError(f"layers have different step counts: {sorted(steps)}")
        names, widths = self.model.get("layers"), self.model.get("widths")
        if names is None or widths is None:
            raise ValueError("model description needs 'layers' (names) and 'widths'")
        for k, t in vecs.items():
            if not 0 <= k < len(names):
                raise ValueError(f"layer {k} is outside the model description's {len(names)} layers")
            if int(widths[k]) != t.shape[1]:
                raise ValueError(f"layer {k} ({names[k]}): tensor width {t.shape[1]} != described width {widths[k]}")
        self.vectors = vecs

    # ----- views --------------------------------------------------------------------------
    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    @property
    def steps(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def layer_names(self) -> list[str]:
        return [self.model["layers"][i] for i in self.layers]

    def norms(self) -> np.ndarray:
        """L2 norm of every (step, layer) vector, shape (steps, len(layers))."""
        return np.stack([self.vectors[i].norm(dim=1).numpy() for i in self.layers], axis=1)

    def __repr__(self) -> str:
        return (f"SteeringVector(method={self.method!r}, concept={self.concept!r}, layer_set="
                f"{self.layer_set!r}, layers={self.layers}, steps={self.steps}, "
                f"backend={self.model.get('backend')!r})")

    # ----- derived vectors ----------------------------------------------------------------
    def select(self, layers: Sequence[int] | None) -> "SteeringVector":
        """The same vector restricted to `layers` (None = all of its layers)."""
        if layers is None:
            return self
        layers = [int(x) for x in layers]
        missing = sorted(set(layers) - set(self.vectors))
        if missing:
            raise KeyError(f"the vector has no layers {missing}; it has {self.layers}")
        return self._replace({i: self.vectors[i] for i in layers})

    def scaled(self, factor: float) -> "SteeringVector":
        return self._replace({i: v * float(factor) for i, v in self.vectors.items()})

    def _replace(self, vectors: dict[int, torch.Tensor], **changes: Any) -> "SteeringVector":
        kw = dict(method=self.method, concept=self.concept, model=self.model, layer_set=self.layer_set,
                  hyperparameters=dict(self.hyperparameters), source=dict(self.source),
                  info=dict(self.info))
        kw.update(changes)
        return SteeringVector(vectors=vectors, **kw)

    # ----- compatibility and application ---------------------------------------------------
    def check_compatible(self, target: Any, layers: Sequence[int] | None = None) -> None:
        """Raise :class:`IncompatibleVectorError` unless every steered layer of this vector has the
        same name and width in `target` (a SteerableModel or a description dict)."""
        desc = describe_target(target)
        names, widths = list(desc["layers"]), [int(w) for w in desc["widths"]]
        problems = []
        for i in self.layers if layers is None else layers:
            mine = (self.model["layers"][i], int(self.model["widths"][i]))
            if i >= len(names):
                problems.append(f"layer {i} '{mine[0]}' (width {mine[1]}) does not exist in the model, "
                                f"which has {len(names)} cross-attention layers")
            elif (names[i], widths[i]) != mine:
                problems.append(f"layer {i}: vector has '{mine[0]}' (width {mine[1]}), "
                                f"model has '{names[i]}' (width {widths[i]})")
        if problems:
            raise IncompatibleVectorError(
                f"steering vector '{self.concept}' ({self.method}) was built for a "
                f"{self.model.get('backend', '?')} model and does not fit this "
                f"{desc.get('backend', '?')} model: " + "; ".join(problems))
        self._check_weights(desc)

    def _check_weights(self, desc: Mapping[str, Any]) -> None:
        """Refuse a vector computed on other weights; accept (with a warning) one that records no
        weights hash (files written before hashes were recorded)."""
        mine, theirs = self.model.get("weights_sha256"), desc.get("weights_sha256")
        if mine is None or theirs is None:
            warnings.warn(f"steering vector '{self.concept}' ({self.method}): "
                          + ("the vector records no weights_sha256 (an older file)" if mine is None
                             else "the model reports no weights_sha256")
                          + "; cannot check that it was computed on these weights", stacklevel=3)
            return
        if mine != theirs:
            raise IncompatibleVectorError(
                f"steering vector '{self.concept}' ({self.method}) was computed on weights "
                f"{mine} but the model's weights are {theirs}; recompute the vector on this model")

    def intervention(self, alpha: float | Sequence[float] = 1.0, *, layers: Sequence[int] | None = None,
                     start_step: int = 0, renorm: bool = False, branch: str = "cond",
                     resample_steps: bool = False):
        """An :class:`~tada.models.interventions.AddVector` adding α·v on `layers` (default: all);
        see there for `resample_steps`."""
        from tada.models.interventions import AddVector

        chosen = self.select(layers)
        return AddVector(dict(chosen.vectors), alpha, branch=branch, renorm=renorm, start_step=start_step,
                         resample_steps=resample_steps)

    # ----- files ----------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "method": self.method, "concept": self.concept,
            "layer_set": self.layer_set, "layers": self.layers, "steps": self.steps,
            "model": self.model, "hyperparameters": self.hyperparameters, "source": self.source,
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> Path:
        save_tensors(path, {f"layer.{i}": v for i, v in self.vectors.items()}, self.metadata())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SteeringVector":
        tensors, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a steering vector (format {meta.get('format')!r})")
        if int(meta.get("version", 0)) > VERSION:
            raise ValueError(f"{path}: steering vector version {meta['version']} is newer than this "
                             f"tada understands ({VERSION})")
        vectors = {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith("layer.")}
        return cls(vectors=vectors, method=meta["method"], concept=meta["concept"], model=meta["model"],
                   layer_set=meta.get("layer_set", "custom"),
                   hyperparameters=meta.get("hyperparameters", {}), source=meta.get("source", {}),
                   info=meta.get("info", {}))


def as_vector(vector: "SteeringVector | str | os.PathLike") -> SteeringVector:
    """Accept a SteeringVector or a path to one."""
    if isinstance(vector, SteeringVector):
        return vector
    if isinstance(vector, (str, os.PathLike)):
        return SteeringVector.load(vector)
    raise TypeError(f"expected a SteeringVector or a path, got {type(vector).__name__}")
