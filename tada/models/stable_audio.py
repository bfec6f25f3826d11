"""Stable Audio Open through diffusers' `StableAudioPipeline`.

Cross-attention layers are ``transformer_blocks.N.attn2`` of ``pipe.transformer`` (a
`StableAudioDiTModel`; 24 layers in Stable Audio Open 1.0). Their keys/values come from
``cross_attention_proj`` of [T5 states projected and masked, seconds-start token, seconds-end
token]. The pipeline tokenizes with ``padding="max_length"`` to ``tokenizer.model_max_length``
(128 for Stable Audio Open), so every prompt has the same number of encoder tokens and the
keys/values of two runs always have the same shape: ``text_length`` has nothing to do here and
is accepted and ignored.

Text reaches the DiT only through cross-attention: the global conditioning (prepended token) is
computed from the start/end seconds, not from text. With no negative prompt, the unconditional
branch is all zeros (text and seconds tokens), as in the pipeline.

The pipeline's own sampling loop is used. The initial latents come from
:func:`tada.models.base.seeded_noise` (one CPU generator per seed) and the same per-seed
generators are handed to the pipeline, so stochastic schedulers (the checkpoint's
`CosineDPMSolverMultistepScheduler` draws Brownian noise seeded from them; it needs the optional
`torchsde` package) are deterministic per seed and independent of the batch composition.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ._diffusers import DiffusersModel, find_modules, generators
from .base import seeded_noise, word_positions


class StableAudioModel(DiffusersModel):
    """Steerable Stable Audio Open. Build with :meth:`from_config` or ``StableAudioModel(pipe)``."""

    backend = "stable_audio"
    denoiser_attr = "transformer"
    default_steps = 100
    default_guidance = 7.0
    text_outside_cross_attention = False

    def _setup(self, duration_given: bool) -> None:
        self.sample_rate = int(self.pipe.vae.config.sampling_rate)
        if not duration_given:
            self.default_duration = self.max_duration

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import StableAudioPipeline

        return StableAudioPipeline

    @property
    def max_duration(self) -> float:
        """Longest clip the DiT's latent length allows, in seconds."""
        return (self.pipe.transformer.config.sample_size * self.pipe.vae.hop_length
                / self.pipe.vae.config.sampling_rate)

    def _discover_layers(self):
        return find_modules(self.pipe.transformer, [r"^transformer_blocks\.\d+\.attn2$"])

    def token_count(self, prompt: str) -> int:
        return len(self.pipe.tokenizer(prompt, truncation=True).input_ids)

    def token_positions(self, prompt: str, word: str) -> list[list[int]]:
        """Positions of `word` among the T5 states (the first tokens of every layer's states)."""
        return word_positions(self.pipe.tokenizer, prompt, word)

    @torch.inference_mode()
    def encode_prompts(self, prompts: Sequence[str], negative: bool = False,
                       text_length: int | None = None, duration: float | None = None) -> torch.Tensor:
        """The states every ``attn2`` layer reads, (B, tokens + 2, width): the conditional ones
        of `prompts`, or with ``negative=True`` the pipeline's unconditional ones (zeros in, as
        when no negative prompt is given). `text_length` is ignored (see the module doc)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        pipe = self.pipe
        duration = self.default_duration if duration is None else float(duration)
        text = pipe.encode_prompt(prompts, self.device, False)
        start, end = pipe.encode_duration(0.0, duration, self.device, False, len(prompts))
        states = torch.cat([text, start, end], dim=1)
        if negative:
            states = torch.zeros_like(states)
        return pipe.transformer.cross_attention_proj(states.to(self.dtype))

    def _call_pipeline(self, prompts, seeds, *, steps, guidance, duration, negative_prompts, text_length):
        cfg = self.pipe.transformer.config
        latents = seeded_noise(seeds, (cfg.in_channels, cfg.sample_size), self.device, self.dtype)
        out = self.pipe(prompt=prompts, negative_prompt=negative_prompts, num_inference_steps=steps,
                        guidance_scale=guidance, audio_start_in_s=0.0, audio_end_in_s=duration,
                        latents=latents, generator=generators(seeds), output_type="pt")
        return out.audios, {}
