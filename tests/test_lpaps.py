"""LPAPS (preservation distance) and Fréchet distance on the CLAP scorer; MuQ's error messages."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from tada.scorers.base import Clips
from tada.scorers.clap import WORLD_FRAMES, ClapScorer
from tada.scorers.frechet import audio_embeddings, frechet_distance, frechet_to_reference
from tada.scorers.lpaps import _windows, lpaps, lpaps_from_features
from tada.world.features import N_MELS, SR

ROOT = Path(__file__).resolve().parents[1]
WORLD_CLAP = ROOT / "data" / "embedded_clap"


@pytest.fixture(scope="module")
def scorer() -> ClapScorer:
    if not (WORLD_CLAP / "config.json").exists():
        pytest.skip("world CLAP weights missing (data/embedded_clap)")
    return ClapScorer(WORLD_CLAP)


def world_mels(b: int, frames: int = WORLD_FRAMES, seed: int = 0) -> np.ndarray:
    """Simple world-like log-mels (B, frames, N_MELS) in the world range [-1, 1]: a quiet floor
    (-1 is silence) with a few sustained harmonic bands."""
    rng = np.random.default_rng(seed)
    x = np.full((b, frames, N_MELS), -0.9, np.float32) + 0.1 * rng.random((b, frames, N_MELS), dtype=np.float32)
    for i in range(b):
        for _ in range(6):
            t0 = int(rng.integers(0, frames - 8))
            t1 = int(min(frames, t0 + rng.integers(8, 40)))
            band = int(rng.integers(2, N_MELS - 2))
            x[i, t0:t1, band:band + 2] = rng.uniform(0.2, 0.9)
    return np.clip(x, -1.0, 1.0)


def clips(mels: np.ndarray) -> Clips:
    return Clips(None, SR, mels)


# ----- stage features ------------------------------------------------------------------------
def test_world_stage_features_two_stages(scorer):
    x = world_mels(5)
    feats = scorer.stage_features(clips(x))
    assert len(feats) == 2  # the world CLAP's audio encoder has depths [2, 2]
    assert tuple(feats[0].shape) == (5, 64, 8, 8)
    assert tuple(feats[1].shape) == (5, 128, 4, 4)
    old = scorer.batch_size
    try:
        scorer.batch_size = 2  # batched by batch_size: same maps
        again = scorer.stage_features(clips(x))
    finally:
        scorer.batch_size = old
    for a, b in zip(feats, again):
        assert torch.allclose(a, b, atol=1e-5)


# ----- the formula ---------------------------------------------------------------------------
def test_lpaps_from_features_hand_computed():
    # two positions, orthogonal unit vectors swapped: |e1 - e2|^2 = 2 at each position -> mean 2
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, positions=2, C=2)
    b = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    assert lpaps_from_features([a], [b]) == pytest.approx([2.0], abs=1e-8)
    # channels-first maps (B, C, H, W) give the same; scale does not matter (unit-normalised)
    a4 = a.transpose(1, 2).reshape(1, 2, 1, 2)
    b4 = 3.0 * b.transpose(1, 2).reshape(1, 2, 1, 2)
    assert lpaps_from_features([a4], [b4]) == pytest.approx([2.0], abs=1e-8)
    # a second stage adds: 45 degrees at its one position -> 2 - 2 cos 45
    s2a = torch.tensor([[[1.0, 0.0]]])
    s2b = torch.tensor([[[1.0, 1.0]]])
    assert lpaps_from_features([a, s2a], [b, s2b]) == pytest.approx([2.0 + 2 - np.sqrt(2)], abs=1e-8)
    # zero vectors are eps-guarded (no NaN), and identical maps give 0
    z = torch.zeros(2, 3, 4)
    assert np.all(lpaps_from_features([z], [z]) == 0.0)
    with pytest.raises(ValueError, match="shape"):
        lpaps_from_features([a], [a[:, :1]])
    with pytest.raises(ValueError, match="stage"):
        lpaps_from_features([a, a], [a])


# ----- on the world CLAP ---------------------------------------------------------------------
def test_lpaps_identity_and_symmetry(scorer):
    x = world_mels(6, seed=1)
    y = world_mels(6, seed=2)
    same = lpaps(scorer, clips(x), clips(x))
    assert same.shape == (6,)
    assert np.all(np.abs(same) < 1e-6)
    d_xy = lpaps(scorer, clips(x), clips(y))
    d_yx = lpaps(scorer, clips(y), clips(x))
    assert np.all(d_xy > 0.1)
    np.testing.assert_allclose(d_xy, d_yx, rtol=1e-6, atol=1e-9)


def test_lpaps_grows_with_noise(scorer):
    x = world_mels(8, seed=3)
    noise = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    levels = (0.05, 0.2, 0.5)
    d = np.stack([lpaps(scorer, clips(x), clips(np.clip(x + s * noise, -1, 1))) for s in levels])
    assert np.all(d > 0)
    assert np.all(np.diff(d, axis=0) > 0), d  # per clip, monotone in the noise level
    assert np.all(d < 8.0)  # two stages, each at most 4


def test_lpaps_windows_long_clips(scorer):
    x = world_mels(4, frames=2 * WORLD_FRAMES, seed=5)
    y = world_mels(4, frames=2 * WORLD_FRAMES, seed=6)
    whole = lpaps(scorer, clips(x), clips(y))
    first = lpaps(scorer, clips(x[:, :WORLD_FRAMES]), clips(y[:, :WORLD_FRAMES]))
    second = lpaps(scorer, clips(x[:, WORLD_FRAMES:]), clips(y[:, WORLD_FRAMES:]))
    np.testing.assert_allclose(whole, (first + second) / 2, rtol=1e-6)
    assert not np.allclose(whole, first)  # the second window counts
    # window layout: consecutive, a remainder gets one last window flush with the end
    assert _windows(256, 128) == [(0, 128), (128, 256)]
    assert _windows(300, 128) == [(0, 128), (128, 256), (172, 300)]
    assert _windows(100, 128) == [(0, 100)]


def test_lpaps_batch_mismatch(scorer):
    with pytest.raises(ValueError, match=r"a has 3 clips and b has 2"):
        lpaps(scorer, clips(world_mels(3)), clips(world_mels(2)))
    with pytest.raises(ValueError, match="window_s"):
        lpaps(scorer, clips(world_mels(2)), clips(world_mels(2)), window_s=0)


def test_lpaps_real_audio_path_four_stages(tmp_path):
    """The non-world path (processor features, windows in seconds) on a tiny random 4-stage CLAP."""
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapProcessor, ClapTextConfig

    torch.manual_seed(0)
    audio_cfg = ClapAudioConfig(num_mel_bins=64, spec_size=256, patch_size=8, patch_stride=(8, 8),
                                window_size=4, depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2],
                                patch_embeds_hidden_size=8, hidden_size=64, projection_dim=16,
                                enable_fusion=False)
    text_cfg = ClapTextConfig(vocab_size=2000, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                              intermediate_size=16, max_position_embeddings=80, projection_dim=16)
    cfg = ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=16)
    ClapModel(cfg).save_pretrained(str(tmp_path))
    ClapProcessor.from_pretrained(str(WORLD_CLAP)).save_pretrained(str(tmp_path))  # 16 kHz, 4 s
    real = ClapScorer(tmp_path)
    assert not real.world
    rng = np.random.default_rng(7)
    a = 0.1 * rng.standard_normal((2, 8 * SR)).astype(np.float32)
    b = 0.1 * rng.standard_normal((2, 8 * SR)).astype(np.float32)
    feats = real.stage_features(a[:, :4 * SR], sample_rate=SR)
    assert len(feats) == 4
    assert [tuple(f.shape[:2]) for f in feats] == [(2, 8), (2, 16), (2, 32), (2, 64)]
    whole = lpaps(real, a, b, sample_rate=SR, window_s=4.0)
    halves = [lpaps(real, a[:, s:s + 4 * SR], b[:, s:s + 4 * SR], sample_rate=SR, window_s=4.0)
              for s in (0, 4 * SR)]
    np.testing.assert_allclose(whole, (halves[0] + halves[1]) / 2, rtol=1e-6)
    assert np.all(lpaps(real, a, a, sample_rate=SR, window_s=4.0) < 1e-6)


# ----- Fréchet distance ----------------------------------------------------------------------
def test_frechet_self_and_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([0.5, -1.0, 2.0, 0.0, 0.3, 1.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-6)
    b = 2.0 * rng.standard_normal((400, 6))
    assert frechet_distance(a, b) > 0.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_singular_and_errors():
    rng = np.random.default_rng(1)
    few = rng.standard_normal((5, 32))  # fewer rows than dimensions: singular covariances
    other = rng.standard_normal((7, 32)) + 0.5
    d = frechet_distance(few, other)
    assert np.isfinite(d) and d > 0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(few[:1], other)
    with pytest.raises(ValueError, match="widths differ"):
        frechet_distance(few, other[:, :16])
    with pytest.raises(ValueError, match="2-d"):
        frechet_distance(few[0], other)


def test_frechet_to_reference_world_clap(scorer):
    x = world_mels(12, seed=8)
    ref = audio_embeddings(scorer, clips(x))
    assert ref.shape == (12, scorer.model.config.projection_dim)
    assert frechet_to_reference(scorer, clips(x), ref) == pytest.approx(0.0, abs=1e-3)
    quiet = -1.0 + 0.05 * np.random.default_rng(9).random(x.shape, dtype=np.float32)  # near silence
    assert frechet_to_reference(scorer, clips(quiet), ref) > 0.01


# ----- MuQ -----------------------------------------------------------------------------------
def test_muq_missing_extra_names_it(tmp_path):
    try:
        import muq  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("muq imports in this environment")
    from tada.scorers.muq import MuQScorer

    with pytest.raises(ImportError, match=r'pip install "tada\[muq\]"'):
        MuQScorer(tmp_path)


def test_muq_needs_local_path(monkeypatch, tmp_path):
    fake = types.ModuleType("muq")
    fake.MuQMuLan = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "muq", fake)
    from tada.scorers.muq import MuQScorer

    with pytest.raises(ValueError, match="set `path` to a local MuQ-MuLan directory"):
        MuQScorer(None)
    with pytest.raises(ValueError, match="local MuQ-MuLan directory"):
        MuQScorer("OpenMuQ/MuQ-MuLan-large")  # a hub id is not a local directory


def test_muq_extra_declared():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "muq" in extras and any(d.split("[")[0].split("=")[0].strip().startswith("muq") for d in extras["muq"])
