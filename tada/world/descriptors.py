"""Acoustic descriptors of clips, on audio or on world log-mel frames.

Every descriptor accepts

* mono audio ``(N,)`` at ``sr`` (any rate; resampled to 16 kHz where a mel is needed),
* one normalised log-mel ``(frames, n_mels)`` from :func:`tada.world.features.log_mel`
  (``from_mel=True``, or detected when the last axis has ``N_MELS`` entries),
* or a batch of either (``(B, N)`` audio, ``(B, frames, n_mels)`` mels), in which case it
  returns one value per clip.

Audio is scored through the same path as mels (:func:`~tada.world.features.log_mel` first),
so a generated mel and the audio it came from are measured the same way. Definitions:

* :func:`onset_rate`: librosa's peak-picking rule (default windows, see :func:`onset_frames`)
  on a spectral-flux onset envelope (mean over mel bands of the positive dB increase from the previous frame), onsets
  per second.
* :func:`spectral_centroid`: power-weighted mean mel-band centre frequency (Hz) per frame,
  averaged over frames that are not silent.
* :func:`pitch_register`: the pitch (as a MIDI number) of the power-weighted mean log-frequency
  in the melodic band C2-C7 (65-2093 Hz) per frame, averaged over non-silent frames; it rises
  when the dominant lines move up in register (a line present in only part of the clip, like
  a vocal in call and response, still moves it).
* :func:`tempo_periodicity`: the normalised autocorrelation of the onset envelope over lags up to
  2 s, its strongest lag between 0.25 and 1.5 s (40-240 BPM) and that peak's height.
* :func:`descriptor_vector`: the fixed-length vector used by the world's concept classifiers.

They live in the world package because its concept classifiers are built on them; the
scorers re-export them as :mod:`tada.scorers.descriptors` (external descriptors of generations).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tada.world import features as F

MELODIC_BAND = (65.4, 2093.0)
MIN_ONSET_DB = 1.0
"""Smallest mean rise over the mel bands (dB from one frame to the next) counted as an onset."""
SILENCE_DB = -45.0


def _is_mel(x: np.ndarray, from_mel: bool) -> bool:
    return from_mel or (x.ndim >= 2 and x.shape[-1] == F.N_MELS)


def _batched(fn):
    """Apply a single-clip descriptor over a batch when given one."""

    def wrapper(x: Any, sr: int = F.SR, from_mel: bool = False, **kw):
        arr = np.asarray(x, dtype=np.float32)
        mel = _is_mel(arr, from_mel)
        if (mel and arr.ndim == 3) or (not mel and arr.ndim == 2):
            return np.asarray([fn(a, sr=sr, from_mel=mel, **kw) for a in arr])
        return fn(arr, sr=sr, from_mel=mel, **kw)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def as_mel(x: Any, sr: int = F.SR, from_mel: bool = False) -> np.ndarray:
    """One clip as a normalised log-mel ``(frames, n_mels)``."""
    arr = np.asarray(x, dtype=np.float32)
    if _is_mel(arr, from_mel):
        if arr.ndim != 2:
            raise ValueError(f"expected one log-mel (frames, n_mels), got {arr.shape}")
        return arr
    if arr.ndim != 1:
        raise ValueError(f"expected mono audio (N,), got {arr.shape}")
    return F.log_mel(arr, sr=sr)


def onset_envelope(mel: np.ndarray) -> np.ndarray:
    """Spectral-flux onset strength per frame (dB per frame, mean over bands)."""
    db = F.mel_to_db(mel)
    env = np.zeros(len(db), dtype=np.float32)
    if len(db) > 1:
        env[1:] = np.maximum(np.diff(db, axis=0), 0.0).mean(axis=1)
    return env


def peak_pick(x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int,
              delta: float, wait: int) -> np.ndarray:
    """The peak-picking rule of ``librosa.util.peak_pick``, in plain numpy.

    Frame n is a peak when ``x[n] == max(x[n - pre_max:n + post_max])`` and
    ``x[n] >= mean(x[n - pre_avg:n + post_avg]) + delta``; after a peak, `wait` frames are
    skipped. (librosa compiles this loop with numba on first use, seconds per process.)
    """
    x = np.asarray(x, dtype=np.float64)
    n_x = len(x)
    peaks: list[int] = []
    if n_x == 0:
        return np.zeros(0, dtype=int)
    first = x[0] >= x[:min(post_max, n_x)].max() and x[0] >= x[:min(post_avg, n_x)].mean() + delta
    if first:
        peaks.append(0)
    n = wait + 1 if first else 1
    while n < n_x:
        if x[n] == x[max(0, n - pre_max):min(n + post_max, n_x)].max() and \
                x[n] >= x[max(0, n - pre_avg):min(n + post_avg, n_x)].mean() + delta:
            peaks.append(n)
            n += wait + 1
        else:
            n += 1
    return np.asarray(peaks, dtype=int)


def onset_frames(mel: np.ndarray) -> np.ndarray:
    """Frame indices of detected onsets: :func:`onset_envelope` normalised to [0, 1], then
    librosa's ``onset_detect`` peak picking with its default windows (30 ms pre-max, 100 ms
    averaging before and after, 30 ms wait, delta 0.07) converted to frames by rounding (librosa
    floors, which at 31 ms frames would drop the 30 ms windows to nothing and count a click
    that spans two frames twice). Peaks whose mean rise is below :data:`MIN_ONSET_DB` are
    dropped, so the fluctuations of a steady sound (which the [0, 1] normalisation would blow
    up) are not counted; world note onsets rise by 2-40 dB."""
    raw = onset_envelope(mel)
    if len(raw) < 3 or float(raw.max()) < MIN_ONSET_DB:
        return np.zeros(0, dtype=int)
    env = raw - raw.min()
    env = env / (env.max() + np.finfo(np.float32).tiny)
    fps = F.FRAMES_PER_SECOND
    pre_max = int(round(0.03 * fps))
    post_max = int(round(0.00 * fps)) + 1
    pre_avg = int(round(0.10 * fps))
    post_avg = int(round(0.10 * fps)) + 1
    wait = int(round(0.03 * fps))
    peaks = peak_pick(env, pre_max, post_max, pre_avg, post_avg, 0.07, wait)
    return peaks[raw[peaks] >= MIN_ONSET_DB]


@_batched
def onset_rate(audio_or_mel: Any, sr: int = F.SR, from_mel: bool = False) -> float:
    """Onset events per second."""
    mel = as_mel(audio_or_mel, sr, from_mel)
    if len(mel) == 0:
        return 0.0
    return float(len(onset_frames(mel)) / (len(mel) / F.FRAMES_PER_SECOND))


def _frame_power(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mel power and a mask of frames louder than SILENCE_DB in their loudest band."""
    db = F.mel_to_db(mel)
    loud = db.max(axis=1) > SILENCE_DB
    if not loud.any():
        loud = np.ones(len(db), dtype=bool)
    return np.power(10.0, db / 10.0), loud


