"""The playground engine (tada.play.engine) on the trained embedded model with few steps: α stops,
the catalog of vectors on disk, α = 0 equal to plain generation, the cache, several concepts, and
"Save" -> `tada steer --from-sidecar` reproducing the clip bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tada.config import ROOT
from tada.play.engine import UNCALIBRATED_ALPHA, Catalog, Engine, PlayError, alpha_stops

GEN = {"steps": 4, "guidance": 4.0, "duration": 1.0}
PROMPT = "a calm piano piece with soft drums"
pytestmark = pytest.mark.usefixtures("module_single_thread")


def make_run(root: Path) -> tuple[Path, Path, object]:
    """A config on the embedded model (few steps, 1 s) and a run folder with random CAA vectors
    for tempo (calibrated: −1.5 .. +2.0) and mood (uncalibrated) on two layer sets; returns
    (config path, results dir, loaded model)."""
    from tada.models import load_model
    from tada.steering.vectors import SteeringVector

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["models"] = {"embedded": {**cfg["models"]["embedded"], "path": str(ROOT / "data" / "embedded_model"),
                                  "batch_size": 8, **GEN}}
    cfg["model"] = "embedded"
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    model = load_model(cfg["models"]["embedded"], key="models.embedded")
    desc = model.describe()
    results = root / "results" / "embedded"
    gen = torch.Generator().manual_seed(0)
    for layer_set, layers in (("localized", (0, 7)), ("global", range(8))):
        for concept in ("tempo", "mood"):
            vec = SteeringVector({i: torch.randn(GEN["steps"], desc["widths"][i], generator=gen) for i in layers},
                                 method="caa", concept=concept, model=desc, layer_set=layer_set)
            vec.save(results / "vectors" / "caa" / layer_set / f"{concept}.safetensors")
    (results / "calibration").mkdir(parents=True)
    (results / "calibration" / "tempo.json").write_text(json.dumps({"variants": {
        "caa_localized": {"neg": {"alpha_max": 1.5}, "pos": {"alpha_max": 2.0}},
        "caa": {"neg": {"alpha_max": None}, "pos": {"alpha_max": 3.0}}}}))
    return config, results, model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("play"))


@pytest.fixture
def engine(run_dir):
    _config, results, model = run_dir
    eng = Engine(model, Catalog(results), model_name="embedded", **GEN)
    yield eng
    eng.close()


def request(alpha=0.0, **kw):
    return {"prompt": PROMPT, "seed": 3, "method": "caa_localized", "axes": [{"concept": "tempo", "alpha": alpha}],
            **kw}


def test_stops_span_the_calibrated_range_with_zero_in_the_middle(run_dir):
    assert alpha_stops(1.5, 2.0) == pytest.approx([-1.5, -1.0, -0.5, 0.0, 2 / 3, 4 / 3, 2.0])
    with pytest.raises(ValueError, match="odd"):
        alpha_stops(1, 1, 6)
    menu = Catalog(run_dir[1]).menu()
    assert menu["methods"] == ["caa", "caa_localized"] and menu["default_method"] == "caa_localized"
    by = {c["concept"]: c for c in menu["concepts"]["caa_localized"]}
    assert by["tempo"]["calibrated"] and by["tempo"]["stops"][0] == -1.5 and by["tempo"]["stops"][-1] == 2.0
    assert not by["mood"]["calibrated"] and by["mood"]["neg"] == by["mood"]["pos"] == UNCALIBRATED_ALPHA
    glob = {c["concept"]: c for c in menu["concepts"]["caa"]}["tempo"]
    assert (glob["neg"], glob["pos"], glob["calibrated"]) == (UNCALIBRATED_ALPHA, 3.0, False)  # one side null


def test_alpha_zero_is_plain_generation_and_the_stops_differ(engine, run_dir):
    clips = engine.generate(request())
    assert len(clips) == 7 and engine.batches == 2  # the stop under the slider, then the other six
    assert clips[3].batch == [[0.0]]  # α = 0 was the first stop, rendered alone
    plain = run_dir[2].generate([PROMPT], seeds=[3], **GEN).audio[0]
    np.testing.assert_array_equal(clips[3].audio, plain)
    change = [float(np.abs(c.audio - plain).mean()) for c in clips]
    assert change[3] == 0 and all(change[j] > 1e-4 for j in (0, 1, 2, 4, 5, 6))


def test_a_repeated_request_is_served_from_the_cache(engine):
    first = engine.generate(request(alpha=2.0))
    assert engine.batches == 2 and first[6].batch == [[2.0]]
    again = engine.generate(request(alpha=-1.5))  # same stops, another slider position
    assert engine.batches == 2 and [c.key for c in again] == [c.key for c in first]
    assert all(a is b for a, b in zip(again, first))
    other = engine.generate({**request(), "seed": 4})
    assert engine.batches == 4 and not {c.key for c in other} & {c.key for c in first}


def test_three_concepts_steer_together(engine):
    clips = engine.generate({**request(), "method": "caa", "axes": [
        {"concept": "tempo", "alpha": 0.0}, {"concept": "mood", "alpha": 0.5}]})
    assert [row[1] for row in clips[0].plan.rows] == [0.5] * 7
    single = engine.generate({**request(), "method": "caa"})
    assert not np.array_equal(clips[3].audio, single[3].audio)  # mood stays on at tempo α = 0
    with pytest.raises(PlayError, match="at most|1 to 3"):
        engine.plan({**request(), "axes": [{"concept": "tempo", "alpha": 0}] * 4})
    with pytest.raises(PlayError, match="appears twice"):
        engine.plan({**request(), "axes": [{"concept": "tempo", "alpha": 0}] * 2})
    with pytest.raises(PlayError, match=r"outside tempo's range \[-1.5, 2\]"):
        engine.plan(request(alpha=2.5))


def test_saved_clip_is_rendered_again_bit_for_bit_by_tada_steer(engine, run_dir, tmp_path, capsys):
    from tada.cli import main
    from tada.play.sidecar import regenerate

    clips = engine.generate({**request(alpha=-1.0), "axes": [
        {"concept": "tempo", "alpha": -1.0}, {"concept": "mood", "alpha": -0.5}]})
    clip = clips[5]  # rendered in the batch of six, row 4
    assert clip.batch == [r for r in clip.plan.rows if r[0] != -1.0] and clip.row == 4
    wav, side = engine.save(clip.key, tmp_path / "saved")
    meta = json.loads(side.read_text())
    assert meta["prompt"] == PROMPT and meta["seed"] == 3 and meta["steps"] == GEN["steps"]
    assert meta["model"]["weights_sha256"] == run_dir[2].weights_sha256()
    assert [(v["concept"], v["alpha"], v["layer_set"]) for v in meta["vectors"]] == [
        ("tempo", pytest.approx(4 / 3), "localized"), ("mood", -0.5, "localized")]
    assert all(len(v["sha256"]) == 64 and Path(v["file"]).is_file() for v in meta["vectors"])
    audio, _rate = regenerate(run_dir[2], meta)
    np.testing.assert_array_equal(audio, clip.audio)

    out = tmp_path / "again"
    assert main(["steer", "--config", str(run_dir[0]), "--from-sidecar", str(side), "--out", str(out)]) == 0
    assert (out / wav.name).read_bytes() == wav.read_bytes()

    meta["model"]["weights_sha256"] = "0" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(meta))
    assert main(["steer", "--config", str(run_dir[0]), "--from-sidecar", str(bad), "--out", str(out)]) == 1
    assert "weights" in capsys.readouterr().err
    with pytest.raises(PlayError, match="no finished clip"):
        engine.save("f" * 32, tmp_path)
