"""The `SteerableModel` protocol shared by every backend.

A backend exposes its cross-attention layers with stable names and 0-based indices, encodes
prompts, and generates audio from prompts and seeds while a list of interventions
(:mod:`tada.models.interventions`) is active. Generation is deterministic for a seed.
"""

from __future__ import annotations

import abc
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..io import sha256_files

#: file names that hold weights in a model directory
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(name: str | torch.device) -> torch.device:
    """Turn a config value into a device; CUDA on a machine without it is an error, never a fallback."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device '{name}' was requested but CUDA is not available on this machine; "
            "set the model's `device` to 'cpu' in the config or run on a GPU node"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device '{name}': use 'cpu', 'cuda' or 'cuda:N'")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """Map a config dtype name (float32, bfloat16, float16) to a torch dtype."""
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype '{name}': choose one of {sorted(DTYPES)}")
    return DTYPES[name]


@dataclass(frozen=True)
class CrossAttentionLayer:
    """One cross-attention module of a model.

    `index` is the 0-based position among the model's cross-attention layers, in module order;
    `name` is the module's qualified name inside the denoiser (stable across runs).
    `width` is the width of the layer's output (the residual stream it writes to).
    """

    index: int
    name: str
    module: torch.nn.Module = field(compare=False, repr=False)
    width: int = 0


def output_width(module: torch.nn.Module) -> int:
    """Width of an attention module's output: the ``out_features`` of its ``to_out[0]``
    projection (diffusers), else of ``out_proj`` / ``o_proj``; 0 when it has none of them."""
    to_out = getattr(module, "to_out", None)
    if isinstance(to_out, (torch.nn.ModuleList, torch.nn.Sequential, list, tuple)):
        to_out = to_out[0] if len(to_out) else None
    if to_out is not None and hasattr(to_out, "out_features"):
        return int(to_out.out_features)
    for name in ("out_proj", "o_proj"):
        proj = getattr(module, name, None)
        if proj is not None and hasattr(proj, "out_features"):
            return int(proj.out_features)
    return 0


class Generation:
    """The result of one batched generation.

    `audio` has shape (batch, channels, samples), float32 in [-1, 1] (approximately).
    `features` optionally holds a model-specific representation of the same clips (the
    embedded model returns its log-mel frames, which scorers read without vocoding). A backend
    may give `decode` instead of `audio`: the audio is then computed on first access.
    """

    def __init__(self, audio: np.ndarray | None, sample_rate: int, prompts: Sequence[str],
                 seeds: Sequence[int], features: np.ndarray | None = None,
                 info: dict[str, Any] | None = None,
                 decode: Callable[[np.ndarray], np.ndarray] | None = None):
        if audio is None and (decode is None or features is None):
            raise ValueError("Generation needs audio, or features and a decode function")
        self._audio = audio
        self._decode = decode
        self.sample_rate = int(sample_rate)
        self.prompts = list(prompts)
        self.seeds = [int(s) for s in seeds]
        self.features = features
        self.info: dict[str, Any] = dict(info or {})

    @property
    def audio(self) -> np.ndarray:
        if self._audio is None:
            self._audio = self._decode(self.features)  # type: ignore[misc]
        return self._audio

    def __len__(self) -> int:
        return len(self.prompts)


class SteerableModel(abc.ABC):
    """Base class of every backend.

    Subclasses implement :meth:`_discover_layers`, :meth:`denoiser`, :meth:`encode_prompts`,
    :meth:`cfg_branches` and :meth:`_generate`; :meth:`generate` installs the interventions
    around `_generate` and removes them afterwards.
    """

    #: short identifier of the backend, e.g. "stable_audio"
    backend: str = "base"
    sample_rate: int = 0
    default_steps: int = 30
    default_guidance: float = 5.0
    default_duration: float = 10.0
    #: does text reach the model other than through cross-attention (pooled/global conditioning)?
    text_outside_cross_attention: bool = False

    def __init__(self, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 batch_size: int = 8):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._layers: list[CrossAttentionLayer] | None = None
        #: CFG branch order of the batch currently being denoised (set during generation)
        self.run_branches: tuple[str, ...] = ("cond",)
        #: guidance scale and text_length of the generation in progress
        self.run_guidance: float = 1.0
        self.run_text_length: int | None = None

    def set_defaults(self, steps: int | None = None, guidance: float | None = None,
                     duration: float | None = None) -> None:
        """Override the generation defaults given in config (None keeps the backend's own)."""
        if steps is not None:
            self.default_steps = int(steps)
        if guidance is not None:
            self.default_guidance = float(guidance)
        if duration is not None:
            self.default_duration = float(duration)

    # ----- layers -------------------------------------------------------------------------
    @property
    def layers(self) -> list[CrossAttentionLayer]:
        """The cross-attention layers, 0-based, in module order."""
        if self._layers is None:
            found = self._discover_layers()
            self._layers = [CrossAttentionLayer(i, n, m, w) for i, (n, m, w) in enumerate(found)]
            if not self._layers:
                raise RuntimeError(f"{type(self).__name__}: no cross-attention layers found")
        return self._layers

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def resolve_layers(self, spec: Sequence[int | str] | None) -> list[int]:
        """Turn layer indices or names (or None = all) into sorted, unique 0-based indices."""
        if spec is None:
            return list(range(len(self.layers)))
        by_name = {layer.name: layer.index for layer in self.layers}
        out: set[int] = set()
        for item in spec:
            if isinstance(item, str) and not item.lstrip("-").isdigit():
                if item not in by_name:
                    raise KeyError(f"unknown cross-attention layer '{item}'; known: {list(by_name)[:6]}...")
                out.add(by_name[item])
            else:
                idx = int(item)
                if not 0 <= idx < len(self.layers):
                    raise IndexError(f"layer index {idx} out of range 0..{len(self.layers) - 1}")
                out.add(idx)
        return sorted(out)

    @abc.abstractmethod
    def _discover_layers(self) -> list[tuple[str, torch.nn.Module, int]]:
        """Return (name, module, output width) for every cross-attention module, in order."""

    @abc.abstractmethod
    def denoiser(self) -> torch.nn.Module:
        """The network called once per sampler step (both CFG branches in one batch)."""

    # ----- text -----------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_prompts(self, prompts: Sequence[str], negative: bool = False,
                       text_length: int | None = None) -> Any:
        """Encode prompts (or, with negative=True, the unconditional/negative text) to the
        encoder states the cross-attention layers read. Backend-specific container."""

    @abc.abstractmethod
    def token_count(self, prompt: str) -> int:
        """Number of encoder tokens of `prompt` without padding (for `text_length`)."""

    def token_positions(self, prompt: str, word: str) -> list[list[int]]:
        """Positions of `word` in the encoder states of `prompt`, one list of token positions per
        occurrence (a word may span several tokens)."""
        raise NotImplementedError(f"backend '{self.backend}' does not map words to encoder-state "
                                  "positions (needed by the token-embedding baseline)")

    def cfg_branches(self, guidance: float) -> tuple[str, ...]:
        """Order of the CFG branches along the denoiser batch: e.g. ("uncond", "cond")."""
        return ("uncond", "cond") if guidance > 1.0 else ("cond",)

    # ----- generation -----------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], seeds: Sequence[int] | int = 0, *,
                 steps: int | None = None, guidance: float | None = None,
                 duration: float | None = None, interventions: Sequence[Any] = (),
                 negative_prompts: Sequence[str] | None = None, text_length: int | None = None,
                 progress: bool = False) -> Generation:
        """Generate one clip per prompt; seed i fixes the initial noise of prompt i.

        All prompts are generated as one batch (callers chunk by ``batch_size``).
        `text_length` pads every prompt's encoder states to that many tokens, so that two runs
        (e.g. a counterfactual pair) have keys/values of the same shape.
        Interventions are installed for this call only (see :func:`apply_interventions`).
        """
        from .interventions import apply_interventions

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("generate() needs at least one prompt")
        if isinstance(seeds, int):
            seeds = [seeds + i for i in range(len(prompts))]
        seeds = [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        if negative_prompts is not None and len(negative_prompts) != len(prompts):
            raise ValueError("negative_prompts must match prompts in length")
        steps = int(steps or self.default_steps)
        guidance = float(self.default_guidance if guidance is None else guidance)
        duration = float(duration or self.default_duration)
        if steps < 1 or duration <= 0:
            raise ValueError(f"steps must be >= 1 and duration > 0 (got {steps}, {duration})")
        self.run_branches = self.cfg_branches(guidance)
        self.run_guidance, self.run_text_length = guidance, text_length  # read by interventions
        with apply_interventions(self, interventions), torch.inference_mode():
            # every active session (this call's and any enclosing `tada.steer`) starts at step 0
            sessions = list(self.__dict__.get("_intervention_states", []))
            for state in sessions:
                state.start(total_steps=steps)
            gen = self._generate(prompts, seeds, steps=steps, guidance=guidance, duration=duration,
                                 negative_prompts=negative_prompts, text_length=text_length,
                                 progress=progress)
            for state in sessions:  # keys/values hooks that never fired made a silent no-op
                state.check_kv_hooks()
        gen.info.update(steps=steps, guidance=guidance, duration=duration, backend=self.backend)
        return gen

    @abc.abstractmethod
    def _generate(self, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
                  duration: float, negative_prompts: list[str] | None, text_length: int | None,
                  progress: bool) -> Generation:
        """Backend sampling loop. Must call the denoiser once per step with all CFG branches
        batched in the order given by :meth:`cfg_branches`."""

    # ----- identity -------------------------------------------------------------------------
    def weight_files(self) -> list[Path]:
        """The files the weights were loaded from (empty: the model was built in memory)."""
        return []

    def weight_modules(self) -> dict[str, torch.nn.Module]:
        """The modules whose tensors make up the weights, when there are no weight files."""
        return {"denoiser": self.denoiser()}

    def weights_sha256(self) -> str:
        """Content hash of the weights, computed once: of the weight files' bytes (see
        :meth:`weight_files`), else of the modules' state-dict tensors."""
        cached = self.__dict__.get("_weights_sha256")
        if cached is None:
            files = self.weight_files()
            root = self.__dict__.get("weights_root")
            if files:
                cached = sha256_files(files, root=root)
            else:
                cached = state_dict_sha256(self.weight_modules())
            self.__dict__["_weights_sha256"] = cached
        return cached

    def describe(self) -> dict[str, Any]:
        """Identity of the model for artifact metadata (backend, layer names and widths, and
        ``weights_sha256``, the content hash of its weights)."""
        return {
            "backend": self.backend,
            "layers": [layer.name for layer in self.layers],
            "widths": [layer.width for layer in self.layers],
            "sample_rate": self.sample_rate,
            "weights_sha256": self.weights_sha256(),
        }


def weight_files_under(root: str | os.PathLike, patterns: Sequence[str] = WEIGHT_PATTERNS) -> list[Path]:
    """Every weight file (``*.safetensors``, ``*.bin``) under `root`, hidden paths aside."""
    root = Path(root)
    if root.is_file():
        return [root]
    found = {f for pattern in patterns for f in root.rglob(pattern)
             if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)}
    return sorted(found)