@_batched
def spectral_centroid(audio_or_mel: Any, sr: int = F.SR, from_mel: bool = False) -> float:
    """Mean spectral centroid in Hz (mel-band resolution)."""
    mel = as_mel(audio_or_mel, sr, from_mel)
    if len(mel) == 0:
        return 0.0
    p, loud = _frame_power(mel)
    freqs = F.mel_frequencies(mel.shape[1])
    cent = (p * freqs).sum(axis=1) / np.maximum(p.sum(axis=1), 1e-12)
    return float(cent[loud].mean())


def _register_track(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, loud = _frame_power(mel)
    freqs = F.mel_frequencies(mel.shape[1])
    band = (freqs >= MELODIC_BAND[0]) & (freqs <= MELODIC_BAND[1])
    midi = 69.0 + 12.0 * np.log2(freqs[band] / 440.0)
    pb = p[:, band]
    track = (pb * midi).sum(axis=1) / np.maximum(pb.sum(axis=1), 1e-12)
    return track, loud


@_batched
def pitch_register(audio_or_mel: Any, sr: int = F.SR, from_mel: bool = False) -> float:
    """Mean register (MIDI number) of the energy in the melodic band C2-C7."""
    mel = as_mel(audio_or_mel, sr, from_mel)
    if len(mel) == 0:
        return 0.0
    track, loud = _register_track(mel)
    return float(np.mean(track[loud]))


def _acf(env: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation of a (mean-removed) envelope at lags 0..max_lag."""
    e = env - env.mean()
    denom = float((e * e).sum())
    out = np.zeros(max_lag + 1, dtype=np.float32)
    if denom <= 1e-12:
        return out
    n = len(e)
    for lag in range(min(max_lag, n - 1) + 1):
        out[lag] = float((e[: n - lag] * e[lag:]).sum() / denom)
    return out


def tempo_periodicity(audio_or_mel: Any, sr: int = F.SR, from_mel: bool = False,
                      max_lag_s: float = 2.0) -> dict[str, Any]:
    """Periodicity of the onset envelope.

    Returns ``{"bpm", "strength", "acf", "lags_s"}``: the tempo of the strongest
    autocorrelation peak between 0.25 and 1.5 s, its height (0-1), and the whole normalised
    autocorrelation at lags 0..max_lag_s (one value per frame). For a batch, a list of dicts.
    """
    arr = np.asarray(audio_or_mel, dtype=np.float32)
    mel_in = _is_mel(arr, from_mel)
    if (mel_in and arr.ndim == 3) or (not mel_in and arr.ndim == 2):
        return [tempo_periodicity(a, sr=sr, from_mel=mel_in, max_lag_s=max_lag_s) for a in arr]
    mel = as_mel(arr, sr, mel_in)
    fps = F.FRAMES_PER_SECOND
    max_lag = int(round(max_lag_s * fps))
    acf = _acf(onset_envelope(mel), max_lag)
    lo, hi = int(np.ceil(0.25 * fps)), min(int(1.5 * fps), max_lag)
    seg = acf[lo:hi + 1]
    if seg.size == 0 or not np.any(seg > 0):
        bpm, strength = 0.0, 0.0
    else:
        k = int(np.argmax(seg)) + lo
        bpm, strength = 60.0 * fps / k, float(acf[k])
    return {"bpm": float(bpm), "strength": float(strength), "acf": acf,
            "lags_s": np.arange(max_lag + 1) / fps}


# -- the classifier feature vector ----------------------------------------------------------
N_GROUPS = 4
N_CEPS = 24
N_COARSE = 16
ACF_LAGS = np.unique(np.round(np.geomspace(2, 64, 16)).astype(int))
MOD_RATES = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0])
DECAY_LAGS = (2, 5)
VIBRATO_BAND = (4.0, 8.0)


def _band_groups(n_mels: int, n_groups: int = N_GROUPS) -> list[slice]:
    edges = np.linspace(0, n_mels, n_groups + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _coarse(x: np.ndarray, n: int = N_COARSE) -> np.ndarray:
    """Average adjacent mel bands down to `n` (last axis)."""
    return np.stack([x[..., g].mean(axis=-1) for g in _band_groups(x.shape[-1], n)], axis=-1)


def _modulation(env: np.ndarray) -> np.ndarray:
    """Magnitude of an envelope's modulation spectrum at MOD_RATES (Hz), normalised."""
    e = env - env.mean()
    n = len(e)
    t = np.arange(n) / F.FRAMES_PER_SECOND
    basis = np.exp(-2j * np.pi * MOD_RATES[:, None] * t[None, :])
    mag = np.abs(basis @ (e * np.hanning(n))) / max(n, 1)
    return (mag / (np.linalg.norm(mag) + 1e-6)).astype(np.float32)


def _vibrato_index(db: np.ndarray) -> np.ndarray:
    """Per band, the share of the dB envelope's modulation energy at 4-8 Hz (vibrato, tremolo)."""
    n = len(db)
    if n < 8:
        return np.zeros(db.shape[1], dtype=np.float32)
    e = db - db.mean(axis=0, keepdims=True)
    spec = np.abs(np.fft.rfft(e * np.hanning(n)[:, None], axis=0)) ** 2
    rates = np.fft.rfftfreq(n, 1.0 / F.FRAMES_PER_SECOND)
    sel = (rates >= VIBRATO_BAND[0]) & (rates <= VIBRATO_BAND[1])
    total = spec[1:].sum(axis=0) + 1e-9
    return (spec[sel].sum(axis=0) / total).astype(np.float32)


def _decays(db: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Mean dB change per band group DECAY_LAGS frames after each onset (plucked vs sustained)."""
    groups = _band_groups(db.shape[1])
    out = np.zeros((len(groups), len(DECAY_LAGS)), dtype=np.float32)
    for gi, g in enumerate(groups):
        env = db[:, g].mean(axis=1)
        for ki, k in enumerate(DECAY_LAGS):
            ok = onsets[onsets + k < len(env)]
            if len(ok):
                out[gi, ki] = float((env[ok + k] - env[ok]).mean()) / 10.0
    return out.ravel()


def _register_in(p: np.ndarray, freqs: np.ndarray, lo: float, hi: float,
                 loud: np.ndarray) -> tuple[float, float]:
    band = (freqs >= lo) & (freqs < hi)
    midi = 69.0 + 12.0 * np.log2(freqs[band] / 440.0)
    pb = p[:, band][loud]
    tr = (pb * midi).sum(axis=1) / np.maximum(pb.sum(axis=1), 1e-12)
    return float(np.median(tr)), float(np.percentile(tr, 90))


def _cepstrum(db: np.ndarray) -> np.ndarray:
    """Cepstral coefficients (orthonormal DCT-II over mel bands of the dB spectrum), per frame."""
    n = db.shape[1]
    k = np.arange(N_CEPS)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return db @ basis.T.astype(np.float32)


def _blocks(m: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The named blocks of the descriptor vector of one clip."""
    n_mels = m.shape[1]
    db = F.mel_to_db(m)
    p, loud = _frame_power(m)
    freqs = F.mel_frequencies(n_mels)
    rise = np.zeros_like(db)
    rise[1:] = np.maximum(np.diff(db, axis=0), 0.0)
    onsets = onset_frames(m)
    blocks: list[tuple[str, np.ndarray]] = []

    # timbre: cepstrum statistics and the frame-normalised spectrum
    c = _cepstrum(db) / 10.0
    dc = np.abs(np.diff(c, axis=0)) if len(c) > 1 else np.zeros_like(c)
    blocks += [("cep_mean", c.mean(0)), ("cep_std", c.std(0)), ("cep_p10", np.percentile(c, 10, 0)),
               ("cep_p90", np.percentile(c, 90, 0)), ("cep_dmean", dc.mean(0))]
    rel = _coarse((db - db.max(axis=1, keepdims=True))[loud]) / 30.0
    blocks += [("rel_p50", np.percentile(rel, 50, 0)), ("rel_p90", np.percentile(rel, 90, 0))]
    # level and dynamics per coarse band
    mc = _coarse(m)
    rough = np.abs(np.diff(db, n=2, axis=0)) if len(db) > 2 else np.zeros_like(db)
    blocks += [("band_mean", mc.mean(0)), ("band_std", mc.std(0)),
               ("band_attack", _coarse(rise).mean(0) / 10.0), ("band_rough", _coarse(rough).mean(0) / 10.0),
               ("band_vibrato", _coarse(_vibrato_index(db)))]
    # time structure per band group and overall
    max_lag = int(ACF_LAGS.max())
    for gi, g in enumerate(_band_groups(n_mels)):
        env = rise[:, g].mean(axis=1)
        blocks += [(f"g{gi}_acf", _acf(env, max_lag)[ACF_LAGS]), (f"g{gi}_mod", _modulation(env))]
    blocks.append(("decay", _decays(db, onsets)))
    env = rise.mean(axis=1)
    blocks += [("onset_acf", _acf(env, max_lag)[ACF_LAGS]), ("onset_mod", _modulation(env))]
    tp = tempo_periodicity(m, from_mel=True)
    # brightness and register
    cent = (p * freqs).sum(axis=1) / np.maximum(p.sum(axis=1), 1e-12)
    track, _ = _register_track(m)
    tr = track[loud]
    low = _register_in(p, freqs, 65.4, 261.6, loud)
    high = _register_in(p, freqs, 261.6, 2093.0, loud)
    hf = freqs >= 4000.0
    ph = p[:, hf][loud] + 1e-10
    flatness = float(np.mean(np.exp(np.log(ph).mean(axis=1)) / ph.mean(axis=1)))
    lowband = (freqs >= 65.4) & (freqs < 400.0)
    peak_bin = np.argmax(db[:, lowband][loud], axis=1).astype(np.float32)
    blocks.append(("scalars", np.array([
        len(onsets) / (len(m) / F.FRAMES_PER_SECOND), env.mean() / 10.0, env.std() / 10.0,
        np.log2(max(tp["bpm"], 1.0)), tp["strength"],
        cent[loud].mean() / 1000.0, cent[loud].std() / 1000.0,
        np.percentile(tr, 10) / 12.0, np.percentile(tr, 50) / 12.0, np.percentile(tr, 90) / 12.0,
        low[0] / 12.0, low[1] / 12.0, high[0] / 12.0, high[1] / 12.0,
        flatness, rise[:, hf].mean() / 10.0,
        np.percentile(peak_bin, 50) / 10.0, np.percentile(peak_bin, 90) / 10.0,
    ], dtype=np.float32)))
    return blocks


SCALAR_NAMES = ("onset_rate", "onset_env_mean", "onset_env_std", "tempo_log2_bpm", "tempo_strength",
                "centroid_mean", "centroid_std", "reg_p10", "reg_p50", "reg_p90",
                "low_reg_p50", "low_reg_p90", "high_reg_p50", "high_reg_p90",
                "hf_flatness", "hf_attack", "low_peak_bin_p50", "low_peak_bin_p90")


def descriptor_names(n_mels: int = F.N_MELS, n_frames: int = 128) -> list[str]:
    """Names of the entries of :func:`descriptor_vector`."""
    probe = np.full((n_frames, n_mels), -1.0, dtype=np.float32)
    names: list[str] = []
    for block, values in _blocks(probe):
        if block == "scalars":
            names += list(SCALAR_NAMES)
        else:
            names += [f"{block}_{i}" for i in range(len(values))]
    return names


def descriptor_vector(mel: Any) -> np.ndarray:
    """Fixed-length descriptor (float32) of one normalised log-mel ``(frames, n_mels)``.

    What it holds, so that concepts are described by what they are made of:

    * timbre: statistics over frames (mean, std, 10th/90th percentile, mean absolute change) of
      24 cepstral coefficients of the dB mel spectrum, and the median and 90th percentile of
      the frame-normalised spectrum (each frame relative to its loudest band) in 16 bands;
    * level and dynamics in 16 bands: mean, std, attack sharpness (mean positive dB change),
      roughness (mean absolute second difference) and vibrato/tremolo share (4-8 Hz);
    * time structure in 4 band groups and overall: autocorrelation of the onset envelope at
      16 lags (62 ms-2 s) and its modulation spectrum at 0.5-12 Hz; mean dB decay 2 and 5
      frames after onsets per group (plucked vs sustained); onset rate, tempo (log2 BPM) and
      periodicity strength;
    * brightness and register: spectral centroid (mean, std), percentiles of the power-weighted
      pitch in the melodic band, separately below and above C4, and of the loudest low band;
    * noisiness above 4 kHz (spectral flatness and attack: maracas, hats, rap consonants).

    A batch ``(B, frames, n_mels)`` gives ``(B, D)``.
    """
    m = np.asarray(mel, dtype=np.float32)
    if m.ndim == 3:
        return np.stack([descriptor_vector(x) for x in m])
    if m.ndim != 2:
        raise ValueError(f"descriptor_vector expects (frames, n_mels), got {m.shape}")
    if len(m) < 4:
        raise ValueError(f"descriptor_vector needs at least 4 frames, got {len(m)}")
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for _, v in _blocks(m)])
