"""The scorer interface: shapes, batching, input forms, the registry, keyword mapping, and a
ranking check of the trained scorers on rendered clips (skipped when their weights are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tada.models.base import Generation
from tada.scorers import Scorer, as_clips, load_scorer
from tada.scorers.base import Clips

ROOT = Path(__file__).resolve().parents[1]
CLAP = ROOT / "data" / "embedded_clap"
CLASSIFIERS = ROOT / "data" / "embedded_classifiers"


class MeanScorer(Scorer):
    """Toy scorer: mean of the mel (or audio) times the text length."""

    kind = "toy"

    def __init__(self, batch_size=2):
        self.batch_size = batch_size
        self.calls = []

    def _similarity(self, clips: Clips, texts):
        x = clips.features if clips.features is not None else clips.audio
        self.calls.append(len(x))
        m = np.asarray(x).reshape(len(x), -1).mean(1)
        return m[:, None] * np.array([len(t) for t in texts])[None]


def _generation(n=5, frames=16, mels=64, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.uniform(-1, 1, (n, frames, mels)).astype(np.float32)
    return Generation(None, 16000, ["p"] * n, list(range(n)), features=feats,
                      decode=lambda f: np.zeros((len(f), 1, 100), np.float32), info={"backend": "embedded"})


def test_shapes_and_batching_match_one_by_one():
    s = MeanScorer(batch_size=2)
    g = _generation()
    texts = ["a", "bb", "ccc"]
    full = s.similarity(g, texts)
    assert full.shape == (5, 3) and full.dtype == np.float32
    assert s.calls == [2, 2, 1]
    singles = np.concatenate([MeanScorer(batch_size=1).similarity(
        Generation(None, 16000, ["p"], [0], features=g.features[i:i + 1], decode=g._decode), texts)
        for i in range(5)])
    np.testing.assert_allclose(full, singles, rtol=1e-6)


def test_generation_features_are_used_without_vocoding():
    g = _generation()
    view = as_clips(g)
    assert view.features is g.features
    MeanScorer().similarity(g, ["x"])
    assert g.__dict__["_audio"] is None


def test_audio_array_input_forms():
    s = MeanScorer(batch_size=4)
    audio = np.random.default_rng(0).normal(size=(3, 1, 800)).astype(np.float32)
    a = s.similarity(audio, ["t"], sample_rate=16000)
    b = s.similarity(audio[:, 0], ["t"], sample_rate=16000)
    np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError, match="sample_rate"):
        s.similarity(audio, ["t"])
    with pytest.raises(ValueError):
        s.similarity(np.zeros(10), ["t"], sample_rate=16000)


def test_single_text_and_helpers():
    s = MeanScorer()
    g = _generation(n=3)
    assert s.similarity(g, "abc").shape == (3, 1)
    assert s.score(g, "abc").shape == (3,)
    assert s.rank(g, ["a", "abcd"]).shape == (3,)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown scorer"):
        load_scorer({"kind": "nope"})
    with pytest.raises(KeyError, match="colour"):
        load_scorer({"kind": "world", "colour": 3})
    with pytest.raises(FileNotFoundError):
        load_scorer({"kind": "world", "path": "/nonexistent/dir"})
    with pytest.raises(FileNotFoundError):
        load_scorer({"kind": "clap", "path": "/nonexistent/dir"})


def test_muq_stub_explains_itself():
    with pytest.raises(ImportError, match="muq"):
        load_scorer({"kind": "muq"})


def test_world_keywords():
    from tada.scorers.world import text_concepts

    assert text_concepts("a piano song") == [("presence:piano", True)]
    assert text_concepts("a fast track") == [("tempo", "fast")]
    assert text_concepts("a slow track") == [("tempo", "slow")]
    assert text_concepts("a cheerful track") == [("mood", "happy")]
    assert text_concepts("This is a music of a female vocal singing") == [("vocal", "female")]
    assert text_concepts("This is music with rap vocal") == [("vocal_style", "rap")]
    assert text_concepts("a song with acoustic guitar") == [("presence:acoustic_guitar", True)]
    assert text_concepts("a classical song") == [("genre", "classical")]
    assert text_concepts("a jazz song") == [("genre", "jazz")]
    assert text_concepts("a song with violin") == [("presence:violin", True)]
    assert text_concepts("a song") == []


class _FakeClassifiers:
    """Classifier stand-in: tempo 'fast' probability = mean of the mel, scaled to [0, 1]."""

    def features(self, mels):
        return np.asarray(mels).reshape(len(mels), -1).mean(1, keepdims=True)

    def classes(self, concept):
        return ("slow", "fast")

    def predict_proba(self, feats, concept):
        p = (np.asarray(feats)[:, 0] + 1) / 2
        return np.stack([1 - p, p], 1)

    def presence(self, feats, instrument):
        return np.full(len(feats), 0.25)


def test_world_scorer_with_stand_in_classifiers():
    from tada.scorers.world import WorldScorer

    s = WorldScorer(classifiers=_FakeClassifiers(), batch_size=2)
    g = _generation(n=4)
    sim = s.similarity(g, ["a fast track", "a slow track", "a piano song"])
    np.testing.assert_allclose(sim[:, 0] + sim[:, 1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(sim[:, 2], 0.25)
    with pytest.raises(ValueError, match="cannot read a concept"):
        s.similarity(g, ["a song"])


def _rendered(n: int = 24):
    pytest.importorskip("tada.world.dataset")
    from tada.scorers.clap import heldout_clips

    return heldout_clips(n, seed=4242)


@pytest.mark.skipif(not (CLAP / "config.json").exists(), reason="no trained world CLAP in data/embedded_clap")
def test_clap_scorer_ranks_rendered_clips():
    from tada.scorers.clap import ranking_accuracy

    s = load_scorer({"kind": "clap", "batch_size": 8})
    mels, attrs = _rendered()
    g = Generation(None, 16000, [""] * len(mels), list(range(len(mels))), features=mels,
                   decode=lambda f: np.zeros((len(f), 1, 1), np.float32))
    sim = s.similarity(g, ["a fast track", "a slow track"])
    assert sim.shape == (len(mels), 2) and np.all(np.abs(sim) <= 1.0 + 1e-5)
    one = np.concatenate([s.similarity(Generation(None, 16000, [""], [i], features=mels[i:i + 1],
                                                  decode=g._decode), ["a fast track", "a slow track"])
                          for i in range(3)])
    np.testing.assert_allclose(sim[:3], one, atol=1e-5)
    res = ranking_accuracy(s, clips=(mels, attrs))
    assert res["rank_acc_tempo"] >= 0.7 and res["rank_acc_lead"] >= 0.5


@pytest.mark.skipif(not (CLASSIFIERS / "classifiers.json").exists(), reason="no saved world classifiers")
def test_world_scorer_ranks_rendered_clips():
    from tada.scorers.clap import ranking_accuracy

    s = load_scorer({"kind": "world"})
    res = ranking_accuracy(s, clips=_rendered())
    assert res["rank_acc_tempo"] >= 0.8 and res["rank_acc_lead"] >= 0.6
