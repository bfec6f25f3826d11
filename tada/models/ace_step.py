"""ACE-Step 1.5 through diffusers' `AceStepPipeline`.

Cross-attention layers are ``layers.N.cross_attn`` (`AceStepAttention`: grouped-query attention,
RMSNorm on queries and keys, no rotary embedding) of ``pipe.transformer``, an
`AceStepTransformer1DModel`. They read ``condition_embedder(c)`` where ``c`` is the condition
encoder's packed sequence: [lyric-encoder states, one timbre state, projected Qwen3 states of
the caption template], valid tokens first, padding last. The pipeline discards the packed mask,
so padding tokens are attended to: the padded length changes the output, which is why
``text_length`` pads the caption's text-encoder tokens to a fixed length (the caption is wrapped
in the pipeline's instruction/caption/metadata template first; :meth:`AceStep15Model.token_count`
counts the template's tokens). Lyrics are empty (instrumental) and no reference audio is given,
so the timbre state comes from the learned silence latent, as in the pipeline.

Classifier-free guidance: with ``guidance > 1`` on a base/SFT checkpoint the pipeline batches
``[cond, null]`` (conditional first; see the denoising loop of ``pipeline_ace_step.py``) where
``null`` is the learned ``null_condition_emb`` broadcast to the conditional sequence (no text),
and combines the two with APG (momentum buffer created per call). With the default CFG interval
[0, 1] every step runs both branches in one call, which is the step/branch convention of
:mod:`tada.models.interventions`. Turbo (guidance-distilled) checkpoints ignore guidance: one
``cond`` branch.

Text reaches the DiT only through cross-attention (the context latents are the silence latent
and a chunk mask; the timestep embedding carries no text), so patching every layer's keys and
values reproduces the other run.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ._diffusers import DiffusersModel, find_modules, generators
from .base import seeded_noise, word_positions


class AceStep15Model(DiffusersModel):
    """Steerable ACE-Step 1.5. Build with :meth:`from_config` or ``AceStep15Model(pipe)``."""

    backend = "ace_step15"
    denoiser_attr = "transformer"
    default_steps = 8
    default_guidance = 7.0
    default_duration = 30.0
    text_outside_cross_attention = False

    def _setup(self, duration_given: bool) -> None:
        self.sample_rate = int(self.pipe.sample_rate)

    @classmethod
    def pipeline_class(cls) -> type:
        from diffusers import AceStepPipeline

        return AceStepPipeline

    def _discover_layers(self):
        return find_modules(self.pipe.transformer, [r"^layers\.\d+\.cross_attn$"])

    def cfg_branches(self, guidance: float) -> tuple[str, ...]:
        return ("cond", "uncond") if guidance > 1.0 and not self.pipe.is_turbo else ("cond",)

    # ----- text ---------------------------------------------------------------------------
    def _template(self, prompt: str, duration: float) -> str:
        text, _ = self.pipe._format_prompt(prompt=prompt, lyrics="", vocal_language="en",
                                           audio_duration=duration,
                                           instruction=self.pipe._get_task_instruction("text2music"))
        return text

    def token_count(self, prompt: str, duration: float | None = None) -> int:
        """Text-encoder tokens of the caption template around `prompt`."""
        duration = self.default_duration if duration is None else float(duration)
        return len(self.pipe.tokenizer(self._template(prompt, duration)).input_ids)

    def _padded_encoder(self, text_length: int):
        """A replacement for ``pipe.encode_prompt`` that pads the caption tokens to `text_length`."""
        pipe = self.pipe
        original = type(pipe).encode_prompt.__get__(pipe)

        def encode_prompt(prompt, lyrics, device, vocal_language="en", audio_duration=60.0,
                          instruction=None, bpm=None, keyscale=None, timesignature=None,
                          max_text_length=256, max_lyric_length=2048):
            text, text_mask, lyric, lyric_mask = original(
                prompt, lyrics, device, vocal_language=vocal_language, audio_duration=audio_duration,
                instruction=instruction, bpm=bpm, keyscale=keyscale, timesignature=timesignature,
                max_text_length=max_text_length, max_lyric_length=max_lyric_length)
            if text.shape[1] > text_length:
                raise ValueError(f"a prompt has {text.shape[1]} caption tokens, more than "
                                 f"text_length={text_length}")
            if text.shape[1] == text_length:
                return text, text_mask, lyric, lyric_mask
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            languages = [vocal_language] * len(prompts) if isinstance(vocal_language, str) else vocal_language
            lyrics = [lyrics] * len(prompts) if isinstance(lyrics, str) else lyrics
            texts = [pipe._format_prompt(p, l, v, audio_duration, instruction, bpm, keyscale, timesignature)[0]
                     for p, l, v in zip(prompts, lyrics, languages)]
            tokens = pipe.tokenizer(texts, padding="max_length", max_length=text_length, truncation=True,
                                    return_tensors="pt")
            text = pipe.text_encoder(input_ids=tokens.input_ids.to(device)).last_hidden_state
            return text, tokens.attention_mask.to(device).bool(), lyric, lyric_mask

        return encode_prompt

    def token_positions(self, prompt: str, word: str) -> list[list[int]]:
        """Positions of `word` of the caption (not of the template around it) in the packed
        condition: the valid lyric and timbre states come first, then the caption template's
        tokens in order."""
        template = self._template(prompt, self.default_duration)
        start = template.find(prompt)
        tok = self.pipe.tokenizer(template, return_offsets_mapping=True)
        inside = {i for i, (a, b) in enumerate(tok["offset_mapping"])
                  if start >= 0 and start <= a < b <= start + len(prompt)}
        spans = [s for s in word_positions(self.pipe.tokenizer, template, word) if set(s) <= inside]
        with torch.inference_mode():
            _, packed, text_mask = self._condition([prompt], None, None)
        offset = int(packed[0].sum()) - int(text_mask[0].sum())
        return [[offset + i for i in s] for s in spans]

    def _condition(self, prompts: list[str], text_length: int | None, duration: float | None):
        """(packed condition states, packed mask, caption mask) of `prompts`."""
        pipe, device = self.pipe, self.device
        duration = self.default_duration if duration is None else float(duration)
        encode = self._padded_encoder(int(text_length)) if text_length is not None else pipe.encode_prompt
        text, text_mask, lyric, lyric_mask = encode(
            prompts, [""] * len(prompts), device, audio_duration=duration,
            instruction=pipe._get_task_instruction("text2music"))
        dtype = pipe.transformer.dtype
        frames = math.ceil(30 * pipe.latents_per_second)
        timbre = (pipe.condition_encoder.silence_latent[:, :frames, :].to(device=device, dtype=dtype)
                  .expand(len(prompts), -1, -1).contiguous())
        states, mask = pipe.condition_encoder(
            text_hidden_states=text, text_attention_mask=text_mask, lyric_hidden_states=lyric,
            lyric_attention_mask=lyric_mask, refer_audio_acoustic_hidden_states_packed=timbre,
            refer_audio_order_mask=torch.arange(len(prompts), device=device, dtype=torch.long))
        return states, mask, text_mask

    @torch.inference_mode()
    def encode_prompts(self, prompts: Sequence[str], negative: bool = False,
                       text_length: int | None = None, duration: float | None = None) -> torch.Tensor:
        """The states every ``cross_attn`` layer reads, (B, tokens, width): the packed
        condition of `prompts` after ``condition_embedder``, or with ``negative=True`` the
        pipeline's null condition of the same shape."""
        pipe, device = self.pipe, self.device
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        states, _, _ = self._condition(prompts, text_length, duration)
        if negative:
            states = pipe.condition_encoder.null_condition_emb.to(device=device, dtype=states.dtype
                                                                  ).expand_as(states)
        return pipe.transformer.condition_embedder(states)

    # ----- generation ---------------------------------------------------------------------
    def _call_pipeline(self, prompts, seeds, *, steps, guidance, duration, negative_prompts, text_length):
        if negative_prompts is not None:
            raise ValueError("ACE-Step 1.5 has no negative prompts: its unconditional branch is a learned "
                             "null condition")
        pipe = self.pipe
        frames = math.ceil(duration * pipe.latents_per_second)
        latents = seeded_noise(seeds, (frames, pipe.transformer.config.audio_acoustic_hidden_dim),
                               self.device, pipe.transformer.dtype)
        if text_length is not None:
            pipe.encode_prompt = self._padded_encoder(int(text_length))
        try:
            out = pipe(prompt=list(prompts), lyrics=[""] * len(prompts), audio_duration=duration,
                       num_inference_steps=steps, guidance_scale=guidance, latents=latents,
                       generator=generators(seeds), output_type="pt")
        finally:
            pipe.__dict__.pop("encode_prompt", None)
        return out.audios, {}
