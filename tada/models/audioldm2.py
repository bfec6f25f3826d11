"""AudioLDM2 through diffusers' `AudioLDM2Pipeline`.

The UNet's cross-attention transformer blocks come in groups of three per resolution step:
``[None, d_gpt2, d_t5]``. The first is "double self-attention" (its ``attn2`` attends to the
latent itself, ``is_cross_attention=False``) and is not a layer here; the second reads the
GPT-2 stream (``encoder_hidden_states``: the 8 states the GPT-2 "language model" generates from
the projected CLAP + T5 encodings) and the third the T5 stream (``encoder_hidden_states_1``,
masked by the T5 attention mask). :attr:`AudioLDM2Model.layer_streams` tells which stream each
layer reads. Layers are numbered in execution order (down blocks, mid block, up blocks), which
differs from the UNet's module registration order (it registers ``up_blocks`` before
``mid_block``).

Text reaches the pipeline along two paths (CLAP → GPT-2 and T5), but both end in the UNet's
cross-attention: the UNet has no class/pooled text conditioning in this pipeline. So patching
the keys/values of every cross-attention layer with another run's reproduces that run.

Prompt encoding is done here with the pipeline's components in the pipeline's way (CLAP pooled
text features; T5; projection; ``generate_language_model``) and the result is passed to the
pipeline as ``prompt_embeds``/``generated_prompt_embeds``/``attention_mask``; this is what lets
``text_length`` pad the T5 tokens to a fixed length. Note that GPT-2 reads the padded T5 sequence
with absolute positions, so the generated stream of a prompt depends (slightly) on how far it is
padded, exactly as in the pipeline, where T5 prompts are padded to the longest of the batch.

Compatibility fix: with transformers 5, `GPT2Model` (what AudioLDM2 checkpoints name as their
``language_model``) lacks the generation helpers the pipeline calls; it is wrapped in a
`GPT2LMHeadModel` sharing its weights (only hidden states are used).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from ._diffusers import DiffusersModel, generators, output_width
from .base import seeded_noise, word_positions


def ensure_generation_capable(pipe: Any) -> None:
    """Give the pipeline a language model with the generation helpers it calls."""
    lm = pipe.language_model
    if hasattr(lm, "_update_model_kwargs_for_generation"):
        return
    from transformers import GPT2LMHeadModel, GPT2Model

    if not isinstance(lm, GPT2Model):
        raise TypeError(f"AudioLDM2: language model {type(lm).__name__} cannot generate; expected GPT-2")
    head = GPT2LMHeadModel(lm.config)
    head.transformer = lm
    head.lm_head.weight = lm.wte.weight
    pipe.language_model = head.to(device=lm.device, dtype=lm.dtype).eval()


class AudioLDM2Model(DiffusersModel):
    """Steerable AudioLDM2. Build with :meth:`from_config` or ``AudioLDM2Model(pipe)``."""

    backend = "audioldm2"
    denoiser_attr = "unet"
    default_steps = 200
    default_guidance = 3.5
    default_duration = 10.24
    text_outside_cross_attention = False

    def _setup(self, duration_given: bool) -> None:
        from transformers import VitsModel

        if isinstance(self.pipe.text_encoder_2, VitsModel):
            raise ValueError("AudioLDM2 text-to-speech checkpoints (VITS text encoder) are not supported")
        ensure_generation_capable(self.pipe)
        self.sample_rate = int(self.pipe.vocoder.config.sampling_rate)
        self._streams: list[str] | None = None

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import AudioLDM2Pipeline

        return AudioLDM2Pipeline

    # ----- layers -------------------------------------------------------------------------
    def _discover_layers(self):
        unet = self.pipe.unet
        blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
        blocks.append(("mid_block", unet.mid_block))
        blocks += [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
        found, streams = [], []
        for prefix, block in blocks:
            attentions = getattr(block, "attentions", None)
            if block is None or attentions is None:
                continue
            dims = list(block.cross_attention_dim)
            for k, transformer in enumerate(attentions):
                stream = "generated" if k % len(dims) <= 1 else "t5"
                for name, module in transformer.named_modules():
                    if name.endswith("attn2") and getattr(module, "is_cross_attention", False):
                        found.append((f"{prefix}.attentions.{k}.{name}", module, output_width(module)))
                        streams.append(stream)
        self._streams = streams
        return found

    @property
    def layer_streams(self) -> list[str]:
        """For each layer, the encoder stream it reads: "generated" (GPT-2) or "t5"."""
        if self._streams is None:
            _ = self.layers
        return list(self._streams or [])

    # ----- text ---------------------------------------------------------------------------
    def token_count(self, prompt: str) -> int:
        """T5 tokens of `prompt` (the stream whose length varies with the prompt)."""
        return len(self.pipe.tokenizer_2(prompt, truncation=True).input_ids)

    def token_positions(self, prompt: str, word: str) -> list[list[int]]:
        """Positions of `word` in the T5 stream (the GPT-2 stream has no token positions)."""
        return word_positions(self.pipe.tokenizer_2, prompt, word)

    def _t5_length(self, texts: Sequence[str], text_length: int | None) -> int:
        need = max(self.token_count(t) for t in texts)
        if text_length is None:
            return need
        if need > int(text_length):
            raise ValueError(f"a prompt has {need} T5 tokens, more than text_length={text_length}")
        return int(text_length)

    def _encode(self, texts: Sequence[str], t5_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(T5 states, T5 mask, GPT-2 generated states) as the pipeline computes them, with the
        T5 tokens padded to `t5_length`."""
        pipe, device = self.pipe, self.device
        texts = list(texts)
        clap_in = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").to(device)
        clap = pipe.text_encoder.get_text_features(clap_in.input_ids, attention_mask=clap_in.attention_mask)
        clap = getattr(clap, "pooler_output", clap)[:, None, :]
        clap_mask = clap_in.attention_mask.new_ones((len(texts), 1))
        t5_in = pipe.tokenizer_2(texts, padding="max_length", max_length=t5_length, truncation=True,
                                 return_tensors="pt").to(device)
        t5 = pipe.text_encoder_2(t5_in.input_ids, attention_mask=t5_in.attention_mask)[0]
        projected = pipe.projection_model(hidden_states=clap, hidden_states_1=t5, attention_mask=clap_mask,
                                          attention_mask_1=t5_in.attention_mask)
        generated = pipe.generate_language_model(projected.hidden_states,
                                                 attention_mask=projected.attention_mask,
                                                 max_new_tokens=pipe.language_model.config.max_new_tokens)
        return (t5.to(pipe.text_encoder_2.dtype), t5_in.attention_mask,
                generated.to(pipe.language_model.dtype))

    @torch.inference_mode()
    def encode_prompts(self, prompts: Sequence[str], negative: bool = False,
                       text_length: int | None = None) -> dict[str, torch.Tensor]:
        """``{"generated": (B, 8, d_gpt2), "t5": (B, T, d_t5), "t5_mask": (B, T)}``: the two
        streams the cross-attention layers read (see :attr:`layer_streams`). With
        ``negative=True``, the unconditional ones (empty text) padded like `prompts`."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        length = self._t5_length(prompts, text_length)
        texts = [""] * len(prompts) if negative else prompts
        t5, mask, generated = self._encode(texts, length)
        return {"generated": generated, "t5": t5, "t5_mask": mask}

    def layer_states(self, encoded: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
        """The part of :meth:`encode_prompts`' result that `layer` reads."""
        return encoded[self.layer_streams[layer]]

    # ----- generation ---------------------------------------------------------------------
    def latent_shape(self, duration: float) -> tuple[int, int, int]:
        """Shape of one sample's initial latent for a clip of `duration` seconds (the
        pipeline's own rounding of the spectrogram height)."""
        pipe = self.pipe
        vsf = pipe.vae_scale_factor
        upsample = float(np.prod(pipe.vocoder.config.upsample_rates)) / pipe.vocoder.config.sampling_rate
        height = int(duration / upsample)
        if height % vsf:
            height = int(math.ceil(height / vsf)) * vsf
        return (pipe.unet.config.in_channels, height // vsf, int(pipe.vocoder.config.model_in_dim) // vsf)

    def _call_pipeline(self, prompts, seeds, *, steps, guidance, duration, negative_prompts, text_length):
        negatives = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
        length = self._t5_length(list(prompts) + (negatives if guidance > 1.0 else []), text_length)
        t5, mask, generated = self._encode(prompts, length)
        kwargs: dict[str, Any] = dict(prompt_embeds=t5, attention_mask=mask, generated_prompt_embeds=generated)
        if guidance > 1.0:
            n_t5, n_mask, n_generated = self._encode(negatives, length)
            kwargs.update(negative_prompt_embeds=n_t5, negative_attention_mask=n_mask,
                          negative_generated_prompt_embeds=n_generated)
        latents = seeded_noise(seeds, self.latent_shape(duration), self.device, self.dtype)
        out = self.pipe(num_inference_steps=steps, guidance_scale=guidance, audio_length_in_s=duration,
                        latents=latents, generator=generators(seeds), output_type="pt", **kwargs)
        return out.audios, {"t5_tokens": length}
