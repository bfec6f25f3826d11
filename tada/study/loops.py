r"""Seamless loops for the rating page, written as browser-friendly compressed audio.

A clip x of N samples played in a loop jumps from x[N−1] back to x[0]: an audible click. The
loop is made seamless by crossfading its tail into its head over F samples (equal power, since
the head and the tail of a generated clip are about uncorrelated):

    θ_i  = (π/2) · (i + ½) / F                          i = 0 … F−1
    y[i] = sin θ_i · x[i] + cos θ_i · x[N−F+i]            (the crossfaded head)
    y[i] = x[i]                                           i = F … N−F−1
    loop length L = N − F

so y[L−1] = x[N−F−1] is followed, when the loop wraps, by y[0] ≈ x[N−F]: the waveform
continues where the tail was cut, and reaches the untouched x[F] at the end of the fade
(sin² + cos² = 1 keeps the power of uncorrelated material constant through the fade). F is
capped at N/4. Every stop of one sample is processed alike, so the stops stay sample-aligned
and the page can crossfade between them at any playback position.

Formats: ``ogg`` (Ogg Vorbis: small, exact length through its granule positions, decoded by
Chromium and Firefox), ``flac`` (lossless, larger, decoded by every current browser) and
``wav``. The page also loops only over the first L samples (``loop_seconds`` in the plan), so
codec padding at the end never reaches the listener.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tada.io import atomic_path

#: format name -> (libsndfile container, subtype, file extension)
FORMATS = {"ogg": ("OGG", "VORBIS", ".ogg"), "flac": ("FLAC", "PCM_16", ".flac"), "wav": ("WAV", "PCM_16", ".wav")}


def fade_length(n_samples: int, crossfade_s: float, sample_rate: int) -> int:
    """F: the crossfade in samples, at most a quarter of the clip (0 for clips under 4 samples)."""
    return int(max(0, min(round(float(crossfade_s) * int(sample_rate)), int(n_samples) // 4)))


def seamless_loop(audio: np.ndarray, fade: int) -> np.ndarray:
    """y (length N − F) from x (length N, mono): the tail crossfaded into the head (module doc)."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    n, f = x.size, int(fade)
    if f <= 0:
        return x.astype(np.float32)
    if f > n // 2:
        raise ValueError(f"a {f}-sample crossfade does not fit a {n}-sample clip")
    theta = 0.5 * np.pi * (np.arange(f) + 0.5) / f
    y = x[: n - f].copy()
    y[:f] = np.sin(theta) * x[:f] + np.cos(theta) * x[n - f:]
    return y.astype(np.float32)


def write_loop(path: str | Path, audio: np.ndarray, sample_rate: int, fmt: str = "ogg") -> Path:
    """Write one loop (already made seamless) in `fmt` atomically; returns the path."""
    import soundfile as sf

    if fmt not in FORMATS:
        raise ValueError(f"study.audio_format: unknown format '{fmt}'; choose one of {sorted(FORMATS)}")
    container, subtype, _ext = FORMATS[fmt]
    data = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, int(sample_rate), format=container, subtype=subtype)
    return Path(path)


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate) of an audio file."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(sr)
