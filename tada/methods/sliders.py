"""Concept Sliders: a LoRA on the attention projections, scaled by α at inference.

The adapter (rank r, peft) sits on ``to_q`` / ``to_k`` / ``to_v`` / ``to_out`` of every attention
module of every block that holds a cross-attention layer (``sliders``), or only of the blocks of
the functional layers (``sliders_localized``); on the embedded model a block's self-attention
projections are ``attn1.qkv`` and ``attn1.out``. Training is in :mod:`.slider_training`.

At inference row i gets ``y ← y + α_i·(lora_alpha / r)·B·A·x`` on every target module
(:class:`~tada.models.baseline_interventions.LoRABranch`): α = 1 is the trained slider, α < 0
inverts it, α = 0 is the base model bit for bit, and no weight is merged, so the rows of one
batch may have different α.

The artifact's tensors carry peft's key names (``<module>.lora_A.weight``,
``<module>.lora_B.weight``, relative to the denoiser) and its ``info.lora_config`` the
``LoraConfig`` arguments, so a plain diffusers pipeline loads it with peft::

    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from tada.methods.baseline_artifact import read_metadata

    cfg = LoraConfig(**read_metadata(path)["info"]["lora_config"])
    inject_adapter_in_model(cfg, pipe.transformer, adapter_name="slider")
    set_peft_model_state_dict(pipe.transformer, load_file(path), adapter_name="slider")
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch

from tada.models.baseline_interventions import LoRABranch

from .base import SweepRow
from .baseline_variant import BaselineVariant

#: names of the attention projections a slider adapts (within a block)
PROJECTIONS = re.compile(r"\.(to_q|to_k|to_v|to_out\.0|attn1\.qkv|attn1\.out)$")


def lora_targets(model: Any, layers: Sequence[int] | None) -> list[str]:
    """Module names (relative to the denoiser) of the attention projections of the blocks that
    hold the cross-attention `layers` (None = all)."""
    chosen = model.resolve_layers(None if layers is None else list(layers))
    blocks = {model.layers[i].name.rsplit(".", 1)[0] for i in chosen}
    names = [name for name, module in model.denoiser().named_modules()
             if isinstance(module, torch.nn.Linear) and PROJECTIONS.search(name)
             and any(name.startswith(block + ".") for block in blocks)]
    if not names:
        raise ValueError(f"backend '{model.backend}': no to_q/to_k/to_v/to_out projections in the blocks {sorted(blocks)}")
    return names


def lora_weights(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (A, B)} from peft-format tensors."""
    out = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            name = key[: -len(".lora_A.weight")]
            b = tensors.get(f"{name}.lora_B.weight")
            if b is None:
                raise KeyError(f"LoRA tensors: {key} has no matching lora_B")
            out[name] = (a.float(), b.float())
    if not out:
        raise ValueError("no LoRA tensors (keys '<module>.lora_A.weight')")
    return out


class SlidersVariant(BaselineVariant):
    """Concept Sliders on every block or on the functional blocks."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = self.artifact.info["lora_config"]
        self.scale = float(cfg["lora_alpha"]) / float(cfg["r"])
        self.weights = lora_weights(self.artifact.tensors)

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        alphas = [float(r.alpha) for r in rows]
        if not any(alphas):
            return []
        self.check_model(model)
        return [LoRABranch(self.weights, alphas, scale=self.scale)]
