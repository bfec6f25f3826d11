"""Attribution patching (tada.attribution): the gradient estimate is the first-order term of
patching, on a tiny embedded model (float64, finite differences) and a tiny Stable Audio
pipeline; the localization mode and the workflow rule produce the usual outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tada.attribution import (InterpolateKV, NotDifferentiableError, TensorClips, attribute,  # noqa: E402
                              interpolated_scores, score_tensor, torch_log_mel)
from tada.localize import IMPACT_COLUMNS, RAW_COLUMNS, localize_concept, pair_text_length  # noqa: E402
from tada.models.interventions import Capture, PatchKV  # noqa: E402
from tada.scorers.base import Scorer  # noqa: E402
from tiny_embedded import MeanScorer, tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET, SOURCE = "lively drums and piano", "lively flute and piano"


class TanhScorer(Scorer):
    """s(x) = mean over frames of tanh(features · w): nonlinear, with a numpy and a torch path."""

    kind = "test-tanh"

    def __init__(self, n_mels: int):
        self.w = torch.randn(n_mels, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def score_tensor(self, clips, text):
        f = clips.features
        return torch.tanh(f @ self.w.to(f.dtype)).mean(dim=1)

    def _similarity(self, clips, texts):
        s = np.tanh(np.asarray(clips.features, dtype=np.float64) @ self.w.numpy()).mean(axis=1)
        return np.repeat(s[:, None], len(texts), axis=1)


@pytest.fixture(scope="module")
def model64():
    m = tiny_model(batch_size=4, depth=3, steps=4)
    m.network.double()
    m.dtype = torch.float64
    return m


@pytest.fixture(scope="module")
def scorer(model64):
    return TanhScorer(model64.config.n_mels)


def test_gradient_estimate_is_the_first_order_term_of_patching(model64, scorer):
    """(s(α) − s(−α)) / 2α of a patch interpolated by α·Δkv matches the gradient estimate."""
    tl = pair_text_length(model64, TARGET, SOURCE)
    att = attribute(model64, scorer, [TARGET], [SOURCE], [0], "drums", text_length=tl)
    est = att.per_layer(len(model64.layers))[0]
    assert set(att.branches) == {"uncond", "cond"}
    assert {k for (_, _, k) in att.terms} == {"k", "v"} and {s for (s, _, _) in att.terms} == set(range(4))
    a = 1e-4
    for layer in range(len(model64.layers)):
        s_minus, s_plus, s_one = interpolated_scores(model64, scorer, TARGET, SOURCE, 0, "drums", layer,
                                                     [-a, a, 1.0], text_length=tl)
        fd = (s_plus - s_minus) / (2 * a)
        assert abs(est[layer]) > 1e-6
        assert est[layer] == pytest.approx(fd, rel=1e-6)
    # the source score of the gradient run is the plain source run's
    plain = model64.generate([SOURCE], [0], text_length=tl).features
    assert att.s_source[0] == pytest.approx(scorer.score(_gen(plain), "x")[0], rel=1e-6)


def _gen(features):
    class G:  # a Generation stand-in for the numpy scorer path
        prompts, sample_rate, info = [""] * len(features), 16000, {"backend": "embedded"}

    g = G()
    g.features = features
    return g


def test_alpha_one_is_patching(model64):
    tl = pair_text_length(model64, TARGET, SOURCE)
    cap = Capture(means=False, keys_values=True)
    model64.generate([TARGET], [3], interventions=[cap], text_length=tl)
    patched = model64.generate([SOURCE], [3], interventions=[PatchKV(cap, layers=[1])], text_length=tl).features
    interp = model64.generate([SOURCE], [3], interventions=[InterpolateKV(cap, layers=[1], alpha=1.0)],
                              text_length=tl).features
    plain = model64.generate([SOURCE], [3], text_length=tl).features
    zero = model64.generate([SOURCE], [3], interventions=[InterpolateKV(cap, layers=[1], alpha=0.0)],
                            text_length=tl).features
    np.testing.assert_allclose(interp, patched, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(zero, plain)
    assert np.abs(patched - plain).max() > 1e-4


def test_checkpointing_and_batching_leave_the_estimate_unchanged(model64, scorer):
    tl = pair_text_length(model64, TARGET, SOURCE)
    one = attribute(model64, scorer, [TARGET], [SOURCE], [0], "d", text_length=tl)
    plain = attribute(model64, scorer, [TARGET], [SOURCE], [0], "d", text_length=tl, checkpoint=False)
    batch = attribute(model64, scorer, ["piano", TARGET], ["flute", SOURCE], [5, 0], "d", text_length=tl)
    n = len(model64.layers)
    np.testing.assert_allclose(one.per_layer(n), plain.per_layer(n), rtol=1e-10)
    np.testing.assert_allclose(batch.per_layer(n)[1:], one.per_layer(n), rtol=1e-8)


def test_qk_fix_is_the_first_order_term_of_output_interpolation(model64, scorer):
    tl = pair_text_length(model64, TARGET, SOURCE)
    att = attribute(model64, scorer, [TARGET], [SOURCE], [0], "d", text_length=tl, qk_fix=True)
    assert {k for (_, _, k) in att.terms} == {"o"}
    est = att.per_layer(len(model64.layers))[0]
    a = 1e-4
    s_minus, s_plus, s_one = interpolated_scores(model64, scorer, TARGET, SOURCE, 0, "d", 2, [-a, a, 1.0],
                                                 qk_fix=True, text_length=tl)
    assert est[2] == pytest.approx((s_plus - s_minus) / (2 * a), rel=1e-6)
    # at α = 1 the output interpolation is the full patch of the layer
    (patched,) = interpolated_scores(model64, scorer, TARGET, SOURCE, 0, "d", 2, [1.0], text_length=tl)
    assert s_one == pytest.approx(patched, rel=1e-9)


def test_attribution_mode_tables(model64, scorer):
    pairs = pd.DataFrame({"pair_id": ["p0", "p1"], "target": [TARGET, "a happy piano song"],
                          "source": [SOURCE, "a sad piano song"]})
    res = localize_concept(model64, scorer, pairs, "drums", concept="drums", seeds=[0, 1], mode="attribution",
                           min_denominator=-np.inf)
    patch = localize_concept(model64, scorer, pairs, "drums", concept="drums", seeds=[0, 1], mode="patch",
                             min_denominator=-np.inf)
    assert list(res.impact.columns) == list(IMPACT_COLUMNS) and list(res.raw.columns) == list(RAW_COLUMNS)
    assert len(res.raw) == len(patch.raw) and set(res.raw["mode"]) == {"attribution"}
    for col in ("s_target", "s_source"):
        np.testing.assert_allclose(res.raw[col], patch.raw[col], rtol=1e-5)
    # per-step terms add up to the per-layer estimate; all layers = sum of layers
    steps = res.raw_steps
    assert set(steps["step"]) == set(range(4)) and set(steps["branch"]) == {"uncond", "cond"}
    per = steps.groupby(["pair_id", "seed", "layer"])[["d_keys", "d_values"]].sum().sum(axis=1)
    layers = res.raw[res.raw["layer"] >= 0].set_index(["pair_id", "seed", "layer"])
    np.testing.assert_allclose((layers["s_patched"] - layers["s_source"]).loc[per.index], per, rtol=1e-9)
    all_rows = res.raw[res.raw["layer"] == -1].set_index(["pair_id", "seed"])
    np.testing.assert_allclose(all_rows["s_patched"] - all_rows["s_source"],
                               per.groupby(["pair_id", "seed"]).sum().loc[all_rows.index], rtol=1e-9)
    assert res.summary["mode"] == "attribution" and res.summary["backward_passes"] == 4
    assert res.summary["generations"] == 8 and patch.summary["generations"] == 4 * (3 + 3)


def test_a_numpy_scorer_is_refused_by_name(model64):
    with pytest.raises(NotDifferentiableError, match="test-mean"):
        attribute(model64, MeanScorer(), [TARGET], [SOURCE], [0], "d")


@pytest.fixture(scope="module")
def world_clap():
    if not (ROOT / "data" / "embedded_clap" / "config.json").exists():
        pytest.skip("no world CLAP weights in data/embedded_clap")
    from tada.scorers.clap import ClapScorer

    return ClapScorer(ROOT / "data" / "embedded_clap")


def test_world_clap_tensor_path_matches_the_scorer_and_its_gradient(world_clap):
    from tada.world.features import log_mel

    g = torch.Generator().manual_seed(0)
    mels = torch.rand(2, 128, 64, generator=g) * 1.6 - 0.8
    got = score_tensor(world_clap, TensorClips(mels, None, 16000), "music with drums")
    want = world_clap.score(_gen(mels.numpy()), "music with drums")
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    audio = torch.randn(2, 16000, generator=g) * 0.3
    np.testing.assert_allclose(torch_log_mel(audio, 16000)[0].numpy(), log_mel(audio[0].numpy()), atol=1e-4)
    # directional derivative vs central difference, in float64 (the batch-norm backward workaround)
    world_clap.model.double()
    try:
        x = mels[:1].double().requires_grad_(True)
        v = torch.randn(x.shape, generator=g, dtype=torch.float64)
        s = score_tensor(world_clap, TensorClips(x, None, 16000), "music with drums")
        (grad,) = torch.autograd.grad(s.sum(), x)
        with torch.no_grad():
            sp, sm = (score_tensor(world_clap, TensorClips(x + e * v, None, 16000), "music with drums")
                      for e in (1e-6, -1e-6))
        assert float((grad * v).sum()) == pytest.approx(float((sp - sm) / 2e-6), rel=1e-5)
    finally:
        world_clap.model.float()


def test_stable_audio_gradient_flows_through_the_pipeline(tiny_stable_audio_dir, world_clap):
    from tada.models import load_model
    from tada.testing.tiny import TINY_GENERATION

    m = load_model({"backend": "stable_audio", "path": tiny_stable_audio_dir, **TINY_GENERATION["stable_audio"]})
    m.pipe.to(torch.float64)
    m.dtype = torch.float64
    world_clap.model.double()
    try:
        att = attribute(m, world_clap, ["a piano song with drums"], ["a piano song with flute"], [0],
                        "music with drums")
        est = att.per_layer(len(m.layers))[0]
        a = 1e-3
        for layer in range(len(m.layers)):
            s = interpolated_scores(m, world_clap, "a piano song with drums", "a piano song with flute", 0,
                                    "music with drums", layer, [-a, a])
            # the scheduler upcasts to float32 inside its step: agreement to ~1e-3
            assert est[layer] == pytest.approx((s[1] - s[0]) / (2 * a), rel=2e-2)
    finally:
        world_clap.model.float()


def test_prompt_dependent_masks_are_refused(tiny_audioldm2_dir):
    from tada.models import load_model
    from tada.testing.tiny import TINY_GENERATION

    class AudioMean(Scorer):
        kind = "test-audio"

        def score_tensor(self, clips, text):
            return clips.audio.pow(2).mean(dim=(1, 2))

        def _similarity(self, clips, texts):
            raise NotImplementedError

    m = load_model({"backend": "audioldm2", "path": tiny_audioldm2_dir, **TINY_GENERATION["audioldm2"]})
    with pytest.raises(NotDifferentiableError, match="attention masks"):
        attribute(m, AudioMean(), ["a piano song with loud drums"], ["a flute song"], [0], "d",
                  text_length=20)


def test_attribution_mode_runs_in_the_workflow(tmp_path):
    """One concept, one pair, 3 sampler steps, through rule localize_concept."""
    for name in ("embedded_model", "embedded_clap"):
        if not (ROOT / "data" / name / "config.json").exists():
            pytest.skip(f"no data/{name}")
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["localize"].update(mode="attribution", max_pairs=1, seeds=[0])
    config["models"]["embedded"].update(steps=3, batch_size=2)
    config["threads"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    for src in (ROOT / "data").rglob("*"):
        if src.is_file():
            dst = tmp_path / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--nolock", "--cores", "1",
           "results/embedded/localize/drums/impact.csv"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = tmp_path / "results/embedded/localize/drums"
    impact = pd.read_csv(out / "impact.csv")
    assert list(impact["layer"]) == list(range(8)) and list(impact.columns) == list(IMPACT_COLUMNS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "attribution" and summary["backward_passes"] == 1
    steps = pd.read_csv(out / "raw_steps.csv")
    assert sorted(set(steps["step"])) == [0, 1, 2] and len(steps) == 8 * 3 * 2
