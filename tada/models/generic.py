r"""A backend for any model whose cross-attention modules are diffusers-style attention modules
(a ``processor`` attribute, ``to_k``/``to_v``/``to_out`` projections), described by config.

This is how ACE-Step v1 (its own repository's `ACEStepTransformer2DModel`, cross-attention at
``transformer_blocks.N.cross_attn``) is used. Example config block::

    models:
      ace_step_v1:
        backend: generic
        path: /models/ACE-Step-v1-3.5B          # handed to the loader; must exist
        loader: my_ace_v1:load                  # (path, device, dtype) -> the loaded object
        generate_fn: my_ace_v1:generate         # see below
        denoiser: ace_step_transformer          # dotted attribute path from the loaded object
        step_method: decode                     # v1 samples with transformer.decode(), not forward()
        layer_patterns: ['^transformer_blocks\.\d+\.cross_attn$']
        cfg_branches: [cond, uncond]            # batch order of the generate_fn's denoiser calls
        token_count_fn: my_ace_v1:token_count   # optional: (obj, prompt) -> int
        device: cuda
        dtype: bfloat16
        batch_size: 4
        steps: 60
        guidance: 15.0
        duration: 30

Contract of ``generate_fn(obj, prompts, seeds, steps=, guidance=, duration=, negative_prompts=,
text_length=)``: return ``(audio, sample_rate)`` with audio a float array (B, C, N); draw the
initial noise of prompt i from seed i alone (e.g. :func:`tada.models.base.seeded_noise`); call
the denoiser (its ``forward``, or ``step_method``) exactly once per sampler step with every CFG
branch batched in the order ``cfg_branches`` (one block of B rows per branch). ACE-Step v1's own
pipeline calls the transformer separately for the conditional and the null condition (and skips
guidance outside its guidance interval), so its generate_fn has to batch the two calls into one
and use guidance at every step.

Optional keys: ``encode_fn`` ((obj, prompts, negative, text_length) -> the states the layers
read), ``step_method`` (name of the denoiser method called once per step when it is not
``forward``), ``text_outside_cross_attention`` (bool, default false) and ``sample_rate``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ._diffusers import audio_to_numpy, find_modules
from .base import Generation, SteerableModel, resolve_device, resolve_dtype, weight_files_under

BRANCHES = ("cond", "uncond")


def import_callable(spec: str | Callable, key: str) -> Callable:
    """Resolve ``"package.module:function"`` (or a callable) to a callable; errors name `key`."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"{key}: expected 'module:function', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"{key}: cannot import module '{module_name}' ({err})") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{key}: module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{key}: '{spec}' is not callable")
    return obj


def resolve_attr(obj: Any, path: str, key: str) -> Any:
    """Follow a dotted attribute path from `obj`; errors name `key`."""
    out = obj
    for part in path.split("."):
        if not hasattr(out, part):
            raise AttributeError(f"{key}: {type(out).__name__} has no attribute '{part}' (path '{path}')")
        out = getattr(out, part)
    return out


class _StepMarker(torch.nn.Module):
    """Called once per sampler step when the denoiser's step method is not ``forward``, so that
    the interventions' step counter (a forward pre-hook) advances."""

    def forward(self) -> None:
        return None


