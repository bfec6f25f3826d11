"""Audio effects of the world's mix, applied to FluidSynth's stems by
:class:`tada.world.render.Renderer`: vowel formants on the voice (:func:`voice_filter`),
unvoiced consonant bursts for rap (:func:`add_consonants`) and the mood's spectral tilt
(:func:`tilt`).
"""

from __future__ import annotations

import numpy as np

# vowel formants (Hz, adult male); a voice scales them by its
# ``Score.formant_scale`` (FORMANT_SCALE in tada.world.compose)
VOWELS = (
    (730, 1090, 2440),  # a
    (530, 1840, 2480),  # e
    (270, 2290, 3010),  # i
    (570, 840, 2410),   # o
    (300, 870, 2240),   # u
)
FORMANT_GAINS = (1.0, 0.6, 0.35)
FORMANT_BW = (90.0, 130.0, 180.0)

TILT_LOWPASS_HZ = 1800.0
TILT_HIGHPASS_HZ = 2500.0


def tilt(audio: np.ndarray, kind: str, sr: int) -> np.ndarray:
    """Spectral tilt of the mix: "dark" keeps 35 % dry over a one-pole low-pass at 1.8 kHz,
    "bright" adds half of a one-pole high-pass at 2.5 kHz; anything else leaves it alone."""
    from scipy.signal import lfilter

    x = np.asarray(audio, dtype=np.float32)
    if kind == "dark":
        a = float(np.exp(-2.0 * np.pi * TILT_LOWPASS_HZ / sr))
        low = lfilter([1.0 - a], [1.0, -a], x)
        return (0.35 * x + 0.65 * low).astype(np.float32)
    if kind == "bright":
        a = float(np.exp(-2.0 * np.pi * TILT_HIGHPASS_HZ / sr))
        low = lfilter([1.0 - a], [1.0, -a], x)
        return (x + 0.5 * (x - low)).astype(np.float32)
    return x


CONSONANT_HIGHPASS_HZ = 3000.0


def add_consonants(voice: np.ndarray, bursts: list[tuple[float, float, float, int]],
                   sr: int) -> np.ndarray:
    """Add unvoiced consonants: high-passed (3 kHz) white-noise bursts with a fast exponential
    decay, at ``level`` times three times the voice's RMS, one per ``(time, length, level,
    seed)``."""
    from scipy.signal import lfilter

    x = np.asarray(voice, dtype=np.float32)
    if not bursts:
        return x
    out = x.copy()
    ref = 3.0 * float(np.sqrt(np.mean(x * x))) if np.any(x) else 0.05
    a = float(np.exp(-2.0 * np.pi * CONSONANT_HIGHPASS_HZ / sr))
    for t, length, level, seed in bursts:
        i0 = int(round(t * sr))
        n = int(round(length * sr))
        if i0 >= len(out) or n <= 0:
            continue
        n = min(n, len(out) - i0)
        noise = np.random.default_rng(seed).standard_normal(n)
        high = noise - lfilter([1.0 - a], [1.0, -a], noise)
        env = np.exp(-np.arange(n) / (0.3 * n))
        out[i0:i0 + n] += (ref * level * high * env).astype(np.float32)
    return out


def voice_filter(audio: np.ndarray, vowels: list[tuple[float, float, int]], scale: float,
                 sr: int, n_fft: int = 512, hop: int = 256) -> np.ndarray:
    """Shape a voice stem with vowel formants, syllable by syllable.

    A short-time Fourier transform of the stem is multiplied by a spectral envelope made of
    three Gaussian formant peaks (:data:`VOWELS` times `scale`, gains :data:`FORMANT_GAINS`)
    over a floor, with the partials below the first formant mostly kept, with each frame taking the vowel of the syllable it falls in (smoothed over
    about 25 ms); the stem's RMS is kept.
    """
    x = np.asarray(audio, dtype=np.float32)
    if not vowels or not np.any(x):
        return x
    if n_fft % hop:
        raise ValueError("hop must divide n_fft")
    n = len(x)
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    pad = np.concatenate([np.zeros(n_fft // 2, np.float32), x, np.zeros(n_fft, np.float32)])
    n_frames = 1 + (len(pad) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.fft.rfft(pad[idx] * win, axis=1).astype(np.complex64)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    envs = np.empty((len(VOWELS), len(freqs)), dtype=np.float32)
    for k, formants in enumerate(VOWELS):
        # the low partials below the first formant keep most of their level (the fundamental
        # of a voice stays strong), the rest is shaped by the formant peaks over a floor
        below = 1.0 / (1.0 + np.exp((freqs - 0.85 * formants[0] * scale) / 40.0))
        e = 0.08 + 0.6 * below
        for f, g, bw in zip(formants, FORMANT_GAINS, FORMANT_BW):
            e += g * np.exp(-0.5 * ((freqs - f * scale) / (bw * scale)) ** 2)
        envs[k] = e
    t = (np.arange(n_frames) * hop) / sr
    weights = np.zeros((n_frames, len(VOWELS)), dtype=np.float32)
    weights[:, vowels[0][2]] = 1.0
    for start, end, vowel in vowels:
        weights[t >= start - 0.01] = 0.0
        weights[t >= start - 0.01, vowel] = 1.0
    k = 3
    kernel = np.ones(k, dtype=np.float32) / k
    weights = np.stack([np.convolve(weights[:, j], kernel, mode="same") for j in range(len(VOWELS))], 1)
    spec *= weights @ envs
    frames = np.fft.irfft(spec, n=n_fft, axis=1).astype(np.float32) * win
    r = n_fft // hop
    out = np.zeros((n_frames + r, hop), dtype=np.float32)
    norm = np.zeros((n_frames + r, hop), dtype=np.float32)
    w2 = (win * win).reshape(r, hop)
    for j in range(r):
        out[j:j + n_frames] += frames[:, j * hop:(j + 1) * hop]
        norm[j:j + n_frames] += w2[j]
    out, norm = out.ravel(), norm.ravel()
    out = out[n_fft // 2: n_fft // 2 + n] / np.maximum(norm[n_fft // 2: n_fft // 2 + n], 1e-3)
    rms_in = float(np.sqrt(np.mean(x * x)))
    rms_out = float(np.sqrt(np.mean(out * out)))
    if rms_out > 0:
        out *= np.float32(rms_in / rms_out)
    return out.astype(np.float32)
