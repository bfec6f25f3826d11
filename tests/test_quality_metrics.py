"""The embedded model's quality measures on signals with known answers."""

import numpy as np
import pytest

from tada.embedded.quality import boundary_flux_ratio, frame_flux, onset_rates, spectral_flux


def test_flux_of_constant_and_of_a_step():
    flat = np.full((16, 4), 0.3, dtype=np.float32)
    assert spectral_flux(flat) == 0.0
    step = flat.copy()
    step[8:] += 0.5  # one transition of 0.5 in every band out of 15 transitions
    assert frame_flux(step).shape == (1, 15)
    assert spectral_flux(step) == pytest.approx(0.5 / 15)


def test_boundary_flux_ratio_sees_seams_between_tokens():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 0.01, (2, 64, 8)), axis=1)
    seams = smooth.copy()
    # each 2-frame token gets its own offset: jumps only where one token ends and the next starts
    seams += np.repeat(0.2 * rng.choice([-1, 1], size=(2, 32, 8)), 2, axis=1)
    assert boundary_flux_ratio(seams, 2) > 3.0
    assert boundary_flux_ratio(smooth, 2) == pytest.approx(1.0, abs=0.3)
    assert boundary_flux_ratio(seams, 1) == 1.0  # one frame per token: every transition is a boundary


def test_onset_rate_counts_notes():
    fps, seconds = 32, 4
    frames = fps * seconds

    def notes(every):
        mel = np.full((frames, 64), -0.8, dtype=np.float32)
        for start in range(4, frames, every):
            decay = np.exp(-np.arange(min(every, frames - start)) / 6.0)[:, None]
            mel[start:start + len(decay)] = -0.8 + 1.2 * decay
        return mel

    slow, fast = onset_rates(np.stack([notes(16), notes(5)]))
    assert slow == pytest.approx((frames - 4) / 16 / seconds, abs=0.5)  # 2 notes per second
    assert fast == pytest.approx((frames - 4) / 5 / seconds, abs=1.0)  # 6.4 notes per second
