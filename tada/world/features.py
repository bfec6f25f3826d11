"""Log-mel features of the music world (what the embedded model generates) and their inversion.

Settings and why:

* ``SR = 16000``: the world is synthesised at 16 kHz; 8 kHz of bandwidth keeps the brightness,
  maraca noise and rap breath noise while halving the cost of 44.1 kHz.
* ``N_FFT = 1024`` (64 ms window): 15.6 Hz bins, enough to separate a male (C2-C4) from a
  female (C4-C6) register in the low mel bands.
* ``HOP = 500``: exactly 32 frames per second, so a 4 s clip is 128 frames (a power of two for
  the model) and one frame is 31.25 ms, fine enough for sixteenth notes at 170 BPM (88 ms).
* ``N_MELS = 64``, ``FMIN = 30``, ``FMAX = 8000``: slaney mel bands from just below the lowest
  bass note (B0 is 31 Hz) to Nyquist.

Frames: ``n_frames = len(audio) // HOP`` (a centred STFT, last partial frame dropped), so
frame ``i`` is centred on sample ``i * HOP``.

Scale: mel power ``P`` (``|STFT|**2`` through the mel filters) is mapped to decibels
``D = 10 log10(max(P, 1e-10))`` and then linearly to ``x = 2 (D - DB_MIN) / (DB_MAX - DB_MIN) - 1``
clipped to ``[-1, 1]``, with the fixed ``DB_MIN = -60``, ``DB_MAX = 30``. A peak-normalised world
clip (peak 0.9) peaks near +25 dB (x about 0.9); silence and anything 90 dB below the top sit
at -1. The mapping is fixed (no per-clip reference), so it is deterministic and invertible
(:func:`mel_to_db`, :func:`db_to_mel_power`).
"""

from __future__ import annotations

import numpy as np

SR = 16000
N_FFT = 1024
HOP = 500
N_MELS = 64
FMIN = 30.0
FMAX = 8000.0
DB_MIN = -60.0
DB_MAX = 30.0
FRAMES_PER_SECOND = SR / HOP


def n_frames(duration: float, sr: int = SR, hop: int = HOP) -> int:
    """Number of log-mel frames of a clip of `duration` seconds."""
    return int(round(duration * sr)) // hop


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    lin = f / f_sp
    log = min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _mel_edges(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))


