"""Interventions of the baselines: additive edits of the conditioning, the FreeSliders velocity
combination and per-row scaled LoRA branches.

Notation: row i of a batch has the scalar α_i; ``c_i`` is the encoder state a cross-attention
layer receives for it, ``g`` the guidance scale, ``v_u`` / ``v_c`` the unconditional /
conditional outputs of the denoiser.

* :class:`AddToCondition`: on the chosen layers and CFG branch, ``c_i ← c_i + α_i·Δ_i`` with a
  per-row delta ``Δ_i`` (Text Embeddings: ``Δ = e(pos) − e(neg)``, so the layer reads
  ``e(neutral) + α·(e(pos) − e(neg))``; Token Embeddings: Δ is the token direction at the concept
  token's positions and zero elsewhere). Δ may be a callable ``(model) -> Δ`` evaluated when the
  session begins (at the generation's ``text_length``).
* :class:`SliderVelocity` (FreeSliders): after each denoiser call from ``start_step`` on, the rows
  with α ≠ 0 run a second denoiser call holding their conditional inputs twice, the chosen layers
  reading ``e(pos)`` in the first copy and ``e(neg)`` in the second (the other layers read the
  neutral states); then ``v_c ← v_c + (α/g)·(v_pos − v_neg)`` (g = 1 without CFG), so a linear CFG
  ``v_u + g·(v_c − v_u)`` gives ``CFG(neutral) + α·(v_pos − v_neg)``. The rows with α = 0 never
  leave the plain call, so they stay bit-identical. Tensors of the call whose first dimension is
  the batch are sliced; the others (timestep scalars, rotary tables) are passed as they are.
* :class:`LoRABranch` (Concept Sliders): on each target linear module, ``y ← y + α_i·s·B·A·x`` on
  every row of prompt i (both CFG branches); ``s = lora_alpha / r``; α = 1 is the trained slider,
  α < 0 inverts it, and weights are never merged, so α may differ per row.

Rows with α = 0 are never touched by any of them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from .interventions import Intervention, RunState, _as_tuple

#: the branches of the second denoiser call of :class:`SliderVelocity`
SLIDER_BRANCHES = ("slider_pos", "slider_neg")


def _alphas(alpha: float | Sequence[float]) -> torch.Tensor:
    return torch.as_tensor(alpha, dtype=torch.float32).flatten()


def _resolve(value: Any, model: Any) -> Any:
    return value(model) if callable(value) else value


def _for_layer(model: Any, states: Any, layer: int) -> torch.Tensor | None:
    """The part of `states` (a tensor, or stream -> tensor) that `layer` reads."""
    if isinstance(states, Mapping):
        streams = getattr(model, "layer_streams", None)
        return states.get(streams[layer]) if streams else None
    return states


class AddToCondition(Intervention):
    """``c_i ← c_i + α_i·Δ_i`` on the chosen layers (None = all) and branch (default "cond").

    `delta` is a tensor (1 or B, tokens, width), a dict stream -> tensor (backends with several
    text streams; a layer whose stream has no entry is left alone), or a callable of the model
    returning either. Rows in `replace_rows` start from the states `replace` (same forms) instead
    of their own: ``c_i ← r_i + α_i·Δ_i`` (a prompt rewritten for these rows only)."""

    def __init__(self, layers: Sequence[int] | int | None, delta: Any, alpha: float | Sequence[float],
                 branch: str = "cond", replace: Any = None, replace_rows: Sequence[int] = ()):
        self.layers = _as_tuple(layers)
        self.delta = delta
        self.alpha = alpha
        self.branch = branch
        self.replace = replace
        self.replace_rows = {int(i) for i in replace_rows}
        self._model: Any = None
        self._resolved: Any = None
        self._replaced: Any = None

    def begin(self, model: Any) -> None:
        self._model = model
        self._resolved = _resolve(self.delta, model)
        self._replaced = _resolve(self.replace, model) if self.replace_rows else None

    def pre(self, state: RunState, layer: int, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        rows = state.rows(encoder_hidden_states.shape[0], self.branch)
        if rows is None:
            return encoder_hidden_states
        n_rows = rows.stop - rows.start
        alpha = _alphas(self.alpha)
        alpha = alpha.expand(n_rows) if alpha.numel() == 1 else alpha
        if alpha.numel() != n_rows:
            raise ValueError(f"alpha has {alpha.numel()} values for a batch of {n_rows} prompts")
        active = (alpha != 0).nonzero().flatten().tolist()
        delta = _for_layer(self._model, self._resolved, layer)
        if not active or delta is None:
            return encoder_hidden_states
        delta = delta.to(encoder_hidden_states.device, encoder_hidden_states.dtype)
        if delta.shape[1:] != encoder_hidden_states.shape[1:]:
            raise ValueError(f"layer {layer}: condition delta {tuple(delta.shape)} does not match the layer's "
                             f"encoder states {tuple(encoder_hidden_states.shape)}; encode at the same text_length")
        out = encoder_hidden_states.clone()
        base = None if self._replaced is None else _for_layer(self._model, self._replaced, layer)
        for i in active:
            d = delta[0 if delta.shape[0] == 1 else i]
            own = encoder_hidden_states[rows.start + i]
            if base is not None and i in self.replace_rows:
                own = base[i].to(own.device, own.dtype)
            out[rows.start + i] = own + alpha[i].to(out.dtype) * d
        return out


# --------------------------------------------------------------------------------------------
# FreeSliders
# --------------------------------------------------------------------------------------------
def take_rows(args: Sequence[Any], kwargs: Mapping[str, Any], n_rows: int, index: Sequence[int]
              ) -> tuple[list[Any], dict[str, Any]]:
    """The denoiser call restricted to rows `index`: every tensor argument whose first dimension
    is the batch (`n_rows`) is indexed, the others are passed as they are."""
    idx = torch.as_tensor(list(index), dtype=torch.long)

    def pick(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n_rows:
            return value[idx.to(value.device)]
        return value

    return [pick(a) for a in args], {k: pick(v) for k, v in kwargs.items()}


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction inside a denoiser's output (a tensor, a tuple's first item, or ``.sample``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    if hasattr(output, "sample"):
        return output.sample
    raise TypeError(f"cannot find the prediction in a denoiser output of type {type(output).__name__}")


def replace_output(output: Any, tensor: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return tensor
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    if isinstance(output, list):
        return [tensor, *output[1:]]
    output.sample = tensor
    return output


class SliderVelocity(Intervention):
    """FreeSliders (module doc). `positive` / `negative` are the encoder states of the positive
    and negative prompts (B, tokens, width), a dict stream -> states, or a callable of the model
    returning them; `layers` (None = all) read them in the extra passes."""

    def __init__(self, layers: Sequence[int] | int | None, positive: Any, negative: Any,
                 alpha: float | Sequence[float], start_step: int = 0):
        self.layers = _as_tuple(layers)
        self.positive, self.negative = positive, negative
        self.alpha = alpha
        self.start_step = int(start_step)
        self._states: tuple[Any, Any] | None = None
        self._active: list[int] = []
        self._model: Any = None
        self._busy = False

    def begin(self, model: Any) -> None:
        self._model = model
        self._states = (_resolve(self.positive, model), _resolve(self.negative, model))
        self._active = (_alphas(self.alpha) != 0).nonzero().flatten().tolist()

    def pre(self, state: RunState, layer: int, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        if state.branches != SLIDER_BRANCHES or self._model.__dict__.get("_slider_pass") is not self:
            return encoder_hidden_states  # not this intervention's own extra call
        k = encoder_hidden_states.shape[0] // 2
        out = encoder_hidden_states.clone()
        for j, states in enumerate(self._states or ()):
            part = _for_layer(self._model, states, layer)
            if part is None:
                continue
            part = part.to(out.device, out.dtype)
            if part.shape[1:] != out.shape[1:]:
                raise ValueError(f"layer {layer}: slider prompt states {tuple(part.shape)} do not match the "
                                 f"layer's {tuple(out.shape)}; encode at the same text_length")
            out[j * k:(j + 1) * k] = part[self._active] if part.shape[0] > 1 else part.expand(k, *part.shape[1:])
        return out

    def attach(self, model: Any, denoiser: torch.nn.Module, state: RunState) -> list[Any]:
        def hook(module, args, kwargs, output):
            return self._combine(model, module, state, args, kwargs, output)

        return [denoiser.register_forward_hook(hook, with_kwargs=True)]

    def _combine(self, model, module, state, args, kwargs, output):
        if self._busy or not self._active or state.step < self.start_step:
            return output
        branches = tuple(model.run_branches)
        if not set(branches) <= {"cond", "uncond"}:
            return output
        v = output_tensor(output)
        rows = state.rows(v.shape[0], "cond")
        alpha = _alphas(self.alpha)
        if rows is None or alpha.numel() != rows.stop - rows.start:
            raise ValueError(f"FreeSliders: alpha has {alpha.numel()} values for a batch of "
                             f"{None if rows is None else rows.stop - rows.start} prompts")
        index = [rows.start + i for i in self._active]
        args2, kwargs2 = take_rows(args, kwargs, v.shape[0], index + index)
        model.run_branches, self._busy = SLIDER_BRANCHES, True
        model.__dict__["_slider_pass"] = self
        try:
            extra = output_tensor(module.forward(*args2, **kwargs2))
        finally:
            model.run_branches, self._busy = branches, False
            model.__dict__.pop("_slider_pass", None)
        k = len(index)
        g = float(getattr(model, "run_guidance", 1.0)) if "uncond" in branches else 1.0
        scale = (alpha[self._active] / g).to(v.device, v.dtype).reshape(k, *([1] * (v.ndim - 1)))
        out = v.clone()
        out[index] = v[index] + scale * (extra[:k] - extra[k:])
        return replace_output(output, out)


# --------------------------------------------------------------------------------------------
# Concept Sliders
# --------------------------------------------------------------------------------------------
class LoRABranch(Intervention):
    """Per-row scaled LoRA branches. `weights` maps a module name of the denoiser (a linear layer)
    to its ``(A, B)`` matrices (peft's ``lora_A.weight`` (r, in) and ``lora_B.weight`` (out, r));
    `scale` is ``lora_alpha / r``; `alpha` is one value or one per prompt of the batch."""

    layers: tuple[int, ...] = ()

    def __init__(self, weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]], alpha: float | Sequence[float],
                 scale: float = 1.0):
        self.weights = {str(k): (torch.as_tensor(a), torch.as_tensor(b)) for k, (a, b) in weights.items()}
        self.alpha = alpha
        self.scale = float(scale)
        self.layers = ()

    def attach(self, model: Any, denoiser: torch.nn.Module, state: RunState) -> list[Any]:
        modules = dict(denoiser.named_modules())
        missing = [name for name in self.weights if name not in modules]
        if missing:
            raise KeyError(f"LoRA target modules not in the denoiser {type(denoiser).__name__}: {missing[:4]}")
        return [modules[name].register_forward_hook(self._hook(a, b, state)) for name, (a, b) in self.weights.items()]

    def _hook(self, a: torch.Tensor, b: torch.Tensor, state: RunState) -> Callable:
        def hook(_module, inputs, output):
            branches = state.branches
            if not set(branches) <= {"cond", "uncond"}:
                return output  # a FreeSliders pass: its rows have no LoRA α
            alpha = _alphas(self.alpha)
            n = output.shape[0]
            per = n // len(branches)
            if alpha.numel() == 1:
                alpha = alpha.expand(per)
            if alpha.numel() != per or per * len(branches) != n:
                raise ValueError(f"LoRA: alpha has {alpha.numel()} values for a batch of {n} rows "
                                 f"in branches {branches}")
            active = [r for r in range(n) if alpha[r % per] != 0]
            if not active:
                return output
            x = inputs[0][active]
            aw, bw = a.to(x.device, x.dtype), b.to(x.device, x.dtype)
            scale = torch.stack([alpha[r % per] for r in active]).to(x.device, x.dtype) * self.scale
            out = output.clone()
            out[active] = output[active] + scale.reshape(-1, *([1] * (x.ndim - 1))) * (x @ aw.T @ bw.T)
            return out

        return hook
