"""PCI identities, mixed-variant batches and the resumable sweep folder, on a tiny embedded model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tada.evaluate.sweep import SweepClips, alpha_grid, prompt_table, run_sweep, signed_alphas, sweep_rows
from tada.methods import PCIVariant, SweepRow, Unsteered, build_variant, parse_variant_name
from tada.prompts import load_concepts
from tada.steering.vectors import SteeringVector
from tiny_embedded import tiny_model

STEPS = 4
CONCEPT = load_concepts().steering("tempo")
PROMPTS = ["a calm melody for a rainy day", "an upbeat tune with bright synths"]


@pytest.fixture(scope="module")
def model():
    return tiny_model(batch_size=4, steps=STEPS)


@pytest.fixture(autouse=True)
def simple_vocoder(monkeypatch):
    """The tiny model's 8-bin mels cannot be vocoded: audio = the features, flattened."""
    monkeypatch.setattr("tada.models.embedded._vocode",
                        lambda feats: np.tanh(np.asarray(feats, np.float32).reshape(len(feats), 1, -1)))


def rows(alphas, prompts=PROMPTS):
    table = prompt_table(prompts, len(prompts), 0, seed=3)
    return sweep_rows(table, CONCEPT, alphas)


def gen(model, variant, batch):
    return model.generate(variant.prompts(batch), [r.seed for r in batch],
                          interventions=variant.interventions(model, batch, STEPS)).features


@pytest.mark.parametrize("layers", [None, [1]])
def test_pci_alpha_zero_is_plain_generation_of_the_neutral_prompt(model, layers):
    batch = rows([0.0, 2.0])
    pci = PCIVariant("pci", "global" if layers is None else "localized", layers)
    out = gen(model, pci, batch)
    plain = model.generate([r.neutral for r in batch], [r.seed for r in batch]).features
    zero = [i for i, r in enumerate(batch) if r.alpha == 0]
    steered = [i for i, r in enumerate(batch) if r.alpha != 0]
    assert np.array_equal(out[zero], plain[zero])
    assert not np.allclose(out[steered], plain[steered])


def test_pci_full_switch_is_generation_of_the_directional_prompt(model):
    batch = rows([float(STEPS), -float(STEPS)])
    out = gen(model, PCIVariant("pci", "global"), batch)
    direct = model.generate([r.positive if r.alpha > 0 else r.negative for r in batch],
                            [r.seed for r in batch]).features
    assert np.array_equal(out, direct)


def test_localized_pci_differs_from_global_and_switches_later_steps_only(model):
    batch = rows([1.0])
    glob = gen(model, PCIVariant("pci", "global"), batch)
    loc = gen(model, PCIVariant("pci_localized", "localized", [0]), batch)
    assert not np.array_equal(glob, loc)


def test_pci_rejects_non_integer_or_out_of_range_alpha(model):
    with pytest.raises(ValueError, match="integer"):
        PCIVariant("pci", "global").interventions(model, rows([1.5]), STEPS)
    with pytest.raises(ValueError, match=r"\[-4, 4\]"):
        PCIVariant("pci", "global").interventions(model, rows([5.0]), STEPS)


def _vector(model, layers, seed=0):
    g = torch.Generator().manual_seed(seed)
    vecs = {i: torch.randn(STEPS, model.layers[i].width, generator=g) for i in layers}
    return SteeringVector(vecs, method="caa", concept="tempo", model=model.describe(), layer_set="custom")


def test_variants_sharing_a_batch_touch_only_their_own_rows(model):
    a = build_variant("caa", vector=_vector(model, [0, 1, 2]))
    b = build_variant("caa_localized", vector=_vector(model, [1], seed=1))
    batch = rows([1.0, 1.0])[:2]
    mine = [batch[0], batch[1].with_alpha(0.0)]
    theirs = [batch[0].with_alpha(0.0), batch[1]]
    ivs = a.interventions(model, mine, STEPS) + b.interventions(model, theirs, STEPS)
    mixed = model.generate([r.neutral for r in batch], [r.seed for r in batch], interventions=ivs).features
    alone_a = gen(model, a, [batch[0]])
    alone_b = gen(model, b, [batch[1]])
    np.testing.assert_allclose(mixed[0], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], alone_b[0], atol=1e-5)


def test_variant_names_and_grids():
    assert parse_variant_name("caa_localized") == ("caa", "localized")
    assert parse_variant_name("sae_localized") == ("sae", "localized")
    assert parse_variant_name("pci") == ("pci", "global")
    with pytest.raises(ValueError, match="unknown method variant 'foo_localized'"):
        parse_variant_name("foo_localized")
    assert alpha_grid(3.0, 3) == [1.0, 2.0, 3.0]
    assert alpha_grid(30, 4, integer=True) == [8.0, 15.0, 22.0, 30.0]
    assert alpha_grid(4.0, 3, "geometric") == [1.0, 2.0, 4.0]
    assert signed_alphas(2.0, 1.0, 2) == [-1.0, -0.5, 1.0, 2.0]
    table = prompt_table(["a", "b", "c"], 2, 1, seed=5)
    assert table["role"].tolist() == ["eval", "eval", "calibration"]
    assert table["seed"].tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="only 3"):
        prompt_table(["a", "b", "c"], 3, 1)


def test_sweep_writes_batches_resumes_and_clears_stale_folders(model, tmp_path):
    variant = PCIVariant("pci", "global")
    batch = rows([-2.0, 2.0, 4.0])  # 6 rows, batches of 4 + 2
    out = tmp_path / "sweep"
    index = run_sweep(model, variant, batch, out, batch_size=4, progress=False)
    assert len(index) == 6 and sorted(set(index["direction"])) == ["neg", "pos"]
    assert (out / "parts" / "batch-0001.csv").exists()
    assert all((out / f).exists() for f in index["file"])
    clips = SweepClips(out)
    feats = clips.features()
    assert feats.shape[0] == 6
    # the features of a row equal a fresh generation of that row alone (prompt i, seed i)
    direct = gen(model, variant, [batch[5]])
    np.testing.assert_allclose(feats[5], direct[0], atol=1e-5)
    # resume: a finished batch is not regenerated
    (out / "index.csv").unlink()
    (out / "parts" / "batch-0001.csv").unlink()
    stamp = (out / "parts" / "batch-0000.npz").stat().st_mtime_ns
    again = run_sweep(model, variant, batch, out, batch_size=4, progress=False)
    assert (out / "parts" / "batch-0000.npz").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, index)
    # another grid: the folder is cleared, not reused
    run_sweep(model, variant, rows([1.0]), out, batch_size=4, progress=False)
    assert len(pd.read_csv(out / "index.csv")) == 2
    assert not (out / "parts" / "batch-0001.csv").exists()
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["variant"]["family"] == "pci" and "backend" in meta["model"]


def test_unsteered_sweep_matches_plain_generation(model, tmp_path):
    batch = rows([0.0])
    run_sweep(model, Unsteered(), batch, tmp_path / "none", progress=False)
    plain = model.generate([r.neutral for r in batch], [r.seed for r in batch]).features
    assert np.array_equal(SweepClips(tmp_path / "none").features(), plain)
