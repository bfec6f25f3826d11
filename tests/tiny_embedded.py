"""A tiny randomly initialised embedded model and simple scorers for localization/cache tests."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from tada.embedded.model import EmbeddedConfig, EmbeddedTransformer
from tada.models.embedded import EmbeddedModel
from tada.scorers.base import Scorer


class WordEncoder:
    """Text encoder stand-in: one fixed random vector per lowercase word, [CLS]/[SEP]/[PAD] too."""

    def __init__(self, dim: int):
        self.dim = dim
        self._cache: dict[str, torch.Tensor] = {}

    @staticmethod
    def words(prompt: str) -> list[str]:
        return prompt.lower().replace(",", " ").split()

    def token_count(self, prompt: str) -> int:
        return len(self.words(prompt)) + 2

    def _vec(self, word: str) -> torch.Tensor:
        if word not in self._cache:
            g = torch.Generator().manual_seed(zlib.crc32(word.encode()))
            self._cache[word] = torch.randn(self.dim, generator=g)
        return self._cache[word]

    def encode(self, prompts, length: int) -> torch.Tensor:
        out = torch.zeros(len(prompts), length, self.dim)
        for i, p in enumerate(prompts):
            toks = (["[CLS]"] + self.words(p) + ["[SEP]"])[:length]
            toks += ["[PAD]"] * (length - len(toks))
            for j, t in enumerate(toks):
                out[i, j] = self._vec(t)
        return out


def tiny_model(batch_size: int = 4, depth: int = 3, steps: int = 4) -> EmbeddedModel:
    # tiny tensors: a second thread only adds synchronisation (60x slower on a busy machine)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = EmbeddedConfig(n_mels=8, width=16, depth=depth, heads=2, ff_mult=2.0, conv_kernel=5, text_dim=12,
                         text_length=8, duration=0.5, frames_per_second=16.0, frames_per_token=1)
    net = EmbeddedTransformer(cfg)
    for block in net.blocks:  # zero-initialised in training; give the blocks some effect
        torch.nn.init.normal_(block.ada.weight, std=0.2)
    torch.nn.init.normal_(net.ada_out.weight, std=0.2)
    torch.nn.init.normal_(net.smooth_out.weight, std=0.1)
    return EmbeddedModel(net, WordEncoder(cfg.text_dim), batch_size=batch_size, steps=steps, guidance=3.0)


class MeanScorer(Scorer):
    """s(x) = mean of the clip's log-mel features (ignores the text)."""

    kind = "test-mean"

    def _similarity(self, clips, texts):
        f = np.asarray(clips.features, dtype=np.float64)
        return np.repeat(f.reshape(len(f), -1).mean(axis=1)[:, None], len(texts), axis=1)


class ReferenceScorer(Scorer):
    """s(x) = -||features(x) - reference||: highest for clips equal to the reference clip."""

    kind = "test-reference"

    def __init__(self, reference: np.ndarray):
        self.reference = np.asarray(reference, dtype=np.float64)

    def _similarity(self, clips, texts):
        f = np.asarray(clips.features, dtype=np.float64)
        d = np.sqrt(((f - self.reference[None]) ** 2).reshape(len(f), -1).sum(axis=1))
        return np.repeat(-d[:, None], len(texts), axis=1)


class ConstantScorer(Scorer):
    kind = "test-constant"

    def _similarity(self, clips, texts):
        return np.zeros((len(clips), len(texts)))