class GenericModel(SteerableModel):
    """A model described by a loader, a generation function, a denoiser path and layer patterns."""

    backend = "generic"

    def __init__(self, obj: Any, *, generate_fn: str | Callable, denoiser: str,
                 layer_patterns: Sequence[str], cfg_branches: Sequence[str] = ("uncond", "cond"),
                 token_count_fn: str | Callable | None = None, encode_fn: str | Callable | None = None,
                 step_method: str | None = None, text_outside_cross_attention: bool = False,
                 sample_rate: int | None = None, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float32", batch_size: int = 8, steps: int | None = None,
                 guidance: float | None = None, duration: float | None = None, key: str = "model"):
        super().__init__(device=device, dtype=dtype, batch_size=batch_size)
        self.obj = obj
        self.key = key
        self.generate_fn = import_callable(generate_fn, f"{key}.generate_fn")
        self.token_count_fn = None if token_count_fn is None else import_callable(
            token_count_fn, f"{key}.token_count_fn")
        self.encode_fn = None if encode_fn is None else import_callable(encode_fn, f"{key}.encode_fn")
        self.denoiser_path = str(denoiser)
        self._denoiser = resolve_attr(obj, self.denoiser_path, f"{key}.denoiser")
        if not isinstance(self._denoiser, torch.nn.Module):
            raise TypeError(f"{key}.denoiser: '{denoiser}' is a {type(self._denoiser).__name__}, "
                            "not a torch module")
        if isinstance(layer_patterns, str):
            layer_patterns = [layer_patterns]
        self.layer_patterns = [str(p) for p in layer_patterns]
        branches = tuple(str(b) for b in cfg_branches)
        if sorted(branches) != sorted(BRANCHES) and branches != ("cond",):
            raise ValueError(f"{key}.cfg_branches: expected an order of {list(BRANCHES)} (or ['cond']), "
                             f"got {list(branches)}")
        self._branches = branches
        self.step_method = step_method
        if step_method is not None and not callable(getattr(self._denoiser, step_method, None)):
            raise AttributeError(f"{key}.step_method: the denoiser has no method '{step_method}'")
        self._marker = _StepMarker()
        self.text_outside_cross_attention = bool(text_outside_cross_attention)
        self.sample_rate = int(sample_rate or 0)
        self.set_defaults(steps, guidance, duration)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "model") -> "GenericModel":
        opts = dict(cfg)  # checked against the schema by load_model (tada.config.check_block)
        opts.pop("backend", None)
        path = opts.pop("path", None)
        if path is not None and not Path(path).expanduser().exists():
            raise FileNotFoundError(f"{key}.path: '{path}' does not exist (models are never downloaded)")
        device = resolve_device(opts.get("device", "cpu"))
        dtype = resolve_dtype(opts.get("dtype", "float32"))
        loader = import_callable(opts.pop("loader"), f"{key}.loader")
        obj = loader(None if path is None else str(Path(path).expanduser()), device, dtype)
        model = cls(obj, key=key, **opts)
        if path is not None:
            model.weights_root = Path(path).expanduser()
        return model

    def weight_files(self) -> list[Path]:
        """The weight files under the configured ``path`` (a file, or a directory's
        ``*.safetensors``/``*.bin``); none when the loader took no path."""
        root = self.__dict__.get("weights_root")
        return [] if root is None else weight_files_under(root)

    def weight_modules(self) -> dict[str, torch.nn.Module]:
        if isinstance(self.obj, torch.nn.Module):
            return {"model": self.obj}
        return {"denoiser": self._denoiser}

    # ----- protocol -------------------------------------------------------------------------
    def _discover_layers(self):
        found = find_modules(self._denoiser, self.layer_patterns)
        if not found:
            raise RuntimeError(f"{self.key}.layer_patterns: no module of '{self.denoiser_path}' matches "
                               f"{self.layer_patterns}")
        return found

    def denoiser(self) -> torch.nn.Module:
        return self._marker if self.step_method else self._denoiser

    def cfg_branches(self, guidance: float) -> tuple[str, ...]:
        return self._branches if guidance > 1.0 else ("cond",)

    def token_count(self, prompt: str) -> int:
        if self.token_count_fn is None:
            raise NotImplementedError(f"{self.key}: set token_count_fn to count prompt tokens")
        return int(self.token_count_fn(self.obj, prompt))

    def encode_prompts(self, prompts: Sequence[str], negative: bool = False,
                       text_length: int | None = None) -> Any:
        if self.encode_fn is None:
            raise NotImplementedError(f"{self.key}: set encode_fn to encode prompts")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.encode_fn(self.obj, prompts, negative, text_length)

    def _generate(self, prompts, seeds, *, steps, guidance, duration, negative_prompts, text_length,
                  progress) -> Generation:
        calls = [0]

        def count(_module, _args):
            calls[0] += 1

        hook = self.denoiser().register_forward_pre_hook(count)
        restore = self._wrap_step_method()
        try:
            audio, sample_rate = self.generate_fn(self.obj, list(prompts), list(seeds), steps=steps,
                                                  guidance=guidance, duration=duration,
                                                  negative_prompts=negative_prompts,
                                                  text_length=text_length)
        finally:
            restore()
            hook.remove()
        if calls[0] == 0:
            raise RuntimeError(f"{self.key}: generate_fn never called the denoiser "
                               f"'{self.denoiser_path}'" + ("" if self.step_method else
                                                            "; if it samples through a method other "
                                                            "than forward, set step_method"))
        audio = audio_to_numpy(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio)
        self.sample_rate = int(sample_rate)
        return Generation(audio=audio, sample_rate=int(sample_rate), prompts=list(prompts),
                          seeds=list(seeds), info={"denoiser_calls": calls[0]})

    def _wrap_step_method(self) -> Callable[[], None]:
        """Make the denoiser's step method call the step marker first; returns the undo."""
        if not self.step_method:
            return lambda: None
        module, name, marker = self._denoiser, self.step_method, self._marker
        bound = getattr(module, name)

        def stepped(*args, **kwargs):
            marker()
            return bound(*args, **kwargs)

        had_own = name in module.__dict__
        previous = module.__dict__.get(name)
        object.__setattr__(module, name, stepped)

        def restore() -> None:
            if had_own:
                object.__setattr__(module, name, previous)
            else:
                module.__dict__.pop(name, None)

        return restore
