"""Cutoff, calibration search steps and the aggregation of per-clip scores, on worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tada.evaluate.calibrate import _next_alpha, pci_cutoffs
from tada.evaluate.collect import alpha_buckets, descriptor_correlation, per_alpha, responds
from tada.evaluate.pipeline import combination_alpha_max


def scores(alphas, pres, align, prompts=("p0", "p1")):
    rows = []
    for pid in prompts:
        for a, d, s in zip(alphas, pres, align):
            rows.append({"prompt_id": pid, "seed": 0, "alpha": a, "preservation": d, "align_clap": s})
    return pd.DataFrame(rows)


def test_cutoff_is_the_smallest_of_the_pci_maxima_per_direction():
    a = scores([-2, -1, 1, 2], [0.4, 0.1, 0.2, 0.6], [0, 0, 0, 0])
    b = scores([-2, -1, 1, 2], [0.3, 0.5, 0.1, 0.9], [0, 0, 0, 0])
    # pos: max(a) = 0.6, max(b) = 0.9 -> 0.6; neg: max(a) = 0.4, max(b) = 0.5 -> 0.4
    assert pci_cutoffs({"pci": a, "pci_localized": b}) == {"pos": 0.6, "neg": 0.4}
    with pytest.raises(ValueError, match="no neg"):
        pci_cutoffs({"pci": a[a["alpha"] > 0]})


def test_search_step_interpolates_log_alpha_inside_a_bracket_and_extends_outside():
    # d(1) = 0.2, d(4) = 0.6, cutoff 0.4 -> halfway in log α: sqrt(1 * 4) = 2
    alpha, inside = _next_alpha([(1.0, 0.2), (4.0, 0.6)], 0.4, 4.0)
    assert inside and alpha == pytest.approx(2.0)
    # all below: extend by factor² past the largest α; all above: shrink below the smallest
    assert _next_alpha([(1.0, 0.1), (4.0, 0.2)], 0.4, 4.0) == (64.0, False)
    assert _next_alpha([(1.0, 0.5), (4.0, 0.9)], 0.4, 4.0) == (1 / 16, False)


def test_per_alpha_adds_the_shared_alpha_zero_row_and_averages_prompts():
    base = pd.DataFrame({"prompt_id": ["p0", "p1"], "seed": [0, 0], "alpha": [0.0, 0.0],
                         "preservation": [0.0, 0.0], "align_clap__tempo": [0.1, 0.3]})
    sweep = scores([-1, 1], [0.2, 0.4], [0.0, 0.5])
    sweep.loc[sweep["prompt_id"] == "p1", "align_clap"] += 0.2
    out = per_alpha({("caa", "tempo"): sweep}, base)
    assert out["alpha"].tolist() == [-1.0, 0.0, 1.0]
    zero = out[out["alpha"] == 0].iloc[0]
    assert zero["preservation"] == 0 and zero["align_clap"] == pytest.approx(0.2)
    assert out[out["alpha"] == 1]["align_clap"].iloc[0] == pytest.approx(0.6)  # (0.5 + 0.7) / 2


def test_pci_response_gain_and_flag():
    base = pd.DataFrame({"prompt_id": ["p0", "p1"], "seed": [0, 0], "alpha": [0.0, 0.0],
                         "preservation": [0.0, 0.0], "align_clap__tempo": [0.2, 0.2]})
    pci = scores([-30, 30], [0.5, 0.5], [0.0, 0.6])
    pci.loc[pci["prompt_id"] == "p1", "align_clap"] += [0.02, -0.02]
    # gains: p0 +0.4 (pos) +0.2 (neg); p1 +0.38, +0.18 -> mean 0.29, SE small -> responds
    r = responds({"tempo": pci}, base, 30, "clap").iloc[0]
    assert r["pci_gain"] == pytest.approx(0.29) and r["n"] == 4 and bool(r["responds"])
    flat = scores([-30, 30], [0.5, 0.5], [0.25, 0.15])
    assert not bool(responds({"tempo": flat}, base, 30, "clap").iloc[0]["responds"])


def test_alpha_buckets_rank_magnitudes_and_descriptor_correlation_is_pearson():
    frame = pd.DataFrame({"alpha": [-2.0, -1.0, 0.5, 3.0, 0.0]})
    assert alpha_buckets(frame).tolist() == [2, 1, 1, 2, 0]
    x = np.array([1.0, 2.0, 3.0, 4.0])
    clips = {"tempo": pd.DataFrame({"align_clap": x, "onset_rate": 2 * x + 1})}
    r = descriptor_correlation(clips)
    assert r.iloc[0]["pearson_r"] == pytest.approx(1.0) and r.iloc[0]["n"] == 4


def test_combination_range_is_the_smallest_constituent_range_in_each_terms_direction():
    cal = {"piano": {"variants": {"caa": {"pos": {"alpha_max": 3.0}, "neg": {"alpha_max": 9.0}}}},
           "tempo": {"variants": {"caa": {"pos": {"alpha_max": 8.0}, "neg": {"alpha_max": 2.5}}}}}
    assert combination_alpha_max([("piano", 1), ("tempo", -1)], cal, "caa") == 2.5
    assert combination_alpha_max([("piano", 1), ("tempo", 1)], cal, "caa") == 3.0
    assert math.isfinite(combination_alpha_max([("piano", -1)], cal, "caa"))


def test_frechet_excess_removes_the_small_sample_bias():
    """Clips from the reference's own distribution: the raw FD of 4 clips is far above that of
    48, while their excess over the n-matched floor is near 0 for both; a shifted set keeps a
    clear positive excess."""
    from tada.evaluate.collect import FrechetYardstick

    rng = np.random.default_rng(3)
    dim = 16
    reference = rng.normal(size=(256, dim))
    yard = FrechetYardstick(reference, draws=32, seed=1)
    assert len(yard.yardstick) == len(yard.pool) == 128
    same_small = [yard.row(rng.normal(size=(4, dim))) for _ in range(16)]
    same_large = [yard.row(rng.normal(size=(48, dim))) for _ in range(16)]
    raw_small = np.mean([r["frechet"] for r in same_small])
    raw_large = np.mean([r["frechet"] for r in same_large])
    assert raw_small > 3 * raw_large
    assert abs(np.mean([r["excess"] for r in same_small])) < 0.15 * raw_small
    assert abs(np.mean([r["excess"] for r in same_large])) < 0.25 * raw_large
    shifted = yard.row(rng.normal(size=(48, dim)) + 1.0)
    assert shifted["excess"] == pytest.approx(dim * 1.0, rel=0.25)
    # the floor is cached per n and deterministic
    assert yard.floor(4) == FrechetYardstick(reference, draws=32, seed=1).floor(4)
    with pytest.raises(ValueError, match="at least 4 clips"):
        FrechetYardstick(reference[:3])


def test_frechet_quality_delta_is_zero_for_unchanged_clips_and_positive_for_distorted_ones():
    from tada.evaluate.collect import frechet_quality

    rng = np.random.default_rng(5)
    dim = 8
    reference = rng.normal(size=(64, dim))
    base = pd.DataFrame({"prompt_id": ["p0", "p1", "p2", "p3"], "seed": [0, 1, 2, 3]})
    base_emb = rng.normal(size=(4, dim))
    # one concept's sweep: α = ±1 (bucket 1) are copies of the unsteered clips, α = ±2 (bucket 2) moved far
    frame = pd.DataFrame({"prompt_id": ["p0", "p1", "p2", "p3"] * 4, "seed": [0, 1, 2, 3] * 4,
                          "alpha": [1.0] * 4 + [-1.0] * 4 + [2.0] * 4 + [-2.0] * 4})
    emb = np.concatenate([base_emb, base_emb, base_emb + 3.0, base_emb - 3.0])
    fd = frechet_quality({("caa", "tempo"): (frame, emb)}, (base, base_emb), reference).set_index(["method", "bucket"])
    assert fd.loc[("caa", 1), "n"] == 8 and fd.loc[("caa", 1), "delta"] == pytest.approx(0.0, abs=1e-9)
    assert fd.loc[("caa", 1), "knn_delta"] == pytest.approx(0.0, abs=1e-9)
    assert fd.loc[("caa", 2), "delta"] > 5.0 and fd.loc[("caa", 2), "knn_delta"] > 1.0
    assert np.isnan(fd.loc[("none", 0), "delta"]) and np.isfinite(fd.loc[("none", 0), "excess"])
    with pytest.raises(KeyError, match="no α = 0 clip"):
        frechet_quality({("caa", "tempo"): (frame.assign(seed=9), emb)}, (base, base_emb), reference)


def test_knn_distance_worked_example():
    from tada.evaluate.collect import knn_distance

    reference = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    got = knn_distance(np.array([[0.0, 0.0], [1.0, 1.0]]), reference, k=2)
    # (0,0): nearest 0 and 1 -> 0.5; (1,1): distances 1 and sqrt(2), sqrt(2) -> (1 + sqrt 2) / 2
    assert got == pytest.approx([0.5, (1 + math.sqrt(2)) / 2])
