"""Activation patching: impact maths, batching, guards, layer choice and the heatmap."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tada.figures import plot_impact_heatmap
from tada.localize import (ALL_LAYERS, IMPACT_COLUMNS, choose_layers, impact_matrix, localize_concept,
                           pair_text_length, read_impact, top_share)
from tiny_embedded import ConstantScorer, MeanScorer, ReferenceScorer, tiny_model

PAIRS = pd.DataFrame({
    "concept": "drums",
    "pair_id": ["drums_0000", "drums_0001", "drums_0002"],
    "target": ["lively drums and percussion", "a song with drums",
               "an energetic groovy song with drums and a loud bass line and claps"],
    "source": ["lively saxophone and percussion", "a song with saxophone",
               "an energetic groovy song with saxophone and a loud bass line and claps"],
})


@pytest.fixture(scope="module")
def model():
    m = tiny_model(batch_size=4)
    with torch.no_grad():  # layer 0 writes nothing: patching it is a no-op
        m.network.blocks[0].attn2.to_out[0].weight.zero_()
        m.network.blocks[0].attn2.to_out[0].bias.zero_()
    return m


def test_all_layers_reproduce_target_and_noop_layer_is_zero(model):
    pair = PAIRS.iloc[:1]
    tl = pair_text_length(model, pair.target[0], pair.source[0])
    assert tl == max(8, model.token_count(pair.target[0]))
    reference = model.generate([pair.target[0]], [5], text_length=tl).features[0]
    res = localize_concept(model, ReferenceScorer(reference), pair, "drums", seeds=[5])
    summary = res.summary
    assert summary["all_layers_impact"] == pytest.approx(1.0, abs=1e-4)
    assert res.impact.loc[0, "impact_mean"] == pytest.approx(0.0, abs=1e-6)
    assert list(res.impact.columns) == list(IMPACT_COLUMNS)
    assert res.impact["n"].tolist() == [1, 1, 1] and res.impact["n_skipped"].tolist() == [0, 0, 0]
    raw = res.raw
    assert len(raw) == 4 and (raw.layer == ALL_LAYERS).sum() == 1
    assert raw.s_target.iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert summary["patched_generations"] == 4 and summary["generations"] == 1 + 5


def test_batched_packing_matches_one_at_a_time(model):
    kw = dict(seeds=[0, 1], min_denominator=-np.inf)
    model.batch_size = 3  # targets of a round of 4 run as 3 + 1; copies from several units share batches
    try:
        packed = localize_concept(model, MeanScorer(), PAIRS, "drums", units_per_round=4, **kw)
    finally:
        model.batch_size = 4
    single_model = tiny_model(batch_size=1)
    single_model.network.load_state_dict(model.network.state_dict())
    single = localize_concept(single_model, MeanScorer(), PAIRS, "drums", units_per_round=1, **kw)
    assert packed.summary["n_units"] == 6 and sorted(set(packed.raw.text_length)) == [8, 15]
    cols = ["pair_id", "seed", "layer"]
    a, b = packed.raw.sort_values(cols), single.raw.sort_values(cols)
    assert a[cols].values.tolist() == b[cols].values.tolist()
    for col in ("s_target", "s_source", "s_patched"):
        np.testing.assert_allclose(a[col], b[col], atol=1e-5)
    manual = (a.s_patched - a.s_source) / (a.s_target - a.s_source)
    np.testing.assert_allclose(a.impact, manual, rtol=1e-12)
    per_layer = a[a.layer == 1].impact
    assert packed.impact.loc[1, "impact_mean"] == pytest.approx(per_layer.mean())
    assert packed.impact.loc[1, "impact_stderr"] == pytest.approx(per_layer.std(ddof=1) / np.sqrt(6))


def test_denominator_guard_counts_skipped_pairs(model):
    res = localize_concept(model, ConstantScorer(), PAIRS.iloc[:2], "drums", seeds=[0, 1])
    assert res.impact["n"].tolist() == [0, 0, 0]
    assert res.impact["n_skipped"].tolist() == [4, 4, 4]
    assert res.impact["impact_mean"].isna().all()
    assert res.summary["n_skipped"] == 4 and res.summary["all_layers_impact"] is None

    free = localize_concept(model, MeanScorer(), PAIRS.iloc[:2], "drums", seeds=[0, 1], min_denominator=-np.inf)
    dens = free.raw[free.raw.layer == ALL_LAYERS].denominator
    threshold = float(np.median(dens))
    guarded = localize_concept(model, MeanScorer(), PAIRS.iloc[:2], "drums", seeds=[0, 1],
                               min_denominator=threshold)
    expected = int((dens < threshold).sum())
    assert 0 < expected < 4
    assert guarded.impact["n_skipped"].tolist() == [expected] * 3
    assert guarded.impact["n"].tolist() == [4 - expected] * 3
    assert guarded.raw.loc[guarded.raw.skipped, "impact"].isna().all()


def test_ablate_mode(model):
    res = localize_concept(model, MeanScorer(), PAIRS.iloc[:1], "drums", seeds=[0], mode="ablate",
                           min_denominator=-np.inf)
    raw = res.raw
    np.testing.assert_allclose(raw.impact, (raw.s_target - raw.s_patched) / (raw.s_target - raw.s_source))
    assert res.impact.loc[0, "impact_mean"] == pytest.approx(0.0, abs=1e-6)  # layer 0 writes nothing
    with pytest.raises(ValueError, match="mode"):
        localize_concept(model, MeanScorer(), PAIRS, "drums", mode="swap")


def _table(values):
    return pd.DataFrame({"layer": range(len(values)), "layer_name": [f"blocks.{i}.attn2" for i in range(len(values))],
                         "impact_mean": values, "impact_stderr": 0.0, "n": 4, "n_skipped": 0})


def test_choose_layers_top_k_on_hand_made_table():
    impacts = {"drums": _table([0.1, 0.6, 0.2, -0.1]), "flute": _table([0.1, 0.2, 0.4, 0.1])}
    summaries = {"drums": {"all_layers_impact": 0.98, "n_skipped": 1, "min_layer_impact": -0.1},
                 "flute": {"all_layers_impact": 1.04, "n_skipped": 0, "min_layer_impact": 0.1}}
    out = choose_layers(impacts, top_k=2, summaries=summaries)
    assert out["layers"] == [1, 2] and out["layer_names"] == ["blocks.1.attn2", "blocks.2.attn2"]
    assert out["ranking"] == [1, 2, 0, 3] and out["source"] == "top_k"
    assert [s["mean_impact"] for s in out["scores"]] == pytest.approx([0.1, 0.4, 0.3, 0.0])
    assert out["top2_share"] == pytest.approx(0.7 / 0.8)
    assert out["min_layer_impact"] == pytest.approx(0.0)
    assert out["all_layers_impact"] == pytest.approx(1.01) and out["all_layers_close_to_one"]
    assert out["per_concept"]["drums"]["top_layers"] == [1, 2]
    assert out["per_concept"]["drums"]["top2_share"] == pytest.approx(0.8 / 0.9)
    assert choose_layers(impacts, top_k=1)["layers"] == [1]
    over = choose_layers(impacts, top_k=2, override=[3, 0])
    assert over["layers"] == [0, 3] and over["source"] == "override"
    skipped = choose_layers({**impacts, "jazz": _table([np.nan] * 4)}, top_k=2)
    assert skipped["layers"] == [1, 2] and skipped["per_concept"]["jazz"]["top_layers"] == []
    tie = choose_layers({"a": _table([0.5, 0.2, 0.5])}, top_k=1)
    assert tie["layers"] == [0]  # ties go to the lower layer
    json.dumps(out)  # serialisable as layers.json
    with pytest.raises(ValueError):
        choose_layers(impacts, override=[7])
    assert np.isnan(top_share([-1.0, 0.0]))


def test_heatmap_and_files_written(model, tmp_path):
    res = localize_concept(model, MeanScorer(), PAIRS.iloc[:1], "drums", seeds=[0], min_denominator=-np.inf)
    paths = res.write(tmp_path / "drums")
    assert read_impact(paths["impact"]).shape == (3, len(IMPACT_COLUMNS))
    assert json.loads(paths["summary"].read_text())["concept"] == "drums"
    mat = impact_matrix({"drums": res.impact, "flute": _table([0.0, 0.5, np.nan])})
    assert mat.shape == (2, 3)
    png = plot_impact_heatmap(mat, tmp_path / "heatmap.png", chosen=[1], layer_names=model.layer_names())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_no_pairs_gives_an_empty_table(model):
    res = localize_concept(model, MeanScorer(), PAIRS.iloc[:0], "drums", concept="drums")
    assert res.impact["n"].tolist() == [0, 0, 0] and res.impact["impact_mean"].isna().all()
    assert res.summary["n_units"] == 0 and res.summary["top_layers"] == [] and res.summary["top2_share"] is None