def mel_frequencies(n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Centre frequency (Hz) of each mel band."""
    return _mel_edges(n_mels, fmin, fmax)[1:-1]


_FILTERS: dict[tuple, np.ndarray] = {}


def mel_filters(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                fmax: float = FMAX) -> np.ndarray:
    """Slaney-normalised triangular mel filter bank ``(n_mels, 1 + n_fft // 2)`` (the same
    matrix as ``librosa.filters.mel`` with its defaults)."""
    key = (sr, n_fft, n_mels, float(fmin), float(fmax))
    if key not in _FILTERS:
        fft_f = np.fft.rfftfreq(n_fft, 1.0 / sr)
        edges = _mel_edges(n_mels, fmin, fmax)
        fdiff = np.diff(edges)
        ramps = edges[:, None] - fft_f[None, :]
        lower = -ramps[:-2] / fdiff[:-1, None]
        upper = ramps[2:] / fdiff[1:, None]
        w = np.maximum(0.0, np.minimum(lower, upper))
        w *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
        _FILTERS[key] = w.astype(np.float32)
    return _FILTERS[key]


def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann window."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft(y: np.ndarray, n_fft: int = N_FFT, hop_length: int = HOP) -> np.ndarray:
    """Centred STFT ``(1 + len(y) // hop, 1 + n_fft // 2)`` (zero padding, periodic Hann)."""
    y = np.asarray(y, dtype=np.float32)
    pad = np.pad(y, (n_fft // 2, n_fft // 2))
    n_frames = 1 + (len(pad) - n_fft) // hop_length
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
    return np.fft.rfft(pad[idx] * _window(n_fft), axis=1).astype(np.complex64)


def istft(spec: np.ndarray, n_fft: int = N_FFT, hop_length: int = HOP, length: int | None = None
          ) -> np.ndarray:
    """Inverse of :func:`stft` (windowed overlap-add, normalised by the summed squared window)."""
    frames = np.fft.irfft(spec, n=n_fft, axis=1).astype(np.float32) * _window(n_fft)
    n_frames = len(frames)
    total = n_fft + hop_length * (n_frames - 1)
    out = np.zeros(total, dtype=np.float32)
    norm = np.zeros(total, dtype=np.float32)
    w2 = _window(n_fft) ** 2
    for i in range(n_frames):
        out[i * hop_length:i * hop_length + n_fft] += frames[i]
        norm[i * hop_length:i * hop_length + n_fft] += w2
    out = out[n_fft // 2:] / np.maximum(norm[n_fft // 2:], 1e-8)
    if length is not None:
        out = out[:length] if len(out) >= length else np.pad(out, (0, length - len(out)))
    return out


def _resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=sr, target_sr=target)


def mel_power(audio: np.ndarray, sr: int = SR, n_mels: int = N_MELS, hop_length: int = HOP,
              n_fft: int = N_FFT, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Mel power spectrogram ``(frames, n_mels)`` float32 of mono audio (resampled to SR).

    Numerically the same as ``librosa.feature.melspectrogram(power=2, center=True,
    pad_mode="constant")`` with these settings, trimmed to ``len(audio) // hop_length`` frames;
    written in numpy so that no numba compilation is paid on first use.
    """
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"log_mel expects mono audio of shape (N,), got {y.shape}")
    y = _resample(y, int(sr), SR)
    frames = len(y) // hop_length
    if frames == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    spec = stft(y, n_fft, hop_length)[:frames]
    power = (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2)
    return _apply_filters(power, mel_filters(SR, n_fft, n_mels, fmin, fmax))


def _apply_filters(power: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """``power @ filters.T`` band by band over each filter's support, in float64 and without
    BLAS, so the result does not depend on the BLAS library or its thread count."""
    out = np.empty((power.shape[0], filters.shape[0]), dtype=np.float64)
    for i, w in enumerate(filters):
        nz = np.flatnonzero(w)
        if len(nz) == 0:
            out[:, i] = 0.0
            continue
        lo, hi = nz[0], nz[-1] + 1
        out[:, i] = (power[:, lo:hi] * w[lo:hi].astype(np.float64)).sum(axis=1)
    return out.astype(np.float32)


def db_to_unit(db: np.ndarray) -> np.ndarray:
    """Decibels -> the normalised [-1, 1] scale."""
    x = 2.0 * (np.asarray(db, dtype=np.float32) - DB_MIN) / (DB_MAX - DB_MIN) - 1.0
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def mel_to_db(mel: np.ndarray) -> np.ndarray:
    """Normalised log-mel -> decibels."""
    return ((np.asarray(mel, dtype=np.float32) + 1.0) * 0.5 * (DB_MAX - DB_MIN) + DB_MIN).astype(np.float32)


def db_to_mel_power(mel: np.ndarray) -> np.ndarray:
    """Normalised log-mel -> mel power (inverse of the mapping used by :func:`log_mel`)."""
    return np.power(10.0, mel_to_db(mel) / 10.0).astype(np.float32)


def log_mel(audio: np.ndarray, sr: int = SR, **kw) -> np.ndarray:
    """Normalised log-mel ``(frames, n_mels)`` float32 in ``[-1, 1]`` (see the module docstring).

    ``kw`` may override ``n_mels``, ``hop_length``, ``n_fft``, ``fmin`` and ``fmax`` (the
    decibel mapping stays the same). Audio at another rate is resampled to :data:`SR`.
    """
    p = mel_power(audio, sr=sr, **kw)
    return db_to_unit(10.0 * np.log10(np.maximum(p, 1e-10)))


_PINV: np.ndarray | None = None


def _mel_pinv() -> np.ndarray:
    """Pseudo-inverse of the mel filter bank (linear power from mel power)."""
    global _PINV
    if _PINV is None:
        _PINV = np.linalg.pinv(mel_filters()).astype(np.float32)
    return _PINV


def griffin_lim(mag: np.ndarray, n_iter: int = 32, length: int | None = None, momentum: float = 0.99,
                seed: int = 0) -> np.ndarray:
    """Fast Griffin-Lim (with momentum) for a magnitude ``(frames, 1 + N_FFT // 2)``; the
    initial phase is drawn from a generator seeded with `seed`, so the result is deterministic."""
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(mag.shape)).astype(np.complex64)
    prev = np.zeros_like(angles)
    n = length if length is not None else HOP * (len(mag) - 1)
    for _ in range(int(n_iter)):
        y = istft(mag * angles, length=n)
        rebuilt = stft(y)[: len(mag)]
        if rebuilt.shape[0] < len(mag):
            rebuilt = np.pad(rebuilt, ((0, len(mag) - rebuilt.shape[0]), (0, 0)))
        angles = rebuilt - (momentum / (1.0 + momentum)) * prev
        prev = rebuilt
        angles = angles / (np.abs(angles) + 1e-16)
    return istft(mag * angles, length=n)


def mel_to_audio(mel: np.ndarray, sr: int = SR, n_iter: int = 32) -> np.ndarray:
    """Audio (float32 mono at `sr`) from a normalised log-mel, for listening.

    Mel power -> linear power through the pseudo-inverse of the mel filter bank (negative
    values clipped to 0), square root for magnitude, then fast Griffin-Lim (momentum 0.99, as
    in librosa) from a fixed random initial phase, so the result is deterministic.
    Peak-normalised to 0.9.
    """
    m = np.asarray(mel, dtype=np.float32)
    if m.ndim != 2 or m.shape[1] != N_MELS:
        raise ValueError(f"mel_to_audio expects (frames, {N_MELS}), got {m.shape}")
    frames = len(m)
    power = db_to_mel_power(m)
    power[m <= -1.0 + 1e-6] = 0.0
    power = np.concatenate([power, power[-1:]], axis=0)  # the frame centred on the last sample
    mag = np.sqrt(np.maximum(power @ _mel_pinv().T, 0.0)).astype(np.float32)
    y = griffin_lim(mag, n_iter=n_iter, length=frames * HOP).astype(np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y *= np.float32(0.9 / peak)
    return _resample(y, SR, int(sr)).astype(np.float32)
