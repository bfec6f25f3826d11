"""Shared pieces of the diffusers-based backends.

Loading is strictly local: a pipeline directory written by ``save_pretrained`` (or a snapshot of
a hub repository) is checked for ``model_index.json`` and every component folder it names, then
loaded with ``local_files_only=True``. Nothing is ever downloaded, and no environment variable
is changed. ``describe()["weights_sha256"]`` hashes the directory's weight files
(``*.safetensors``, ``*.bin``: sorted relative names and bytes); a pipeline built in memory is
hashed by its components' state-dict tensors.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .base import Generation, SteerableModel, output_width, resolve_device, resolve_dtype, weight_files_under

# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def check_pipeline_dir(path: str | os.PathLike, key: str) -> Path:
    """Check that `path` holds a saved diffusers pipeline: ``model_index.json`` and one folder per
    component it lists. Errors name the config key (e.g. ``models.stable_audio.path``)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{key}: directory '{root}' does not exist (it should hold a saved "
                                "diffusers pipeline; models are never downloaded)")
    index = root / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{key}: '{root}' has no model_index.json, so it is not a saved "
                                "diffusers pipeline")
    try:
        spec = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{key}: {index} is not valid JSON ({err})") from err
    missing = [name for name, value in spec.items()
               if not name.startswith("_") and isinstance(value, (list, tuple))
               and len(value) == 2 and value[0] is not None and not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{key}: '{root}' lacks the component folder(s) {', '.join(missing)} "
                                "listed in its model_index.json")
    return root


def load_pipeline(pipeline_cls: type, path: str | os.PathLike, key: str,
                  dtype: torch.dtype = torch.float32) -> Any:
    """Load a pipeline from a local directory only (``local_files_only``: no hub access; the
    process's ``HF_HUB_OFFLINE`` setting is left alone)."""
    root = check_pipeline_dir(path, key)
    return pipeline_cls.from_pretrained(str(root), local_files_only=True, dtype=dtype)


def prepare_pipeline(pipe: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move a pipeline to `device`/`dtype` and put every module in eval mode."""
    modules = [c for c in getattr(pipe, "components", {}).values() if isinstance(c, torch.nn.Module)]
    floating = {p.dtype for m in modules for p in m.parameters() if p.is_floating_point()}
    pipe = pipe.to(device=device) if floating <= {dtype} else pipe.to(device=device, dtype=dtype)
    for module in modules:
        module.eval()
    return pipe


# --------------------------------------------------------------------------------------------
# tensors
# --------------------------------------------------------------------------------------------
def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed (stochastic samplers draw per-sample noise from them)."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def audio_to_numpy(audio: Any) -> np.ndarray:
    """Pipeline audio (tensor or array, (B, N) or (B, C, N)) as float32 numpy (B, C, N)."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio[:, None, :]
    if audio.ndim != 3:
        raise ValueError(f"expected audio of shape (batch, [channels,] samples), got {audio.shape}")
    return audio


def find_modules(root: torch.nn.Module, patterns: Sequence[str]) -> list[tuple[str, torch.nn.Module, int]]:
    """(name, module, width) of every module of `root` whose name matches one of `patterns`
    (``re.search``), in module order."""
    compiled = [re.compile(p) for p in patterns]
    return [(name, module, output_width(module)) for name, module in root.named_modules()
            if name and any(c.search(name) for c in compiled)]


# --------------------------------------------------------------------------------------------
# the shared backend class
# --------------------------------------------------------------------------------------------
class DiffusersModel(SteerableModel):
    """A backend around a diffusers pipeline object, whose own sampling loop is used.

    Subclasses name the pipeline class (:meth:`pipeline_class`), the denoiser attribute
    (``denoiser_attr``) and implement :meth:`_call_pipeline`.
    """

    denoiser_attr: str = "transformer"

    def __init__(self, pipe: Any, *, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float32", batch_size: int = 8, steps: int | None = None,
                 guidance: float | None = None, duration: float | None = None):
        super().__init__(device=device, dtype=dtype, batch_size=batch_size)
        self.pipe = prepare_pipeline(pipe, self.device, self.dtype)
        self.set_defaults(steps, guidance, duration)
        self._setup(duration_given=duration is not None)

    def _setup(self, duration_given: bool) -> None:
        """Backend-specific checks and attributes once the pipeline is on its device."""

    @classmethod
    def pipeline_class(cls) -> type:
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "model") -> "DiffusersModel":
        """Build from a config block checked by :func:`tada.config.check_block`: ``path`` (local
        pipeline directory), ``device``, ``dtype``, ``batch_size``, ``steps``, ``guidance``,
        ``duration``."""
        opts = dict(cfg)
        opts.pop("backend", None)
        path = opts.pop("path")
        resolve_device(opts.get("device", "cpu"))  # a CUDA request without CUDA fails before loading
        dtype = resolve_dtype(opts.get("dtype", "float32"))
        pipe = load_pipeline(cls.pipeline_class(), path, f"{key}.path", dtype)
        model = cls(pipe, **opts)
        model.weights_root = Path(path).expanduser()
        return model

    def weight_files(self) -> list[Path]:
        """The weight files of the pipeline directory this model was loaded from (if any)."""
        root = self.__dict__.get("weights_root")
        return [] if root is None else weight_files_under(root)

    def weight_modules(self) -> dict[str, torch.nn.Module]:
        return {name: c for name, c in getattr(self.pipe, "components", {}).items()
                if isinstance(c, torch.nn.Module)} or {"denoiser": self.denoiser()}

    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_attr)

    def _generate(self, prompts, seeds, *, steps, guidance, duration, negative_prompts, text_length,
                  progress) -> Generation:
        self.pipe.set_progress_bar_config(disable=not progress)
        audio, info = self._call_pipeline(prompts, seeds, steps=steps, guidance=guidance,
                                          duration=duration, negative_prompts=negative_prompts,
                                          text_length=text_length)
        return Generation(audio=audio_to_numpy(audio), sample_rate=self.sample_rate, prompts=list(prompts),
                          seeds=list(seeds), info=info)

    def _call_pipeline(self, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
                       duration: float, negative_prompts: list[str] | None,
                       text_length: int | None) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError
