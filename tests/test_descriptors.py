"""Acoustic descriptors on synthetic signals, on audio and on world log-mels."""

from __future__ import annotations

import numpy as np
import pytest

from tada.world import descriptors as D
from tada.world.features import SR, log_mel

DUR = 4.0


def click_train(rate_hz: float, dur: float = DUR, sr: int = SR) -> np.ndarray:
    y = np.zeros(int(dur * sr), dtype=np.float32)
    rng = np.random.default_rng(0)
    for t in np.arange(0.1, dur, 1.0 / rate_hz):
        i = int(t * sr)
        n = int(0.01 * sr)
        y[i:i + n] += (rng.standard_normal(n) * np.exp(-np.arange(n) / (0.002 * sr))).astype(np.float32)
    return 0.5 * y / np.abs(y).max()


def tone(midi: float, dur: float = DUR, sr: int = SR, harmonics: int = 4) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1))
    return (0.3 * y).astype(np.float32)


@pytest.mark.parametrize("rate", [2.0, 4.0, 6.0])
def test_onset_rate_of_click_trains(rate):
    y = click_train(rate)
    n_clicks = len(np.arange(0.1, DUR, 1.0 / rate))
    expected = n_clicks / DUR
    assert D.onset_rate(y) == pytest.approx(expected, abs=0.3)
    assert D.onset_rate(log_mel(y), from_mel=True) == pytest.approx(expected, abs=0.3)
    assert D.onset_rate(log_mel(y)) == pytest.approx(expected, abs=0.3)  # mel detected by shape


def test_onset_rate_of_a_steady_tone_is_low():
    assert D.onset_rate(tone(60)) <= 0.5


def test_peak_pick_matches_librosa():
    import librosa

    rng = np.random.default_rng(1)
    for _ in range(5):
        env = rng.random(128) ** 3
        ours = D.peak_pick(env, 0, 1, 3, 4, 0.07, 0)
        ref = librosa.util.peak_pick(env, pre_max=0, post_max=1, pre_avg=3, post_avg=4, delta=0.07, wait=0)
        assert np.array_equal(ours, ref)


def test_batches_give_one_value_per_clip():
    mels = np.stack([log_mel(click_train(r)) for r in (2.0, 4.0)])
    rates = D.onset_rate(mels)
    assert rates.shape == (2,) and rates[1] > rates[0]
    audio = np.stack([click_train(2.0), click_train(4.0)])
    assert np.allclose(D.onset_rate(audio), rates, atol=0.3)
    assert D.spectral_centroid(mels).shape == (2,)
    assert len(D.tempo_periodicity(mels)) == 2


def test_spectral_centroid_orders_tones():
    low, high = D.spectral_centroid(tone(48, harmonics=1)), D.spectral_centroid(tone(84, harmonics=1))
    assert low == pytest.approx(130.8, rel=0.25)
    assert high == pytest.approx(1046.5, rel=0.15)
    # audio and its log-mel give the same value
    y = tone(72)
    assert D.spectral_centroid(y) == pytest.approx(D.spectral_centroid(log_mel(y), from_mel=True))


def test_pitch_register_tracks_the_note():
    regs = [D.pitch_register(tone(m, harmonics=1)) for m in (48, 60, 72, 84)]
    assert np.all(np.diff(regs) > 9)
    assert regs[2] == pytest.approx(72, abs=1.5)
    assert D.pitch_register(tone(72, harmonics=4)) > D.pitch_register(tone(60, harmonics=4))


def test_tempo_periodicity_of_a_pulse():
    tp = D.tempo_periodicity(click_train(2.0, dur=6.0))
    assert tp["bpm"] == pytest.approx(120.0, rel=0.06)
    assert tp["strength"] > 0.5
    assert len(tp["acf"]) == len(tp["lags_s"]) and tp["acf"][0] == pytest.approx(1.0)
    fast = D.tempo_periodicity(click_train(5.0, dur=6.0))
    assert fast["acf"][int(round(0.2 * 32))] > 0.5  # a peak at the 0.2 s period


def test_descriptor_vector_is_fixed_length_and_finite():
    names = D.descriptor_names()
    assert len(names) == len(set(names))
    for y in (click_train(3.0), tone(60), np.zeros(int(DUR * SR), np.float32)):
        v = D.descriptor_vector(log_mel(y))
        assert v.shape == (len(names),) and v.dtype == np.float32 and np.isfinite(v).all()
    short = D.descriptor_vector(log_mel(click_train(3.0, dur=3.0)))
    assert short.shape == (len(names),)
    batch = D.descriptor_vector(np.stack([log_mel(tone(60)), log_mel(tone(72))]))
    assert batch.shape == (2, len(names))


def test_descriptor_vector_reflects_time_structure():
    names = D.descriptor_names()
    slow = D.descriptor_vector(log_mel(click_train(1.5)))
    fast = D.descriptor_vector(log_mel(click_train(6.0)))
    i = names.index("onset_rate")
    assert fast[i] > 3 * slow[i]
    j = names.index("tempo_log2_bpm")
    assert fast[j] > slow[j]


def test_scorers_re_export_the_world_descriptors():
    """One set of formulas: the scorer layer's names are the world's functions."""
    from tada.scorers import descriptors as S

    for name in S.__all__:
        assert getattr(S, name) is getattr(D, name), name
