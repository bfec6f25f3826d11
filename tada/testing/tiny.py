"""Tiny, randomly initialised diffusers pipelines, built offline and saved with ``save_pretrained``.

They have the real pipeline classes and component classes of Stable Audio Open, AudioLDM2 and
ACE-Step 1.5, only with a few small layers, so every backend can be exercised end to end on a CPU
in well under a second per generation. Tokenizers are trained on :data:`CAPTIONS` with the
``tokenizers`` library (no download, no sentencepiece). Weights come from a fixed torch seed, so
two builds are identical.

Each builder writes a pipeline directory (``model_index.json`` plus one folder per component)
and returns its path; load it with the pipeline's ``from_pretrained(path, local_files_only=True)``
or through a backend's ``from_config({"path": path, ...})``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

#: captions the tiny tokenizers are trained on (the prompt vocabulary of the tests)
CAPTIONS: tuple[str, ...] = (
    "a song", "a melody", "a pop song", "ambient music", "a love song", "calm music",
    "a song, with piano", "a melody, with violin", "a pop song, with acoustic guitar",
    "a pop song, with electric guitar", "happy song, a melody", "sad song, a melody",
    "fast song, calm music", "slow song, calm music", "a song, with female vocal",
    "a song, with male vocal", "a song, with rap vocal", "a song, with sing vocal",
    "classical song, a song", "electronic song, a song", "jazz song, a love song",
    "rock song, a love song", "a piano song", "a song with violin", "a cheerful track",
    "a fast track", "a classical song", "a jazz song", "This is a music of a female vocal singing",
    "This is music with rap vocal", "Melancholic jazz ballad with smooth saxophone, walking bassline",
    "upbeat electronic dance track with synth bass and drums", "slow reggae with warm bass",
    "a trumpet solo over strings", "flute and maracas in a tropical beach band",
    "lively drums and percussion, energetic and groovy", "a sorrowful opera choir",
    "heavy metal concert with distorted guitars", "a dejected, lonely ballad",
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n# Caption\n",
    "# Metas\n- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n",
    "# Languages\nen\n\n# Lyric\n[verse] soft notes in the morning light",
    "0 1 2 3 4 5 6 7 8 9 seconds",
)


#: generation settings under which each tiny pipeline runs in well under a second on a CPU
TINY_GENERATION: dict[str, dict[str, float]] = {
    "stable_audio": {"steps": 4, "guidance": 3.0, "duration": 1.0},
    "audioldm2": {"steps": 3, "guidance": 3.0, "duration": 0.032},
    "ace_step15": {"steps": 4, "guidance": 3.0, "duration": 1.0},
}


# --------------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------------
def tiny_unigram_vocab(vocab_size: int = 160, special: tuple[str, ...] = ("<pad>", "</s>", "<unk>")
                       ) -> list[tuple[str, float]]:
    """(piece, score) pairs of a Unigram model trained on :data:`CAPTIONS` (special tokens first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(special),
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(list(CAPTIONS), trainer=trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    return [(str(piece), float(score)) for piece, score in vocab]


def tiny_bpe_vocab(vocab_size: int = 400, special: tuple[str, ...] = ()
                   ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a byte-level BPE trained on :data:`CAPTIONS` (special tokens first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(CAPTIONS), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _t5_tokenizer(max_length: int):
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=tiny_unigram_vocab(), extra_ids=0, model_max_length=max_length)


def _prepare(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# Stable Audio Open
# --------------------------------------------------------------------------------------------
def build_tiny_stable_audio(directory: str | os.PathLike, *, width: int = 32, layers: int = 3,
                            heads: int = 4, kv_heads: int = 2, latent_length: int = 32,
                            sampling_rate: int = 128, max_tokens: int = 24, seed: int = 0) -> str:
    """A `StableAudioPipeline` with a `StableAudioDiTModel` of `layers` blocks of `width`.

    Audio is stereo at `sampling_rate` Hz; the VAE hop is 8 samples, so the longest clip is
    ``latent_length * 8 / sampling_rate`` seconds (2 s by default). Prompts are padded to
    `max_tokens` T5 tokens.
    """
    from diffusers import (AutoencoderOobleck, EDMDPMSolverMultistepScheduler, StableAudioDiTModel,
                           StableAudioPipeline, StableAudioProjectionModel)
    from transformers import T5Config, T5EncoderModel

    path = _prepare(directory)
    head_dim = width // heads
    cond_dim = 16
    torch.manual_seed(seed)
    tokenizer = _t5_tokenizer(max_tokens)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8,
                                           num_heads=2, num_layers=1, relative_attention_num_buckets=8))
    projection = StableAudioProjectionModel(text_encoder_dim=16, conditioning_dim=cond_dim,
                                            min_value=0, max_value=512)
    transformer = StableAudioDiTModel(
        sample_size=latent_length, in_channels=4, num_layers=layers, attention_head_dim=head_dim,
        num_attention_heads=heads, num_key_value_attention_heads=kv_heads, out_channels=4,
        cross_attention_dim=width, time_proj_dim=16, global_states_input_dim=2 * cond_dim,
        cross_attention_input_dim=cond_dim)
    vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[2, 4], decoder_channels=4,
                             decoder_input_channels=4, audio_channels=2, channel_multiples=[2, 4],
                             sampling_rate=sampling_rate)
    scheduler = EDMDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500.0, sigma_data=1.0,
                                               prediction_type="v_prediction", solver_order=2)
    pipe = StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection,
                               tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------------------------
