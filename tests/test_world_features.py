"""World log-mels, their inversion, datasets, and the concept classifiers."""

from __future__ import annotations

import numpy as np
import pytest

from tada.world import features as F
from tada.world.attributes import ClipAttributes
from tada.world.classifiers import PRESENCE, ConceptClassifiers
from tada.world.dataset import WorldDataset, make_dataset
from tada.world.render import Renderer

CLIP = ClipAttributes(lead="violin", tempo="fast", mood="happy", vocal="female", vocal_style="sung",
                      genre="jazz", drums=True, maracas=True)


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return Renderer().render(CLIP, seed=3)


def test_log_mel_shape_range_and_determinism(audio):
    m = F.log_mel(audio)
    assert m.shape == (128, F.N_MELS) == (F.n_frames(4.0), 64) and m.dtype == np.float32
    assert m.min() >= -1.0 and m.max() <= 1.0
    assert 0.5 < m.max() <= 1.0 and m.mean() > -0.8  # a normal clip uses the scale well
    assert np.array_equal(m, F.log_mel(audio))
    assert np.all(F.log_mel(np.zeros(16000, np.float32)) == -1.0)
    assert F.FRAMES_PER_SECOND == 32.0


def test_log_mel_scale_mapping():
    db = np.array([-100.0, F.DB_MIN, 0.0, F.DB_MAX, 50.0])
    x = F.db_to_unit(db)
    assert np.allclose(x, [-1.0, -1.0, 2 * (0 - F.DB_MIN) / (F.DB_MAX - F.DB_MIN) - 1, 1.0, 1.0])
    assert np.allclose(F.mel_to_db(x[1:4]), db[1:4], atol=1e-4)


def test_log_mel_band_of_a_sine():
    t = np.arange(F.SR * 2) / F.SR
    for hz in (220.0, 1000.0, 3000.0):
        m = F.log_mel(0.5 * np.sin(2 * np.pi * hz * t).astype(np.float32))
        band = int(np.argmax(m.mean(axis=0)))
        assert abs(F.mel_frequencies()[band] - hz) / hz < 0.15


def test_log_mel_other_sample_rate(audio):
    import librosa

    y22 = librosa.resample(audio, orig_sr=16000, target_sr=22050)
    m = F.log_mel(y22, sr=22050)
    assert m.shape == (128, 64)
    assert np.corrcoef(m.ravel(), F.log_mel(audio).ravel())[0, 1] > 0.97


def test_mel_to_audio_round_trip(audio):
    m = F.log_mel(audio)
    y = F.mel_to_audio(m, n_iter=24)
    assert y.dtype == np.float32 and len(y) == len(audio)
    assert np.array_equal(y, F.mel_to_audio(m, n_iter=24))
    assert np.corrcoef(m.ravel(), F.log_mel(y).ravel())[0, 1] > 0.8


def test_dataset_make_save_load(tmp_path):
    ds = make_dataset(6, seed=1, split="train", duration=2.0)
    assert ds.mels.shape == (6, 64, 64) and ds.mels.dtype == np.float16
    assert len(ds.attributes) == len(ds.captions) == len(ds.seeds) == 6
    table = ds.to_table()
    assert list(table.columns[:3]) == ["index", "seed", "caption"] and len(table) == 6
    assert set(table["lead"]) <= {"piano", "violin", "acoustic_guitar", "electric_guitar", "flute", "trumpet"}
    for path in (tmp_path / "d.npz", tmp_path / "dir"):
        back = WorldDataset.load(ds.save(path))
        assert np.array_equal(back.mels, ds.mels) and back.attributes == ds.attributes
        assert back.captions == ds.captions and np.array_equal(back.seeds, ds.seeds)
    again = make_dataset(6, seed=1, split="train", duration=2.0, n_workers=2)
    assert np.array_equal(again.mels, ds.mels) and again.captions == ds.captions
    other = make_dataset(3, seed=1, split="heldout", duration=2.0)
    assert not np.array_equal(other.seeds, ds.seeds[:3])


def test_classifiers_learn_the_concepts(tmp_path):
    """Fit on 200 rendered clips, test on 100 others."""
    train = make_dataset(200, seed=101, split="train", n_workers=2)
    test = make_dataset(100, seed=202, split="heldout", n_workers=2)
    clf = ConceptClassifiers().fit(train.mels, train.attributes)
    acc = clf.evaluate(test.mels, test.attributes)
    assert acc["tempo"] >= 0.85, acc
    assert acc["drums"] >= 0.85, acc
    for inst in ("piano", "violin", "acoustic_guitar", "electric_guitar", "flute", "trumpet"):
        assert acc[f"presence:{inst}"] >= 0.85, (inst, acc)
    assert acc["lead"] >= 0.5, acc  # six classes, chance 1/6
    # vocal gender: female vs male on the clips that have a vocal
    p = clf.predict_proba(test.mels, "vocal")
    sung = [i for i, a in enumerate(test.attributes) if a.vocal != "none"]
    pred = np.where(p[sung, 1] > p[sung, 2], "female", "male")
    gender = float(np.mean(pred == np.array([test.attributes[i].vocal for i in sung])))
    assert gender >= 0.85, gender
    # presence heads and persistence
    pres = clf.presence(test.mels[:5], "drums")
    assert pres.shape == (5,) and np.all((pres >= 0) & (pres <= 1))
    assert set(PRESENCE) >= {"piano", "violin", "flute", "trumpet", "drums", "maracas", "vocal", "guitar"}
    clf.save(tmp_path / "clf")
    back = ConceptClassifiers.load(tmp_path / "clf")
    assert np.allclose(back.predict_proba(test.mels[:8], "lead"), clf.predict_proba(test.mels[:8], "lead"))
    assert back.classes("tempo") == ("slow", "fast")