def state_dict_sha256(modules: Mapping[str, torch.nn.Module]) -> str:
    """SHA-256 over the state-dict tensors of `modules` (names, dtypes, shapes and bytes), for
    weights that were built in memory rather than loaded from files."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        for key, tensor in sorted(modules[name].state_dict().items()):
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}.{key}:{t.dtype}:{tuple(tensor.shape)}\0".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def word_positions(tokenizer: Any, prompt: str, word: str) -> list[list[int]]:
    """Token positions of every occurrence of `word` in `prompt` as `tokenizer` encodes it (special
    tokens included, so a position indexes the encoder states): the runs of `word`'s own tokens
    (matched with and without a leading space)."""
    ids = list(tokenizer(prompt).input_ids)
    out: list[list[int]] = []
    for variant in dict.fromkeys((word, " " + word)):
        needle = list(tokenizer(variant, add_special_tokens=False).input_ids)
        if not needle:
            continue
        for i in range(len(ids) - len(needle) + 1):
            span = list(range(i, i + len(needle)))
            if ids[i:i + len(needle)] == needle and span not in out:
                out.append(span)
    return sorted(out)


def seeded_noise(seeds: Sequence[int], shape: Sequence[int], device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """Initial noise, one generator per seed, drawn on the CPU so a seed gives the same
    noise on every device and batch composition."""
    out = [torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(int(s)))
           for s in seeds]
    return torch.stack(out).to(device=device, dtype=dtype)
