"""Interventions on cross-attention layers, as attention-processor wrappers.

Each cross-attention module keeps its own attention processor; while interventions are active
it is wrapped by :class:`InterventionProcessor`, which delegates the attention maths to the
original processor and only edits its inputs (encoder states), its key/value projections
(through forward hooks on ``to_k``/``to_v``) or its output. Nothing of a model's attention is
re-implemented, so the same code serves the embedded model and every diffusers backend.

Conventions
-----------
* ``step`` counts denoiser calls from 0 within one generation (one call per sampler step).
* The denoiser batch holds the CFG branches one after the other, in the order of
  ``branches`` (e.g. ``("uncond", "cond")``); each branch holds the same ``B`` prompts.
* Layer indices are the model's 0-based cross-attention indices.
* Interventions act in list order on each layer.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

Branch = str  # "cond" | "uncond" | "all"


@dataclass
class RunState:
    """Mutable state shared by the wrappers of one intervention session."""

    branches_fn: Callable[[], tuple[str, ...]]
    step: int = -1
    current_layer: int | None = None
    #: sampler steps of the generation in progress (None: not known, e.g. plain diffusers)
    total_steps: int | None = None
    #: layers whose to_k/to_v forward hooks must fire on every step: index -> name
    kv_layers: dict[int, str] = field(default_factory=dict)
    #: (step, layer, "k"/"v") of every key/value hook call in the generation in progress
    kv_fired: set[tuple[int, int, str]] = field(default_factory=set)

    def start(self, total_steps: int | None = None) -> None:
        """Reset the per-generation state (called before each generation)."""
        self.step = -1
        self.total_steps = None if total_steps is None else int(total_steps)
        self.kv_fired.clear()

    def check_kv_hooks(self) -> None:
        """Raise unless every hooked layer's to_k and to_v hooks fired on every step of the
        generation just finished (fused QKV projections, or a processor that computes keys and
        values another way, would otherwise make capturing and patching them a silent no-op)."""
        steps = range(self.step + 1)
        for layer, name in self.kv_layers.items():
            missing = [(s, w) for s in steps for w in ("k", "v") if (s, layer, w) not in self.kv_fired]
            if missing:
                n_steps = len({s for s, _ in missing})
                raise RuntimeError(
                    f"cross-attention layer {layer} ('{name}'): its to_k/to_v projections were not "
                    f"called on {n_steps} of {len(steps)} steps, so keys/values could not be captured "
                    "or patched there (fused QKV projections, e.g. after fuse_qkv_projections(), or "
                    "a processor that bypasses to_k/to_v); unfuse the projections or use another "
                    "intervention")

    @property
    def branches(self) -> tuple[str, ...]:
        return self.branches_fn()

    def rows(self, n_rows: int, branch: Branch) -> slice | None:
        """Rows of a denoiser batch of `n_rows` that belong to `branch` (None if absent)."""
        branches = self.branches
        if n_rows % len(branches):
            raise RuntimeError(f"batch of {n_rows} rows does not split into CFG branches {branches}")
        per = n_rows // len(branches)
        if branch == "all":
            return slice(0, n_rows)
        if branch not in branches:
            return None
        i = branches.index(branch)
        return slice(i * per, (i + 1) * per)


class Intervention:
    """Base class. `layers=None` means every cross-attention layer."""

    layers: Sequence[int] | None = None
    needs_kv: bool = False

    def applies_to(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers

    def begin(self, model: Any) -> None:
        """Called when the session starts (before any step)."""

    def pre(self, state: RunState, layer: int, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return encoder_hidden_states

    def on_kv(self, state: RunState, layer: int, which: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def on_mask(self, state: RunState, layer: int, mask: torch.Tensor | None) -> torch.Tensor | None:
        """Edit the attention mask the layer receives (only called when `needs_kv`)."""
        return mask

    def post(self, state: RunState, layer: int, output: torch.Tensor) -> torch.Tensor:
        return output

    def attach(self, model: Any, denoiser: torch.nn.Module, state: RunState) -> list[Any]:
        """Hooks outside the cross-attention processors (e.g. on the denoiser or on weight
        modules); their handles are removed with the session."""
        return []


def _as_tuple(layers: Sequence[int] | int | None) -> tuple[int, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, int):
        return (layers,)
    return tuple(int(x) for x in layers)


# --------------------------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------------------------
class Capture(Intervention):
    """Record cross-attention outputs (and optionally keys/values) without changing anything.

    * ``means[(step, layer)]``: output averaged over time frames, shape (rows, width), float32 CPU.
    * ``frames[(step, layer)]``: per-frame outputs of the conditional branch at the steps in
      ``frame_steps`` (every ``frame_stride``-th frame), shape (B, frames, width).
    * ``kv[(step, layer)] = (keys, values)``: the layer's key/value projections, every row,
      kept on the model's device (used by :class:`PatchKV`).
    """

    def __init__(self, layers: Sequence[int] | int | None = None, *, means: bool = True,
                 frame_steps: Sequence[int] | None = None, frame_stride: int = 1,
                 keys_values: bool = False, mean_dtype: torch.dtype = torch.float32):
        self.layers = _as_tuple(layers)
        self.capture_means = means
        self.frame_steps = None if frame_steps is None else set(int(s) for s in frame_steps)
        self.frame_stride = max(1, int(frame_stride))
        self.needs_kv = keys_values
        self.mean_dtype = mean_dtype
        self.means: dict[tuple[int, int], torch.Tensor] = {}
        self.frames: dict[tuple[int, int], torch.Tensor] = {}
        self.kv: dict[tuple[int, int], list[torch.Tensor | None]] = defaultdict(lambda: [None, None])
        self.masks: dict[tuple[int, int], torch.Tensor | None] = {}
        self.branches: tuple[str, ...] = ()

    def begin(self, model: Any) -> None:
        self.means.clear()
        self.frames.clear()
        self.kv.clear()
        self.masks.clear()

    def on_mask(self, state, layer, mask):
        self.masks[(state.step, layer)] = None if mask is None else mask.detach()
        return mask

    def post(self, state, layer, output):
        self.branches = state.branches
        if self.capture_means:
            self.means[(state.step, layer)] = output.detach().float().mean(dim=1).to("cpu", self.mean_dtype)
        if self.frame_steps is not None and state.step in self.frame_steps:
            rows = state.rows(output.shape[0], "cond")
            if rows is not None:
                self.frames[(state.step, layer)] = (
                    output[rows, :: self.frame_stride].detach().float().cpu())
        return output

    def on_kv(self, state, layer, which, tensor):
        self.kv[(state.step, layer)][0 if which == "k" else 1] = tensor.detach()
        return tensor

    # ----- views ----------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        return sorted({s for s, _ in self.means} | {s for s, _ in self.kv})

    @property
    def captured_layers(self) -> list[int]:
        return sorted({l for _, l in self.means} | {l for _, l in self.kv})

    def stacked_means(self) -> torch.Tensor:
        """Time-averaged outputs as (batch, steps, layers, branches, width)."""
        if not self.means:
            raise RuntimeError("nothing was captured (did the generation run with this Capture?)")
        steps = sorted({s for s, _ in self.means})
        layers = sorted({l for _, l in self.means})
        nb = len(self.branches)
        out = torch.stack([torch.stack([self.means[(s, l)] for l in layers]) for s in steps])
        # (steps, layers, rows, width) -> (steps, layers, branches, batch, width)
        s_, l_, rows, w = out.shape
        out = out.reshape(s_, l_, nb, rows // nb, w)
        return out.permute(3, 0, 1, 2, 4).contiguous()

    def stacked_frames(self) -> torch.Tensor:
        """Per-frame conditional outputs as (batch, frame_steps, layers, frames, width)."""
        if not self.frames:
            raise RuntimeError("no per-frame activations were captured (set frame_steps)")
        steps = sorted({s for s, _ in self.frames})
        layers = sorted({l for _, l in self.frames})
        out = torch.stack([torch.stack([self.frames[(s, l)] for l in layers]) for s in steps])
        return out.permute(2, 0, 1, 3, 4).contiguous()


# --------------------------------------------------------------------------------------------
# patch keys/values
# --------------------------------------------------------------------------------------------
class PatchKV(Intervention):
    """Replace a layer's keys and values by those cached from another run (same seed/steps).

    `source` is a :class:`Capture` made with ``keys_values=True``. Each CFG branch receives its
    own cached keys/values. `samples` selects which prompts of the batch (per branch) are
    patched; None patches all. If the cached run had one prompt it is broadcast; otherwise
    prompt i of the current batch takes cached prompt i.
    """

    needs_kv = True

    def __init__(self, source: Capture, layers: Sequence[int] | int | None = None,
                 samples: Sequence[int] | None = None):
        if not source.needs_kv:
            raise ValueError("PatchKV needs a Capture made with keys_values=True")
        self.source = source
        self.layers = _as_tuple(layers)
        self.samples = None if samples is None else [int(i) for i in samples]

    def on_kv(self, state, layer, which, tensor):
        key = (state.step, layer)
        if key not in self.source.kv:
            raise KeyError(f"no cached keys/values for step {state.step}, layer {layer}: the cached "
                           "run must use the same number of steps and capture this layer")
        cached = self.source.kv[key][0 if which == "k" else 1]
        if cached.shape[1:] != tensor.shape[1:]:
            raise ValueError(
                f"cannot patch layer {layer}: cached {which} has shape {tuple(cached.shape)} but the "
                f"run has {tuple(tensor.shape)}; pad both prompts to the same token count")
        nb = len(state.branches)
        cur = tensor.reshape(nb, tensor.shape[0] // nb, *tensor.shape[1:])
        src = cached.to(tensor.device, tensor.dtype)
        src = src.reshape(nb, src.shape[0] // nb, *src.shape[1:])
        idx = range(cur.shape[1]) if self.samples is None else self.samples
        out = cur.clone()
        for i in idx:
            out[:, i] = src[:, 0 if src.shape[1] == 1 else i]
        return out.reshape(tensor.shape)

    def on_mask(self, state, layer, mask):
        # The patched keys come with the cached run's padding pattern: take its mask rows too.
        cached = self.source.masks.get((state.step, layer))
        if cached is None and mask is None:
            return None
        if cached is None or mask is None or cached.shape[1:] != mask.shape[1:]:
            raise ValueError(f"layer {layer}: attention masks of the cached run and this run differ in "
                             "form; pad both prompts to the same token count")
        nb = len(state.branches)
        if mask.shape[0] % nb or cached.shape[0] % nb:
            return mask  # a mask shared by the whole batch: nothing per-row to take over
        cur = mask.reshape(nb, mask.shape[0] // nb, *mask.shape[1:]).clone()
        src = cached.to(mask.device).reshape(nb, cached.shape[0] // nb, *cached.shape[1:])
        idx = range(cur.shape[1]) if self.samples is None else self.samples
        for i in idx:
            cur[:, i] = src[:, 0 if src.shape[1] == 1 else i]
        return cur.reshape(mask.shape)


# --------------------------------------------------------------------------------------------
# add a vector
# --------------------------------------------------------------------------------------------
class AddVector(Intervention):
    """h ← h + α·v on the chosen branch of the chosen layers.

    `vectors` maps layer index → tensor of shape (width,) (every step) or (steps, width)
    (one vector per step; a generation with another step count is refused, naming both counts,
    unless `resample_steps` resamples the schedule linearly to the generation's steps).
    `alpha` is a float or one value per prompt of the batch.
    With `renorm`, each steered token is rescaled to its original L2 norm. Steps before
    `start_step` are left alone. Rows whose α is exactly 0 are never touched, so α = 0 is
    bit-identical to no steering.
    """

    def __init__(self, vectors: Mapping[int, torch.Tensor], alpha: float | Sequence[float] = 1.0, *,
                 branch: Branch = "cond", renorm: bool = False, start_step: int = 0,
                 resample_steps: bool = False):
        if branch not in ("cond", "uncond", "all"):
            raise ValueError(f"branch must be 'cond', 'uncond' or 'all', got {branch!r}")
        self.vectors = {int(k): torch.as_tensor(v) for k, v in vectors.items()}
        self.layers = tuple(sorted(self.vectors))
        self.alpha = alpha
        self.branch = branch
        self.renorm = renorm
        self.start_step = int(start_step)
        self.resample_steps = bool(resample_steps)
        self._resampled: dict[tuple[int, int], torch.Tensor] = {}

    def _vector(self, step: int, layer: int, total_steps: int | None = None) -> torch.Tensor:
        v = self.vectors[layer]
        if v.ndim == 1 or v.shape[0] == 1:  # one vector for every step
            return v.reshape(-1)
        if total_steps is not None and total_steps != v.shape[0]:
            if not self.resample_steps:
                raise ValueError(
                    f"steering vector for layer {layer} has {v.shape[0]} per-step vectors but the "
                    f"generation runs {total_steps} steps; generate with {v.shape[0]} steps, or "
                    "pass resample_steps=True to resample the schedule linearly")
            key = (layer, int(total_steps))
            if key not in self._resampled:
                self._resampled[key] = resample_schedule(v, int(total_steps))
            return self._resampled[key][step]
        if step >= v.shape[0]:
            raise IndexError(f"steering vector for layer {layer} has {v.shape[0]} steps; "
                             f"generation reached step {step}")
        return v[step]

    def post(self, state, layer, output):
        if state.step < self.start_step:
            return output
        rows = state.rows(output.shape[0], self.branch)
        if rows is None:
            return output
        n_rows = rows.stop - rows.start
        alpha = torch.as_tensor(self.alpha, dtype=torch.float32).flatten()
        if alpha.numel() == 1:
            alpha = alpha.expand(n_rows)
        elif self.branch == "all":
            alpha = alpha.repeat(len(state.branches))
        if alpha.numel() != n_rows:
            raise ValueError(f"alpha has {alpha.numel()} values for a batch of {n_rows} prompts")
        active = (alpha != 0).nonzero().flatten().tolist()
        if not active:
            return output
        v = self._vector(state.step, layer, state.total_steps).to(output.device, output.dtype)
        if v.shape[-1] != output.shape[-1]:
            raise ValueError(f"steering vector width {v.shape[-1]} != layer {layer} width {output.shape[-1]}")
        out = output.clone()
        for i in active:
            r = rows.start + i
            h = output[r]
            h_new = h + alpha[i].to(output.dtype) * v
            if self.renorm:
                h_new = h_new * (h.norm(dim=-1, keepdim=True) / h_new.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            out[r] = h_new
        return out


def resample_schedule(vectors: torch.Tensor, steps: int) -> torch.Tensor:
    """Linearly resample a per-step schedule ``(S, width)`` to ``(steps, width)``: step i of the
    new schedule sits at the same fraction of the way through sampling as in the old one."""
    v = torch.as_tensor(vectors).float()
    if v.shape[0] == steps:
        return v
    if v.shape[0] == 1:
        return v.expand(steps, -1).clone()
    if steps == 1:
        return v.mean(0, keepdim=True)
    pos = torch.linspace(0, v.shape[0] - 1, steps)
    lo = pos.floor().long().clamp(max=v.shape[0] - 2)
    frac = (pos - lo.float())[:, None]
    return v[lo] * (1 - frac) + v[lo + 1] * frac


class Ablate(Intervention):
    """Zero the output of the chosen layers (on the chosen CFG branch; default both)."""

    def __init__(self, layers: Sequence[int] | int, branch: Branch = "all",
                 samples: Sequence[int] | None = None):
        self.layers = _as_tuple(layers)
        self.branch = branch
        self.samples = None if samples is None else [int(i) for i in samples]

    def post(self, state, layer, output):
        rows = state.rows(output.shape[0], self.branch)
        if rows is None:
            return output
        out = output.clone()
        if self.samples is None:
            out[rows] = 0
        else:
            per = output.shape[0] // len(state.branches)
            branch_starts = range(rows.start, rows.stop, per)
            for start in branch_starts:
                for i in self.samples:
                    out[start + i] = 0
        return out


class SwapCondition(Intervention):
    """Give the chosen layers other encoder states (another prompt's) on the chosen branch.

    `encoder_hidden_states` has shape (1 or B, tokens, text width) and must have the same token
    count as the run's own states (pad prompts to a common length) unless branch == "all" and
    it covers the whole batch. With (B, ...) states, prompt i of the batch gets row i.

    `start_steps` (one int, or one per prompt of the batch) delays the swap: prompt i reads its
    own states before step ``start_steps[i]`` and the swapped ones from then on (prompt
    conditioning interpolation). A prompt whose start step is never reached is untouched, so it
    is bit-identical to a run without the intervention.
    """

    def __init__(self, layers: Sequence[int] | int | None, encoder_hidden_states: torch.Tensor,
                 branch: Branch = "cond", start_steps: int | Sequence[int] = 0):
        self.layers = _as_tuple(layers)
        self.states = encoder_hidden_states
        self.branch = branch
        self.start_steps = start_steps

    def _starts(self, n_prompts: int) -> list[int]:
        if isinstance(self.start_steps, int):
            return [self.start_steps] * n_prompts
        starts = [int(s) for s in self.start_steps]
        if len(starts) != n_prompts:
            raise ValueError(f"SwapCondition has {len(starts)} start steps for a batch of {n_prompts} prompts")
        return starts

    def pre(self, state, layer, encoder_hidden_states):
        rows = state.rows(encoder_hidden_states.shape[0], self.branch)
        if rows is None:
            return encoder_hidden_states
        new = self.states.to(encoder_hidden_states.device, encoder_hidden_states.dtype)
        if new.shape[1:] != encoder_hidden_states.shape[1:]:
            raise ValueError(f"swapped encoder states {tuple(new.shape)} do not match the layer's "
                             f"{tuple(encoder_hidden_states.shape)}; pad the prompts to the same length")
        n_rows = rows.stop - rows.start
        if isinstance(self.start_steps, int) and self.start_steps <= 0:
            out = encoder_hidden_states.clone()
            out[rows] = new.expand(n_rows, *new.shape[1:]) if new.shape[0] == 1 or new.shape[0] != n_rows else new
            return out
        per = encoder_hidden_states.shape[0] // len(state.branches)
        starts = self._starts(per)
        active = [r for r in range(rows.start, rows.stop) if state.step >= starts[r % per]]
        if not active:
            return encoder_hidden_states
        out = encoder_hidden_states.clone()
        for r in active:
            i = r - rows.start
            out[r] = new[0 if new.shape[0] == 1 else (i if new.shape[0] == n_rows else i % per)]
        return out


# --------------------------------------------------------------------------------------------
# the wrapper and the session
# --------------------------------------------------------------------------------------------
class InterventionProcessor:
    """Attention processor that delegates to the module's own processor and applies
    the session's interventions to its inputs and output."""

    def __init__(self, inner: Any, layer: int, state: RunState, interventions: list[Intervention]):
        self.inner = inner
        self.layer = layer
        self.state = state
        self.interventions = interventions
        # diffusers filters keyword arguments by the processor's signature: expose the inner one.
        inner_call = inner.__call__

        def _signature_proxy(*args, **kwargs):
            return type(self).__call__(self, *args, **kwargs)

        _signature_proxy.__signature__ = inspect.signature(inner_call)  # type: ignore[attr-defined]
        self.__call__ = _signature_proxy  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:  # attributes such as _attention_backend
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        state = self.state
        if encoder_hidden_states is not None:
            for iv in self.interventions:
                encoder_hidden_states = iv.pre(state, self.layer, encoder_hidden_states)
        if encoder_hidden_states is not None and "attention_mask" in kwargs:
            for iv in self.interventions:
                if iv.needs_kv:
                    kwargs["attention_mask"] = iv.on_mask(state, self.layer, kwargs["attention_mask"])
        state.current_layer = self.layer
        try:
            out = self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        finally:
            state.current_layer = None
        for iv in self.interventions:
            out = iv.post(state, self.layer, out)
        return out


def _get_processor(module: torch.nn.Module) -> Any:
    return module.processor


def _set_processor(module: torch.nn.Module, processor: Any) -> None:
    # Plain attribute assignment (set_processor may warn or reset other state).
    if isinstance(processor, torch.nn.Module):
        module.set_processor(processor)
    else:
        module.__dict__.pop("processor", None)
        module.processor = processor


@dataclass
class InterventionHandle:
    """What :func:`install` changed, so that :meth:`remove` restores it exactly."""

    state: RunState
    restored: list[tuple[torch.nn.Module, Any]] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        for module, processor in reversed(self.restored):
            _set_processor(module, processor)
        self.hooks.clear()
        self.restored.clear()


def install(layers: Sequence[Any], denoiser: torch.nn.Module, interventions: Sequence[Intervention],
            branches_fn: Callable[[], tuple[str, ...]], model: Any = None) -> InterventionHandle:
    """Wrap the processors of `layers` (objects with .index and .module) for `interventions`.

    A forward pre-hook on `denoiser` advances the step counter. Returns a handle whose
    ``remove()`` restores the original processors and removes every hook.
    """
    state = RunState(branches_fn=branches_fn)
    handle = InterventionHandle(state=state)
    interventions = list(interventions)
    if not interventions:
        return handle
    for iv in interventions:
        iv.begin(model)

    def _advance(_module, _args):
        state.step += 1

    handle.hooks.append(denoiser.register_forward_pre_hook(_advance))
    try:
        for iv in interventions:
            handle.hooks += list(iv.attach(model, denoiser, state))
        for layer in layers:
            active = [iv for iv in interventions if iv.applies_to(layer.index)]
            if not active:
                continue
            module = layer.module
            original = _get_processor(module)
            _set_processor(module, InterventionProcessor(original, layer.index, state, active))
            handle.restored.append((module, original))
            kv_ivs = [iv for iv in active if iv.needs_kv]
            if kv_ivs:
                state.kv_layers[layer.index] = str(getattr(layer, "name", layer.index))
                for which, proj in (("k", module.to_k), ("v", module.to_v)):
                    handle.hooks.append(proj.register_forward_hook(
                        _kv_hook(state, layer.index, which, kv_ivs)))
    except Exception:
        handle.remove()
        raise
    return handle


def _kv_hook(state: RunState, layer: int, which: str, ivs: list[Intervention]):
    def hook(_module, _inputs, output):
        if state.current_layer != layer:
            return output
        state.kv_fired.add((state.step, layer, which))
        for iv in ivs:
            output = iv.on_kv(state, layer, which, output)
        return output

    return hook


@contextlib.contextmanager
def apply_interventions(model: Any, interventions: Sequence[Intervention]) -> Iterator[InterventionHandle]:
    """Install interventions on a :class:`~tada.models.base.SteerableModel` for a `with` block.

    The original processors are restored and every hook removed on exit, even on error.
    """
    unknown = [iv for iv in interventions if not isinstance(iv, Intervention)]
    if unknown:
        raise TypeError(f"not interventions: {unknown!r}")
    n = len(model.layers)
    for iv in interventions:
        for layer in iv.layers or ():
            if not 0 <= layer < n:
                raise IndexError(f"{type(iv).__name__} names layer {layer}; the model has layers 0..{n - 1}")
    handle = install(model.layers, model.denoiser(), interventions,
                     branches_fn=lambda: model.run_branches, model=model)
    sessions = model.__dict__.setdefault("_intervention_states", [])
    sessions.append(handle.state)
    try:
        yield handle
    finally:
        sessions.remove(handle.state)
        handle.remove()
