"""Steering-vector math on synthetic activations: CAA, AUSteer, layer sets, combinations, the
vector artifact; plus one pass over a real (tiny) activation store."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from tada.steering import austeer, caa, combine, contrast, layersets
from tada.steering.vectors import IncompatibleVectorError, SteeringVector, read_metadata

DESC = {"backend": "fake", "layers": ["b.0.attn2", "b.1.attn2", "b.2.attn2"], "widths": [4, 4, 3],
        "sample_rate": 100}


pytestmark = pytest.mark.usefixtures("module_single_thread")


def fake_store(means, frames=None, frame_steps=(), widths=(4, 4, 3), shuffle=True, seed=0):
    """A duck-typed store: pairs (base i, seed 0) with pos rows from means[:, 0], neg from means[:, 1].

    `means` is (pairs, 2 roles, steps, layers, dim) of the cond branch; frames likewise with
    (pairs, 2, frame_steps, layers, frames, dim).
    """
    n = means.shape[0]
    rows = [(i, role) for i in range(n) for role in (0, 1)]
    order = np.random.default_rng(seed).permutation(len(rows)) if shuffle else np.arange(len(rows))
    rows = [rows[k] for k in order]
    m = np.stack([means[i, r] for i, r in rows])                       # (2n, S, L, D)
    both = np.stack([np.zeros_like(m), m], axis=3)                     # branch axis: uncond, cond
    f = None if frames is None else np.stack([frames[i, r] for i, r in rows])
    samples = pd.DataFrame({"prompt": [f"p{i}{r}" for i, r in rows], "seed": 0,
                            "role": ["pos" if r == 0 else "neg" for _, r in rows],
                            "base": [i for i, _ in rows]})
    attrs = {"branches": ["uncond", "cond"], "frame_steps": list(frame_steps), "model": DESC,
             "layers": DESC["layers"], "layer_widths": list(widths)}
    if f is not None:
        attrs["frame_counts"] = [f.shape[3]] * f.shape[2]
    return SimpleNamespace(means=both.astype(np.float32), frames=None if f is None else f.astype(np.float32),
                           samples=samples, attrs=attrs)


def test_pairs_match_base_and_seed_whatever_the_row_order():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(5, 2, 2, 3, 4))
    store = fake_store(means)
    pos, neg = contrast.pair_rows(store.samples)
    s = store.samples
    assert (s.role.to_numpy()[pos] == "pos").all() and (s.role.to_numpy()[neg] == "neg").all()
    assert (s.base.to_numpy()[pos] == s.base.to_numpy()[neg]).all()
    lonely = pd.concat([s, pd.DataFrame([{"prompt": "x", "seed": 3, "role": "pos", "base": 0}])])
    assert len(contrast.pair_rows(lonely)[0]) == 5  # unpaired row dropped
    with pytest.raises(ValueError, match="two 'pos' rows"):
        contrast.pair_rows(pd.concat([s, s.iloc[:1]]))


def test_caa_is_mean_difference_per_step_and_layer_with_padding_cut():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(6, 2, 3, 3, 4))
    means[:, :, :, 2, 3] = 0.0  # layer 2 has width 3 (zero padding)
    store = fake_store(means)
    vec = caa.caa_vector(store, "x", layers=[0, 2], layer_set="custom")
    expect = (means[:, 0] - means[:, 1]).mean(axis=0)                 # (S, L, D)
    assert vec.layers == [0, 2] and vec.steps == 3
    np.testing.assert_allclose(vec.vectors[0].numpy(), expect[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vec.vectors[2].numpy(), expect[:, 2, :3], rtol=1e-5, atol=1e-6)
    unit = caa.caa_vector(store, "x", unit=True)
    np.testing.assert_allclose(unit.norms(), 1.0, rtol=1e-5)
    assert unit.hyperparameters["normalize"] is True and unit.source["pairs"] == 6
    assert len(unit.source["store_hash"]) == 16


def test_austeer_scores_are_signed_consistency_and_use_frames_where_stored():
    # 4 pairs; dim 0 up in 3 of 4 pairs, dim 1 down in 3 of 4, dim 2 tied 2/2, dim 3 equal
    diffs = np.array([[1, -1, 1, 0], [1, -1, 1, 0], [1, -1, -1, 0], [-1, 1, -1, 0]], dtype=float)
    means = np.zeros((4, 2, 2, 3, 4))
    means[:, 0] = diffs[:, None, None, :]
    frames = np.zeros((4, 2, 1, 3, 2, 4))  # one frame step (= step 1), 2 frames
    frames[:, 0, 0, :, :, 0] = -1.0          # dim 0 goes DOWN in every frame
    store = fake_store(means, frames=frames, frame_steps=[1])
    layers, beta, sources = austeer.scores_from_store(store)
    assert layers == [0, 1, 2] and sources == ["means", "frames"]
    np.testing.assert_allclose(beta[0, 0], [0.75, -0.75, 0.0, 0.0])
    np.testing.assert_allclose(beta[1, 0], [-1.0, 0.0, 0.0, 0.0])
    _, beta_means, src = austeer.scores_from_store(store, use_frames=False)
    assert src == ["means", "means"]
    np.testing.assert_allclose(beta_means[1, 0], [0.75, -0.75, 0.0, 0.0])


def test_austeer_topk_is_global_across_active_layers_and_clipped():
    beta = np.zeros((2, 3, 4))
    beta[0, 0] = [0.9, 0.1, 0.2, 0.3]
    beta[0, 1] = [-0.8, 0.7, 0.05, 0.0]
    beta[0, 2] = [0.99, 0.98, 0.97, 0.5]   # dim 3 of layer 2 is padding (width 3)
    beta[1] = -beta[0]
    sparse, k = austeer.sparse_topk(beta, 3, active=[0, 1], widths=[4, 4, 3])
    assert k == 3
    for s in range(2):
        kept = np.argwhere(sparse[s] != 0).tolist()
        assert sorted(kept) == [[0, 0], [1, 0], [1, 1]]          # 0.9, -0.8, 0.7 across two layers
        assert not sparse[s, 2].any()                             # inactive layer zeroed
    np.testing.assert_allclose(sparse[1, 1, 0], 0.8)              # sign kept
    _, k_all = austeer.sparse_topk(beta, 2048, active=[2], widths=[4, 4, 3])
    assert k_all == 3                                             # clipped; padding never counts
    vec = austeer.austeer_vector(beta, [0, 1, 2], [1, 2], k=4, concept="c", model=DESC, layer_set="ablated")
    assert vec.layers == [1, 2] and tuple(vec.vectors[2].shape) == (2, 3)
    assert int((torch.stack([vec.vectors[1], torch.nn.functional.pad(vec.vectors[2], (0, 1))]) != 0)
               .sum(dim=(0, 2))[0]) == 4                          # 4 dims at step 0 over both layers
    assert vec.hyperparameters == {"top_k": 4, "top_k_used": 4, "form": "additive", "branch": "cond"}


def test_layer_sets(tmp_path):
    assert layersets.layer_sets(5, [2, 3]) == {"global": [0, 1, 2, 3, 4], "localized": [2, 3],
                                               "ablated": [0, 1, 4]}
    path = tmp_path / "layers.json"
    path.write_text('{"layers": [3, 1], "impact": [0.5, 0.4]}')
    assert layersets.functional_layers({"localize": {"layers": None}}, path) == [1, 3]
    assert layersets.functional_layers({"localize": {"layers": [4]}}, path) == [4]
    with pytest.raises(ValueError, match="outside"):
        layersets.resolve_layer_set("localized", 3, [5])
    with pytest.raises(ValueError, match="unknown layer set"):
        layersets.resolve_layer_set("everything", 3, [1])
    with pytest.raises(FileNotFoundError, match="localize"):
        layersets.functional_layers({}, tmp_path / "missing.json")


def _vec(concept, fill, layers=(0, 1), steps=2):
    return SteeringVector({i: torch.full((steps, DESC["widths"][i]), float(fill)) for i in layers},
                          method="caa", concept=concept, model=DESC)


def test_vector_roundtrip_metadata_and_compatibility(tmp_path):
    vec = SteeringVector({0: torch.randn(3, 4), 2: torch.randn(3, 3)}, method="caa", concept="tempo",
                         model=DESC, layer_set="localized", hyperparameters={"normalize": False},
                         source={"store_hash": "abc"})
    path = vec.save(tmp_path / "v" / "tempo.safetensors")
    back = SteeringVector.load(path)
    assert back.layers == [0, 2] and back.steps == 3 and back.layer_names == ["b.0.attn2", "b.2.attn2"]
    assert torch.equal(back.vectors[2], vec.vectors[2])
    meta = read_metadata(path)
    assert meta["format"] == "tada.steering_vector" and meta["model"]["widths"] == [4, 4, 3]
    assert meta["layers"] == [0, 2] and meta["source"] == {"store_hash": "abc"}
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["layer.0", "layer.2"]
    vec.check_compatible(DESC)
    other = dict(DESC, backend="other", widths=[4, 4, 5])
    with pytest.raises(IncompatibleVectorError) as err:
        vec.check_compatible(other)
    assert "'b.2.attn2' (width 3)" in str(err.value) and "(width 5)" in str(err.value)
    assert "fake" in str(err.value) and "other" in str(err.value)
    vec.check_compatible(other, layers=[0])  # only the steered layers matter
    with pytest.raises(ValueError, match="width"):
        SteeringVector({0: torch.zeros(2, 5)}, method="caa", concept="x", model=DESC)
    iv = vec.intervention([0.0, 1.5], layers=[2], start_step=1)
    assert iv.layers == (2,) and iv.start_step == 1 and iv.alpha == [0.0, 1.5]


def test_combinations_caa_austeer_sae():
    combo = combine.combine_caa([(_vec("piano", 1.0), 1), (_vec("tempo", 0.25), -1)], "piano_slow")
    assert combo.concept == "piano_slow" and torch.allclose(combo.vectors[1], torch.full((2, 4), 0.75))
    assert [t["sign"] for t in combo.source["terms"]] == [1, -1]
    with pytest.raises(ValueError, match="cannot combine"):
        combine.combine_caa([(_vec("a", 1.0), 1), (_vec("b", 1.0, layers=(0,)), 1)], "ab")

    # AUSteer: sum before top-k; a dim strong in A but cancelled by B is not chosen
    a = np.zeros((1, 3, 4)); a[0, 0] = [1.0, 0.6, 0.0, 0.0]
    b = np.zeros((1, 3, 4)); b[0, 0] = [1.0, 0.0, 0.5, 0.0]
    meta = lambda c: {"layers": [0, 1, 2], "model": DESC, "concept": c}
    vec = combine.combine_austeer([(a, meta("A"), 1), (b, meta("B"), -1)], [0, 1], k=2, name="A_notB")
    np.testing.assert_allclose(vec.vectors[0][0].numpy(), [0.0, 0.6, -0.5, 0.0])

    # SAE: signed TF-IDF sum, twice the features; the "−" side swaps pos and neg
    n_feat = 6
    stats_a = {"mean_pos": np.zeros((1, 1, n_feat)), "mean_neg": np.zeros((1, 1, n_feat)),
               "frame_steps": [0], "layers": [0], "concept": "A"}
    stats_b = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in stats_a.items()}
    stats_a["mean_pos"][0, 0, [0, 1]] = [2.0, 1.0]
    stats_b["mean_neg"][0, 0, [4, 5]] = [3.0, 0.5]   # B's negative side fires on features 4, 5
    dec = {0: torch.nn.functional.normalize(torch.randn(n_feat, 4, generator=torch.Generator().manual_seed(0)), dim=1)}
    vec = combine.combine_sae([(stats_a, 1), (stats_b, -1)], dec, [0], n_steps=3, top_features=1,
                              name="A_notB", model=DESC)
    chosen = vec.info["features"]["0"][0]
    assert sorted(chosen) == [0, 4] and vec.hyperparameters["top_features"] == 2
    torch.testing.assert_close(vec.vectors[0][2], dec[0][0] + dec[0][4])
    table = [SimpleNamespace(id="x", concepts=("piano", "tempo")), SimpleNamespace(id="y", concepts=("piano", "bass"))]
    assert [c.id for c in combine.supported_combinations(table, ["piano", "tempo"])] == ["x"]


def test_on_a_real_tiny_store(tmp_path):
    from tada.cache import build_store, contrastive_samples, open_store
    from tiny_embedded import tiny_model

    model = tiny_model(batch_size=6, depth=2, steps=3)
    table = pd.DataFrame({"concept": "piano", "base": ["a song", "calm music", "a melody"],
                          "positive": ["a song, with piano", "calm music, with piano", "a melody, with piano"],
                          "negative": ["a song", "calm music", "a melody"]})
    path = tmp_path / "contrastive_piano.zarr"
    build_store(model, contrastive_samples(table, [0]), path, frame_steps=[1], frame_stride=2,
                dtype="float32", chunk_samples=4, progress=False)
    store = open_store(path)
    vec = caa.caa_vector(store, "piano", layer_set="global")
    pos = store.load_means(store.samples.index[store.samples.role == "pos"])
    neg = store.load_means(store.samples.index[store.samples.role == "neg"])
    np.testing.assert_allclose(vec.vectors[1].numpy(), (pos - neg).mean(axis=0)[:, 1], rtol=1e-5, atol=1e-6)
    vec.check_compatible(model)
    layers, beta, sources = austeer.scores_from_store(store)
    assert beta.shape == (3, 2, 16) and sources == ["means", "frames", "means"]
    assert np.isin(np.abs(beta), [0.0, 2 / 3, 1.0] + [k / 12 for k in range(13)]).all()


def test_layer_plan_and_combination_terms(tmp_path):
    import json

    from tada.config import ROOT
    from tada.steering.build import combination_terms, plan_layer_sets

    manifest = tmp_path / "contrastive_tempo.json"
    manifest.write_text(json.dumps({"layers": [f"blocks.{i}.attn2" for i in range(6)]}))
    layers_json = tmp_path / "layers.json"
    layers_json.write_text(json.dumps({"layers": [2, 3]}))
    plan = plan_layer_sets(manifest, layers_json, override=None, names=["global", "ablated"],
                           sae_layer_sets=["localized"])
    assert plan["layer_sets"] == {"global": [0, 1, 2, 3, 4, 5], "ablated": [0, 1, 4, 5], "localized": [2, 3]}
    assert plan["sae_layers"] == [2, 3] and plan["functional"] == [2, 3]
    plan = plan_layer_sets(manifest, None, override=[5], names=["localized"], sae_layer_sets=None)
    assert plan["sae_layers"] == [5]
    concepts = ROOT / "data" / "concepts.yaml"
    terms = combination_terms(concepts, ["piano", "violin", "tempo", "jazz_genre"])
    assert terms["piano_violin"] == [("piano", 1), ("violin", 1)]
    assert terms["jazz_slow_tempo"] == [("jazz_genre", 1), ("tempo", -1)]
    assert "piano_female_vocal" not in terms
    assert combination_terms(concepts, ["piano", "violin"], enabled=False) == {}


def test_import_tada_stays_light():
    import subprocess
    import sys

    code = ("import sys, tada; assert 'torch' not in sys.modules, 'torch imported'; "
            "tada.SteeringVector; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
