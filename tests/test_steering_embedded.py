"""Steering the trained embedded model with CAA vectors built from a small contrastive cache.

Checks: α = 0 is bit-identical to unsteered generation; for tempo the onset rate rises with α
(Spearman ≥ 0.9 averaged over prompts) over the calibrated range, and so does the world tempo
classifier's P(fast); for piano the classifiers' piano presence rises with α over its
calibrated range.

Calibration follows the reference protocol in miniature: the α range is cut where the steered
clip moves further from the unsteered one than rewriting the prompt does (the largest distortion
of the prompt baselines sets the range); distortion here is the mean absolute log-mel difference.
Needs the trained weights in data/embedded_model/ (and data/embedded_classifiers/ for piano).
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tada.config import ROOT

#: TADA_EMBEDDED_MODEL points the checks at another trained model directory (e.g. a checkpoint)
MODEL_DIR = Path(os.environ.get("TADA_EMBEDDED_MODEL", ROOT / "data" / "embedded_model"))
CLASSIFIERS_DIR = ROOT / "data" / "embedded_classifiers"

if not (MODEL_DIR / "model.safetensors").exists():
    pytest.skip(f"the trained embedded model is not in {MODEL_DIR} yet (model.safetensors missing)",
                allow_module_level=True)

#: base prompts of the contrastive cache and neutral prompts of the α sweeps
CACHE_BASES = 6
SWEEP_PROMPTS = ["a melody", "a tune", "an instrumental track"]
ALPHAS = [-2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
#: every sweep point is generated from these seeds and its score averaged over them
SEEDS = [11, 12]
#: the tempo checks add these seeds inside the calibrated range: a 4 s clip holds 10-20 onsets,
#: so one clip's rate moves in steps of 0.25/s, about the rise between neighbouring α values
TEMPO_EXTRA_SEEDS = [13, 14, 15, 16, 17, 18]
STEPS = 20
#: the criterion of the steering checks: mean Spearman(α, score) over the sweep prompts
MIN_SPEARMAN = 0.9


pytestmark = pytest.mark.usefixtures("module_single_thread")


def calibrated(model, concept_id, mels):
    """Indices of ALPHAS in the calibrated range: the contiguous run around α = 0 whose mean
    distortion from the α = 0 clips stays within the largest distortion of the concept's prompt
    rewrites ("+" and "−" templates around each sweep prompt, same seed)."""
    from tada.prompts import load_concepts

    concept = load_concepts().steering(concept_id)
    rewrites = [concept.positive(p) for p in SWEEP_PROMPTS] + [concept.negative(p) for p in SWEEP_PROMPTS]
    cutoff, dist = 0.0, 0.0
    for k, seed in enumerate(SEEDS):
        rewritten = np.asarray(model.generate(rewrites, seeds=[seed] * len(rewrites)).features)
        zero = mels[k, :, ALPHAS.index(0.0)]
        cutoff = max(cutoff, float(np.abs(rewritten - np.concatenate([zero, zero])).mean(axis=(1, 2)).max()))
        dist = dist + np.abs(mels[k] - zero[:, None]).mean(axis=(0, 2, 3)) / len(SEEDS)
    i0 = ALPHAS.index(0.0)
    lo = i0
    while lo > 0 and dist[lo - 1] <= cutoff:
        lo -= 1
    hi = i0
    while hi < len(ALPHAS) - 1 and dist[hi + 1] <= cutoff:
        hi += 1
    print(f"\n{concept_id}: distortion per alpha {np.round(dist, 3).tolist()}, prompt-rewrite cutoff "
          f"{cutoff:.3f}, calibrated range [{ALPHAS[lo]}, {ALPHAS[hi]}]")
    return list(range(lo, hi + 1))


def check_rises(name, scores, keep=None):
    """Assert the score rises with α (mean Spearman >= MIN_SPEARMAN and end points ordered)
    over the α indices `keep` (all by default; at least three α values). `scores` is
    (prompts, ALPHAS) or already restricted to (prompts, keep).
    """
    keep = list(range(len(ALPHAS))) if keep is None else list(keep)
    assert len(keep) >= 3, f"calibrated range too narrow: {[ALPHAS[i] for i in keep]}"
    alphas = [ALPHAS[i] for i in keep]
    scores = np.asarray(scores)
    if scores.shape[1] != len(keep):
        scores = scores[:, keep]
    rho = [spearman(alphas, row) for row in scores]
    table = np.array2string(np.asarray(scores), precision=3)
    print(f"\n{name} per prompt x alpha {alphas}:\n{table}\nspearman {np.round(rho, 3)} "
          f"mean {np.nanmean(rho):.3f}")
    assert np.nanmean(rho) >= MIN_SPEARMAN and np.mean(scores[:, -1]) > np.mean(scores[:, 0]), (
        f"{name} does not rise with alpha: mean Spearman {np.nanmean(rho):.2f} < {MIN_SPEARMAN}; "
        f"per-alpha means {np.round(np.mean(scores, axis=0), 3).tolist()}")


@pytest.fixture(scope="module")
def model():
    from tada.models.embedded import EmbeddedModel

    return EmbeddedModel.from_pretrained(MODEL_DIR, batch_size=16, steps=STEPS)


def caa_for(model, concept_id, tmp_dir):
    """CAA vector (global layer set) from a contrastive cache of a few base prompts, one seed."""
    from tada.cache import build_store, contrastive_samples
    from tada.prompts import contrastive_prompts, load_concepts, load_prompt_list
    from tada.prompts.templates import BASE_PROMPTS_PATH
    from tada.steering.caa import caa_vector

    concept = load_concepts().steering(concept_id)
    bases = [b for b in load_prompt_list(BASE_PROMPTS_PATH) if b not in SWEEP_PROMPTS][:CACHE_BASES]
    samples = contrastive_samples(contrastive_prompts(concept, bases), seeds=[0])
    store = build_store(model, samples, Path(tmp_dir) / f"contrastive_{concept_id}.zarr", steps=STEPS,
                        dtype="float32", chunk_samples=len(samples), progress=False)
    return caa_vector(store, concept_id, layer_set="global")


def sweep(model, vector, alphas=ALPHAS, prompts=SWEEP_PROMPTS, seeds=SEEDS):
    """Log-mels (seeds, prompts, alphas, frames, mels): every α of a prompt and seed from the same noise."""
    import tada

    jobs = [(s, p, a) for s in seeds for p in prompts for a in alphas]
    with tada.steer(model, vector, alpha=[a for _, _, a in jobs]):
        gen = model.generate([p for _, p, _ in jobs], seeds=[s for s, _, _ in jobs])
    return np.asarray(gen.features).reshape(len(seeds), len(prompts), len(alphas), *gen.features.shape[1:])


def spearman(x, y) -> float:
    return float(pd.Series(x).corr(pd.Series(y), method="spearman"))


@pytest.fixture(scope="module")
def tempo_vector(model, tmp_path_factory):
    return caa_for(model, "tempo", tmp_path_factory.mktemp("tempo"))


def test_alpha_zero_is_bit_identical(model, tempo_vector):
    import tada

    prompts = SWEEP_PROMPTS[:2]
    plain = model.generate(prompts, seeds=[11] * len(prompts)).features
    with tada.steer(model, tempo_vector, alpha=0.0):
        zero = model.generate(prompts, seeds=[11] * len(prompts)).features
    assert np.array_equal(plain, zero)


@pytest.fixture(scope="module")
def tempo_sweep(model, tempo_vector):
    """Log-mels of the tempo sweep over the calibrated α range, (seeds, prompts, α in range, ...)
    from SEEDS + TEMPO_EXTRA_SEEDS, and the α indices of that range (shared by the tempo checks)."""
    mels = sweep(model, tempo_vector)
    keep = calibrated(model, "tempo", mels)
    extra = sweep(model, tempo_vector, alphas=[ALPHAS[i] for i in keep], seeds=TEMPO_EXTRA_SEEDS)
    return np.concatenate([mels[:, :, keep], extra]), keep


def test_tempo_onset_rate_rises_with_alpha(tempo_sweep):
    from tada.scorers.descriptors import onset_rate

    mels, keep = tempo_sweep
    rates = np.array([[[onset_rate(m, from_mel=True) for m in row] for row in per_seed] for per_seed in mels])
    rates = rates.mean(axis=0)  # (prompts, alphas in range)
    check_rises("tempo onset rate (onsets/s)", rates, keep)


@pytest.mark.skipif(not (CLASSIFIERS_DIR / "classifiers.safetensors").exists(),
                    reason=f"world concept classifiers not in {CLASSIFIERS_DIR} yet")
def test_tempo_classifier_rises_with_alpha(tempo_sweep):
    """The world's tempo classifier (onset and envelope-periodicity features) on the same sweep:
    P(fast) must rise with α over the calibrated range."""
    from tada.world.classifiers import ConceptClassifiers

    mels, keep = tempo_sweep
    clf = ConceptClassifiers.load(CLASSIFIERS_DIR)
    fast = list(clf.classes("tempo")).index("fast")
    proba = clf.predict_proba(mels.reshape(-1, *mels.shape[3:]), "tempo")[:, fast]
    check_rises("tempo classifier P(fast)", proba.reshape(mels.shape[:3]).mean(axis=0), keep)


@pytest.mark.skipif(not (CLASSIFIERS_DIR / "classifiers.safetensors").exists(),
                    reason=f"world concept classifiers not in {CLASSIFIERS_DIR} yet")
def test_piano_presence_rises_with_alpha(model, tmp_path_factory):
    from tada.world.classifiers import ConceptClassifiers

    vector = caa_for(model, "piano", tmp_path_factory.mktemp("piano"))
    mels = sweep(model, vector)
    clf = ConceptClassifiers.load(CLASSIFIERS_DIR)
    presence = clf.presence(mels.reshape(-1, *mels.shape[3:]), "piano").reshape(mels.shape[:3]).mean(axis=0)
    check_rises("piano presence (probability)", presence, calibrated(model, "piano", mels))