# AudioLDM2
# --------------------------------------------------------------------------------------------
def build_tiny_audioldm2(directory: str | os.PathLike, *, seed: int = 0, max_tokens: int = 24) -> str:
    """An `AudioLDM2Pipeline`: CLAP text branch, T5 encoder, GPT-2 "language model" (8 generated
    states), and a UNet whose cross-attention transformer blocks are [self, GPT-2 stream, T5
    stream] as in the real model (so one `attn2` in three is self-attention)."""
    from diffusers import (AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel,
                           AutoencoderKL, DDIMScheduler)
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig,
                              GPT2Config, GPT2LMHeadModel, RobertaTokenizer, SpeechT5HifiGan,
                              SpeechT5HifiGanConfig, T5Config, T5EncoderModel)

    path = _prepare(directory)
    torch.manual_seed(seed)
    vocab, merges = tiny_bpe_vocab(special=("<s>", "<pad>", "</s>", "<unk>", "<mask>"))
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=max_tokens)
    tokenizer_2 = _t5_tokenizer(max_tokens)

    text_config = ClapTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=16,
                                 intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                                 vocab_size=len(tokenizer), projection_dim=16,
                                 max_position_embeddings=max_tokens + 4)
    audio_config = ClapAudioConfig(spec_size=16, window_size=4, num_mel_bins=16, intermediate_size=16,
                                   depths=[1, 1], num_attention_heads=[2, 2], num_hidden_layers=2,
                                   hidden_size=32, projection_dim=16, patch_size=2, patch_stride=2,
                                   patch_embed_input_channels=4)
    text_encoder = ClapModel(ClapConfig(text_config=text_config.to_dict(),
                                        audio_config=audio_config.to_dict(), projection_dim=16))
    feature_extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_ff=32, d_kv=8,
                                             num_heads=2, num_layers=1, relative_attention_num_buckets=8))
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=64, bos_token_id=0, eos_token_id=0,
                                                n_positions=2 * max_tokens + 32)).transformer
    language_model.config.max_new_tokens = 8
    projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
        cross_attention_dim=([None, 16, 32], [None, 16, 32]), attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=8,
                        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=16000, upsample_initial_channel=8, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = AudioLDM2Pipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                             projection_model=projection, language_model=language_model,
                             tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                             feature_extractor=feature_extractor, unet=unet, scheduler=scheduler,
                             vocoder=vocoder)
    pipe.save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------------------------
# ACE-Step 1.5
# --------------------------------------------------------------------------------------------
def build_tiny_ace_step15(directory: str | os.PathLike, *, seed: int = 0, layers: int = 3,
                          width: int = 32, sampling_rate: int = 200) -> str:
    """An `AceStepPipeline` (base model, CFG with APG): tiny Qwen3 text encoder with a BPE
    tokenizer, condition encoder (lyrics + timbre), DiT of `layers` blocks and an Oobleck VAE
    whose latent rate is 25 frames/s as in the real model (audio at `sampling_rate` Hz)."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3Model

    path = _prepare(directory)
    torch.manual_seed(seed)
    vocab, merges = tiny_bpe_vocab(special=("<|endoftext|>",))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=4096)
    text_encoder = Qwen3Model(Qwen3Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                          vocab_size=len(tokenizer), max_position_embeddings=512))
    heads = 4
    common = dict(num_attention_heads=heads, num_key_value_heads=2, head_dim=width // heads,
                  rope_theta=10000.0, sliding_window=16)
    condition_encoder = AceStepConditionEncoder(
        hidden_size=width, intermediate_size=2 * width, text_hidden_dim=16, timbre_hidden_dim=8,
        num_lyric_encoder_hidden_layers=1, num_timbre_encoder_hidden_layers=1, **common)
    transformer = AceStepTransformer1DModel(
        hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, in_channels=24,
        audio_acoustic_hidden_dim=8, patch_size=2, **common)
    vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[2, 4], decoder_channels=4,
                             decoder_input_channels=8, audio_channels=2, channel_multiples=[2, 4],
                             sampling_rate=sampling_rate)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    pipe = AceStepPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                           transformer=transformer, condition_encoder=condition_encoder,
                           scheduler=scheduler)
    pipe.save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------------------------
# functions for the generic backend (they drive a Stable Audio pipeline by hand)
# --------------------------------------------------------------------------------------------
def load_stable_audio(path: str, device: torch.device, dtype: torch.dtype):
    """Generic-backend loader: a local `StableAudioPipeline` on `device` in `dtype`."""
    from diffusers import StableAudioPipeline

    pipe = StableAudioPipeline.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_stable_audio(pipe, prompts, seeds, *, steps, guidance, duration, negative_prompts=None,
                          text_length=None):
    """Generic-backend generate_fn: per-seed latents, the pipeline's loop, batches [uncond, cond]."""
    from tada.models.base import seeded_noise

    cfg = pipe.transformer.config
    latents = seeded_noise(seeds, (cfg.in_channels, cfg.sample_size), pipe.device, pipe.transformer.dtype)
    out = pipe(prompt=list(prompts), negative_prompt=negative_prompts, num_inference_steps=steps,
               guidance_scale=guidance, audio_end_in_s=duration, latents=latents,
               generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds], output_type="np")
    return out.audios, int(pipe.vae.config.sampling_rate)


def count_stable_audio_tokens(pipe, prompt: str) -> int:
    """Generic-backend token_count_fn: T5 tokens of `prompt`."""
    return len(pipe.tokenizer(prompt).input_ids)
