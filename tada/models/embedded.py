"""The ``embedded`` backend: the small text-to-music model trained in-project on the music world.

Its cross-attention layers are ``blocks.N.attn2`` (diffusers ``Attention`` modules with a
standard processor, reading frozen MiniLM per-token states); text reaches the network only
through them. Generation returns log-mel frames as ``Generation.features``; audio is
vocoded (Griffin-Lim, :func:`tada.world.features.mel_to_audio`) only when first asked for.
The unconditional CFG branch is the encoder states of the empty prompt "" padded to the same
token count, as during training (10 % caption dropout to "").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..embedded.model import TextEncoder, euler_sample, frames_for, load_network
from ..world.features import mel_to_audio
from .base import Generation, SteerableModel, seeded_noise, word_positions

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / "data" / "embedded_model"


class EmbeddedModel(SteerableModel):
    """Rectified-flow transformer over log-mels with MiniLM cross-attention (see docs/embedded.md)."""

    backend = "embedded"
    default_steps = 30
    default_guidance = 4.0
    default_duration = 4.0
    text_outside_cross_attention = False

    def __init__(self, network: torch.nn.Module, text_encoder: Any = None, *, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float32", batch_size: int = 8, steps: int | None = None,
                 guidance: float | None = None, duration: float | None = None, text_length: int | None = None,
                 path: str | Path | None = None):
        super().__init__(device=device, dtype=dtype, batch_size=batch_size)
        self.network = network.to(device=self.device, dtype=self.dtype).eval()
        self.config = network.config
        self.text_encoder = text_encoder if text_encoder is not None else TextEncoder(device=self.device)
        self.sample_rate = int(self.config.sample_rate)
        self.text_length = int(text_length or self.config.text_length)
        self.path = None if path is None else Path(path)
        self.set_defaults(steps, guidance, self.config.duration if duration is None else duration)
        self._uncond_cache: dict[int, torch.Tensor] = {}

    # ----- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "model") -> "EmbeddedModel":
        """Build from a ``models.<name>`` block checked by :func:`tada.config.check_block`
        (:func:`tada.models.load_model` does): path, device, dtype, batch_size, steps, guidance,
        duration and text_length; the keys and their defaults are the config schema's."""
        path = Path(cfg.get("path") or DEFAULT_PATH)
        if not path.is_absolute() and not path.exists() and (ROOT / path).exists():
            path = ROOT / path
        for name in ("model.safetensors", "config.json"):
            if not (path / name).exists():
                raise FileNotFoundError(
                    f"{key}.path: '{path}' has no {name}; train the embedded model "
                    "(python -m tada.embedded.train --out DIR) or point the path at data/embedded_model")
        opts = {k: v for k, v in cfg.items() if k not in ("backend", "path")}
        return cls.from_pretrained(path, **opts)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> "EmbeddedModel":
        network, _meta = load_network(path)
        return cls(network, path=path, **kwargs)

    # ----- protocol ---------------------------------------------------------------------------
    def _discover_layers(self) -> list[tuple[str, torch.nn.Module, int]]:
        return [(f"blocks.{i}.attn2", block.attn2, self.config.width)
                for i, block in enumerate(self.network.blocks)]

    def denoiser(self) -> torch.nn.Module:
        return self.network

    def token_count(self, prompt: str) -> int:
        return self.text_encoder.token_count(prompt)

    def token_positions(self, prompt: str, word: str) -> list[list[int]]:
        """Positions of `word` in the states of `prompt` (MiniLM tokens, [CLS] at 0); an encoder
        without a tokenizer may answer itself (``token_positions``)."""
        own = getattr(self.text_encoder, "token_positions", None)
        if own is not None:
            return own(prompt, word)
        return word_positions(self.text_encoder.tokenizer, prompt, word)

    def encode_prompts(self, prompts: Sequence[str], negative: bool = False,
                       text_length: int | None = None) -> torch.Tensor:
        """MiniLM per-token states (B, text_length, 384), padded/truncated to `text_length`
        (default: the model's ``text_length``, 48 for the shipped model; a warning names every
        prompt that is cut). With ``negative=True`` the prompts are negative prompts; an empty string
        is the unconditional input."""
        length = int(text_length or self.text_length)
        prompts = [str(p) for p in prompts]
        if all(p == "" for p in prompts):
            if length not in self._uncond_cache:
                self._uncond_cache[length] = self.text_encoder.encode([""], length)
            states = self._uncond_cache[length].expand(len(prompts), -1, -1)
        else:
            states = self.text_encoder.encode(prompts, length)
        return states.to(device=self.device, dtype=self.dtype)

    def frames_for(self, duration: float) -> int:
        return frames_for(duration, self.config.frames_per_second, self.config.frames_per_token)

    def _generate(self, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
                  duration: float, negative_prompts: list[str] | None, text_length: int | None,
                  progress: bool) -> Generation:
        cond = self.encode_prompts(prompts, text_length=text_length)
        negatives = negative_prompts if negative_prompts is not None else [""] * len(prompts)
        uncond = self.encode_prompts(negatives, negative=True, text_length=text_length)
        frames = self.frames_for(duration)
        noise = seeded_noise(seeds, (frames, self.config.n_mels), self.device, self.dtype)
        mels = euler_sample(self.network, cond, uncond, noise, steps, guidance, self.config.time_shift)
        n_keep = int(round(duration * self.config.frames_per_second))
        features = self.config.from_network(mels[:, :n_keep].float()).cpu().numpy()
        return Generation(None, self.sample_rate, prompts, seeds, features=features, decode=_vocode,
                          info={"frames_per_second": self.config.frames_per_second})

    def weight_files(self) -> list[Path]:
        """``model.safetensors`` of the directory the model was loaded from (if any)."""
        if self.path is None or not (self.path / "model.safetensors").is_file():
            return []
        return [self.path / "model.safetensors"]

    def weight_modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(path=None if self.path is None else str(self.path), config=self.config.to_dict())
        return out


def _vocode(features: np.ndarray) -> np.ndarray:
    """Griffin-Lim audio (B, 1, N) from log-mel frames (B, frames, n_mels)."""
    clips = [np.asarray(mel_to_audio(m), dtype=np.float32) for m in features]
    n = max(len(c) for c in clips)
    out = np.zeros((len(clips), 1, n), dtype=np.float32)
    for i, c in enumerate(clips):
        out[i, 0, :len(c)] = c
    return out
