"""Helpers for tests, benchmarks and docs: tiny randomly initialised pipelines built offline."""

from .tiny import (CAPTIONS, TINY_GENERATION, build_tiny_ace_step15, build_tiny_audioldm2, build_tiny_stable_audio,
                   count_stable_audio_tokens, generate_stable_audio, load_stable_audio, tiny_bpe_vocab,
                   tiny_unigram_vocab)

__all__ = [
    "CAPTIONS", "TINY_GENERATION", "build_tiny_ace_step15", "build_tiny_audioldm2", "build_tiny_stable_audio",
    "count_stable_audio_tokens", "generate_stable_audio", "load_stable_audio", "tiny_bpe_vocab",
    "tiny_unigram_vocab",
]
