"""Training a Concept Slider with the enhance objective.

For a concept with positive template pos(·), a base prompt b (neutral = b) and its partially
denoised latent x_t, the frozen model gives v(x_t, neutral), v(x_t, pos(b)) and v(x_t, ∅) (the
unconditional branch); the LoRA model v_θ is trained so that

    v_θ(x_t, neutral) ≈ v(x_t, neutral) + η·(v(x_t, pos) − v(x_t, ∅))         (η = 7)

(mean squared error over the conditional rows), AdamW at lr 1e-4 on the LoRA parameters only
(peft, rank r on the projections of :func:`tada.methods.sliders.lora_targets`).

Partial denoising: each step draws base prompts, seeds and k ∈ [1, denoise_steps − 1]; the model
(with the current slider, α = 1) samples k of ``denoise_steps`` steps from the seeds' noise with
CFG on the neutral prompts, and the denoiser call of step k is recorded as the backend makes it
(latents, timestep, conditioning, every other argument). The three frozen predictions and the
trained one are that same call: the positive prompt is swapped in at every cross-attention
layer, the unconditional prediction is the call's own unconditional branch. So the trainer
knows nothing of a backend's timestep convention or call signature.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from tada.models.baseline_interventions import LoRABranch, output_tensor, take_rows
from tada.models.interventions import Intervention, SwapCondition, apply_interventions

from .pci import common_text_length
from .sliders import lora_targets, lora_weights

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the recorder once it has the call it waits for."""


class _Recorder(Intervention):
    """Record the denoiser call of step `at` and stop the generation there."""

    def __init__(self, at: int):
        self.at = int(at)
        self.layers = ()
        self.call: tuple[list[Any], dict[str, Any], tuple[str, ...]] | None = None

    def attach(self, model, denoiser, state):
        def hook(_module, args, kwargs):
            if state.step == self.at:
                self.call = (list(args), dict(kwargs), tuple(model.run_branches))
                raise _Stop

        return [denoiser.register_forward_pre_hook(hook, with_kwargs=True)]


def _detach(value: Any) -> Any:
    """Copies of the tensors of a recorded call (inference tensors cannot enter autograd)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def record_call(model: Any, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, at: int,
                text_length: int | None, interventions: Sequence[Any] = ()) -> tuple[list[Any], dict[str, Any], tuple]:
    """The denoiser call of step `at` of generating `prompts` (after `at` sampler steps)."""
    rec = _Recorder(at)
    try:
        model.generate(list(prompts), list(seeds), steps=steps, text_length=text_length,
                       interventions=[*interventions, rec])
    except _Stop:
        pass
    if rec.call is None:
        raise RuntimeError(f"the generation never reached step {at} of {steps}")
    args, kwargs, branches = rec.call
    return [_detach(a) for a in args], {k: _detach(v) for k, v in kwargs.items()}, branches


def train_slider(model: Any, concept: Any, bases: Sequence[str], layers: Sequence[int] | None, *,
                 rank: int = 8, lora_alpha: float = 8.0, eta: float = 7.0, lr: float = 1e-4, steps: int = 100,
                 batch_size: int = 2, denoise_steps: int = 10, seed: int = 0, progress: bool = True
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train a slider for `concept` (a SteeringConcept) on `layers` (None = every block).
    Returns peft-format LoRA tensors and info (lora_config, mean loss of the first and of the last
    10 steps, seconds)."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from tqdm.auto import tqdm

    if float(model.default_guidance) <= 1.0:
        raise ValueError("slider training needs the unconditional prediction: set the model's guidance > 1")
    if int(denoise_steps) < 2:
        raise ValueError(f"denoise_steps must be >= 2 (partial denoising), got {denoise_steps}")
    bases = list(bases)
    targets = lora_targets(model, layers)
    config = {"r": int(rank), "lora_alpha": float(lora_alpha), "target_modules": targets, "lora_dropout": 0.0,
              "init_lora_weights": True}
    torch.manual_seed(int(seed))
    net = copy.deepcopy(model.denoiser())
    inject_adapter_in_model(LoraConfig(**config), net)
    params = []
    for name, p in net.named_parameters():
        p.requires_grad_("lora_" in name)
        if "lora_" in name:
            params.append(p)
    net.eval()  # no dropout; gradients still flow to the LoRA parameters
    opt = torch.optim.AdamW(params, lr=float(lr))
    rng = np.random.default_rng(int(seed))
    scale = float(lora_alpha) / int(rank)
    length = common_text_length(model, [t for b in bases for t in (b, concept.positive(b))])
    losses, t0 = [], time.perf_counter()
    for _ in tqdm(range(int(steps)), desc=f"slider {concept.id}", disable=not progress):
        batch = [bases[i] for i in rng.integers(0, len(bases), int(batch_size))]
        seeds = [int(s) for s in rng.integers(0, 2 ** 31 - 1, len(batch))]
        at = int(rng.integers(1, int(denoise_steps)))
        current = lora_weights({k: v.detach().clone() for k, v in get_peft_model_state_dict(net).items()})
        args, kwargs, branches = record_call(model, batch, seeds, steps=int(denoise_steps), at=at, text_length=length,
                                             interventions=[LoRABranch(current, 1.0, scale=scale)])
        n = len(branches) * len(batch)
        cond = [branches.index("cond") * len(batch) + i for i in range(len(batch))]
        uncond = [branches.index("uncond") * len(batch) + i for i in range(len(batch))]
        with torch.no_grad():
            model.run_branches = branches
            positive = model.encode_prompts([concept.positive(b) for b in batch], text_length=length)
            swaps = [SwapCondition(None, positive)] if isinstance(positive, torch.Tensor) else [
                SwapCondition([i for i, s in enumerate(model.layer_streams) if s == stream], states)
                for stream, states in positive.items() if stream in set(model.layer_streams)]
            with apply_interventions(model, []):
                plain = output_tensor(model.denoiser()(*args, **kwargs)).float()
            with apply_interventions(model, swaps) as handle:
                handle.state.start()
                pos = output_tensor(model.denoiser()(*args, **kwargs)).float()
            target = plain[cond] + float(eta) * (pos[cond] - plain[uncond])
        args_c, kwargs_c = take_rows(args, kwargs, n, cond)
        model.run_branches = ("cond",)
        pred = output_tensor(net(*args_c, **kwargs_c)).float()
        loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(net).items()}
    info = {"lora_config": config, "loss_first": float(np.mean(losses[:10])) if losses else None,
            "loss_last": float(np.mean(losses[-10:])) if losses else None, "seconds": time.perf_counter() - t0,
            "targets": len(targets)}
    return tensors, info


def slider_hyperparameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`train_slider` from a ``baselines.sliders`` config block."""
    keys = ("rank", "lora_alpha", "eta", "lr", "steps", "batch_size", "denoise_steps", "seed")
    return {k: cfg[k] for k in keys if k in cfg}
