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


def mel_frequencies(n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Centre frequency (Hz) of each mel band."""
    import librosa

    return librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax)[1:-1]


def _resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=sr, target_sr=target)


def mel_power(audio: np.ndarray, sr: int = SR, n_mels: int = N_MELS, hop_length: int = HOP,
              n_fft: int = N_FFT, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Mel power spectrogram ``(frames, n_mels)`` float32 of mono audio (resampled to SR)."""
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"log_mel expects mono audio of shape (N,), got {y.shape}")
    y = _resample(y, int(sr), SR)
    frames = len(y) // hop_length
    if frames == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    m = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=n_fft, hop_length=hop_length,
                                       n_mels=n_mels, fmin=fmin, fmax=fmax, power=2.0,
                                       center=True, pad_mode="constant")
    return np.ascontiguousarray(m[:, :frames].T, dtype=np.float32)


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
        import librosa

        basis = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
        _PINV = np.linalg.pinv(basis).astype(np.float32)
    return _PINV


def mel_to_audio(mel: np.ndarray, sr: int = SR, n_iter: int = 32) -> np.ndarray:
    """Audio (float32 mono at `sr`) from a normalised log-mel, for listening.

    Mel power -> linear power through the pseudo-inverse of the mel filter bank (negative
    values clipped to 0), square root for magnitude, then Griffin-Lim
    with a fixed initial phase seed, so the result is deterministic. Peak-normalised to 0.9.
    """
    import librosa

    m = np.asarray(mel, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"mel_to_audio expects (frames, n_mels), got {m.shape}")
    frames, n_mels = m.shape
    power = db_to_mel_power(m).T
    silent = m <= -1.0 + 1e-6
    power[silent.T] = 0.0
    power = np.concatenate([power, power[:, -1:]], axis=1)  # the frame centred on the last sample
    mag = np.sqrt(np.maximum(_mel_pinv() @ power, 0.0))
    y = librosa.griffinlim(mag, n_iter=int(n_iter), hop_length=HOP, n_fft=N_FFT, center=True,
                           pad_mode="constant", length=frames * HOP, random_state=0,
                           init="random").astype(np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y *= np.float32(0.9 / peak)
    return _resample(y, SR, int(sr)).astype(np.float32)
