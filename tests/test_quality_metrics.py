"""The embedded model's quality measures on signals with known answers."""

import numpy as np
import pytest

from tada.embedded.metrics import boundary_flux_ratio, frame_flux, onset_rates, spectral_flux


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


class _Scores:
    """Stand-in for ConceptClassifiers whose presence score is the clip's first value."""

    def features(self, mels):
        return np.asarray(mels)

    def presence(self, feats, source):
        return np.asarray(feats)[:, 0, 0]


def test_calibrated_threshold_is_the_log_odds_midpoint_of_the_medians():
    from tada.embedded_quality.concepts import QUALITY_CONCEPTS, _separation, calibrated_threshold

    drums = next(c for c in QUALITY_CONCEPTS if c.name == "drums")
    # generations with drums score 0.2-0.4, without 0.01-0.05: all below the classifiers' 0.5
    pos, neg = [0.2, 0.3, 0.4], [0.01, 0.02, 0.05]
    mels = np.asarray(pos + neg, dtype=np.float64)[:, None, None]
    thr = calibrated_threshold(_Scores(), mels, drums, 3)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert thr == pytest.approx(1 / (1 + np.exp(-(logit(0.3) + logit(0.02)) / 2)))
    acc, paired, auc = _separation(_Scores(), mels, drums, 3)
    assert (acc, paired, auc) == (0.5, 1.0, 1.0)  # separated, yet on one side of 0.5
    assert _separation(_Scores(), mels, drums, 3, thr)[0] == 1.0


class _WordEncoder:
    """Sentence embeddings from a fixed table: each phrase points along its listed axis."""

    def __init__(self, axes):
        self.axes = axes

    def sentence_embedding(self, texts):
        import torch

        out = torch.zeros(len(texts), 4)
        for i, t in enumerate(texts):
            out[i, self.axes.get(t, 3)] = 1.0
        return out


def test_text_separability_counts_held_out_words_nearest_their_own_value():
    from tada.embedded_quality import QUALITY_CONCEPTS, text_separability
    from tada.world.captions import CONCEPT_WORDS

    tempo = next(c for c in QUALITY_CONCEPTS if c.name == "tempo")
    axes = {w: 0 for w in CONCEPT_WORDS["train"]["tempo"]["fast"]}
    axes.update({w: 1 for w in CONCEPT_WORDS["train"]["tempo"]["slow"]})
    held_fast, held_slow = CONCEPT_WORDS["heldout"]["tempo"]["fast"], CONCEPT_WORDS["heldout"]["tempo"]["slow"]
    axes.update({held_fast[0]: 0, held_fast[1]: 1, held_fast[2]: 0})  # one fast word reads as slow
    axes.update({w: 1 for w in held_slow})
    r = text_separability(_WordEncoder(axes), [tempo])["tempo"]
    assert r["recognised"] == pytest.approx(5 / 6)
    assert r["words"][held_fast[1]] == {"value": "fast", "nearest": "slow", "recognised": False, "margin": -1.0}
    assert r["words"][held_slow[0]]["margin"] == pytest.approx(1.0)


class _TokenEncoder:
    """Per-token states from a fixed table: each word is a one-hot on its listed axis (else axis 3)."""

    def __init__(self, axes):
        self.axes = axes

    def token_states(self, texts):
        import re

        import torch

        words = [re.findall(r"\w+", t.lower()) for t in texts]
        n = max(len(w) for w in words)
        h, mask = torch.zeros(len(texts), n, 4), torch.zeros(len(texts), n, dtype=torch.bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                h[i, j, self.axes.get(w, 3)] = 1.0
                mask[i, j] = True
        return h, mask


def test_text_readout_reads_token_states_and_misses_the_word_the_encoder_misplaces():
    from tada.embedded_quality import QUALITY_CONCEPTS, concept_prompts, text_readout

    tempo = next(c for c in QUALITY_CONCEPTS if c.name == "tempo")
    fast_tokens = ("fast", "quick", "tempo", "rapid", "brisk", "energetic")
    slow_tokens = ("slow", "slowly", "leisurely", "laid", "unhurried", "languid", "sluggish", "swift")
    axes = {**{w: 0 for w in fast_tokens}, **{w: 1 for w in slow_tokens}}  # 'swift' reads as slow
    r = text_readout(_TokenEncoder(axes), [tempo], n_train=40, n_test=30, seed=5)["tempo"]
    assert r["train_words"] == 1.0
    # every held-out pair whose fast caption says 'swift' is read the wrong way round, no other one
    pos, _, _, _ = concept_prompts(tempo, 30, 5 + 80)
    swift = sum("swift" in p.lower() for p in pos)
    assert 0 < swift < 30
    assert r["heldout"] == pytest.approx(1 - swift / 60, abs=1e-4)  # reported to four decimals
