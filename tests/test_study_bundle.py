"""The listening study's bundle: click-free loops, the α stops, clips taken from the sweeps or
rendered by the sweep code, anonymity in the browser's files, and the participant plans.

:func:`fake_run` writes a finished run's folders (baseline and variant sweeps with their
scores, calibrations, prompt table) with synthetic clips; the server, load, browser and
analysis tests build their bundle from it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tada.evaluate.sweep import signed_alphas
from tada.prompts import load_concepts
from tada.study.bundle import build_bundle, stop_alphas, study_variants
from tada.study.loops import fade_length, read_mono, seamless_loop, write_loop
from tada.study.plan import participant_plan, public_plan, read_manifest

SR = 16000
STEPS = 6  # PCI's fixed range: integer α up to 6 -> stops ±2, ±4, ±6
VARIANTS = ["pci", "pci_localized", "caa", "caa_localized", "caa_ablated", "austeer", "austeer_localized",
            "sae_localized"]
STUDY = {"concepts": ["piano", "tempo"], "prompts": 1, "alphas_per_side": 3, "always": ["sae_localized"],
         "families_per_trial": 3, "audio_format": "ogg", "loop_crossfade": 0.05}
#: calibrated α_max per (variant, side); piano's CAA has no negative side (flat)
ALPHA_MAX = {"pos": 3.0, "neg": 1.5}
PARTICIPANT = "0b9a1c52-7f0e-4c3a-9d55-2f6e1b7c8a90"


def _clip(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _sweep(folder: Path, rows: list[tuple[str, float]], freq, scores: Path, score_cols) -> None:
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    index, table = [], []
    for pid, alpha in rows:
        rel = f"audio/{pid}_a{alpha:+g}.flac".replace("+", "p").replace("-", "m")
        sf.write(folder / rel, _clip(freq(alpha)), SR)
        index.append({"prompt_id": pid, "seed": int(pid[1:]), "alpha": alpha,
                      "direction": "pos" if alpha > 0 else ("neg" if alpha < 0 else "zero"), "file": rel,
                      "part": "", "offset": 0})
        table.append({**index[-1], **score_cols(alpha)})
    pd.DataFrame(index).to_csv(folder / "index.csv", index=False)
    (folder / "sweep.json").write_text(json.dumps({
        "fingerprint": f"fp-{folder.name}", "model": {"backend": "embedded", "sample_rate": SR},
        "settings": {"steps": STEPS, "guidance": 4.0, "duration": 1.0, "text_length": 8, "batch_size": 4}}))
    scores.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).drop(columns=["part", "offset"]).to_csv(scores, index=False)


def fake_run(root: Path, concepts=("piano", "tempo"), variants=VARIANTS, skip_alphas=()) -> Path:
    """results/<model> of a finished run with synthetic clips; returns it. `skip_alphas` leaves
    those α out of every variant sweep (so the bundle must render them)."""
    results = root / "results" / "embedded"
    prompts = pd.DataFrame({"prompt_id": ["p000", "p001", "p002"], "prompt": ["a calm melody", "a pop song", "x"],
                            "seed": [0, 1, 2], "role": ["eval", "eval", "calibration"]})
    (root / "results" / "prompts").mkdir(parents=True, exist_ok=True)
    prompts.to_csv(root / "results" / "prompts" / "evaluation.csv", index=False)
    base_cols = lambda a: {**{f"align_clap__{c}": 0.2 for c in concepts}, "preservation": 0.0}
    _sweep(results / "sweeps" / "none", [("p000", 0.0), ("p001", 0.0)], lambda a: 220.0,
           results / "scores" / "none" / "scores.csv", base_cols)
    (results / "calibration").mkdir(parents=True, exist_ok=True)
    for c in concepts:
        cal = {"concept": c, "cutoff": {"pos": 1.0, "neg": 1.0}, "variants": {}}
        for v in variants:
            if v.startswith("pci"):
                alphas = signed_alphas(STEPS, STEPS, 3, integer=True)
            else:
                neg = None if (c == "piano" and v.startswith("caa")) else ALPHA_MAX["neg"]
                cal["variants"][v] = {"pos": {"alpha_max": ALPHA_MAX["pos"]}, "neg": {"alpha_max": neg}}
                alphas = signed_alphas(ALPHA_MAX["pos"], neg, 3)
            alphas = [a for a in alphas if a not in skip_alphas]
            rows = [(p, a) for p in ("p000", "p001") for a in alphas]
            _sweep(results / "sweeps" / c / v, rows, lambda a: 220.0 * (1 + 0.05 * a),
                   results / "scores" / c / v / "scores.csv",
                   lambda a: {"align_clap": 0.2 + 0.01 * a, "preservation": 0.1 * abs(a)})
        (results / "calibration" / f"{c}.json").write_text(json.dumps(cal))
    return results


def make_bundle(root: Path, **study) -> Path:
    results = fake_run(root)
    out = root / "bundle"
    build_bundle(out, results_dir=results, prompts=pd.read_csv(root / "results" / "prompts" / "evaluation.csv"),
                 concepts=load_concepts(), variants=VARIANTS, study={**STUDY, **study})
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("study"))


# ----- loops ------------------------------------------------------------------------------------
def test_seamless_loop_removes_the_click_at_the_wrap():
    """A 441 Hz tone cut mid-period jumps at the wrap; the crossfaded loop continues it."""
    x = _clip(441.0, 1.013)
    jump = lambda y: abs(float(y[0]) - float(y[-1]))
    typical = float(np.abs(np.diff(x)).max())  # largest step inside the clip
    assert jump(x) > 5 * typical
    f = fade_length(len(x), 0.05, SR)
    y = seamless_loop(x, f)
    assert len(y) == len(x) - f == len(x) - 800
    assert jump(y) <= 1.05 * typical
    # the body is untouched, the head starts where the tail was cut
    np.testing.assert_array_equal(y[f:], x[f:len(x) - f])
    assert abs(float(y[0]) - float(x[len(x) - f])) < 0.01
    # a clip shorter than 4 fade lengths gets a shorter fade, never an error
    assert fade_length(100, 1.0, SR) == 25


def test_ogg_loop_keeps_its_length_and_wraps_without_a_click(tmp_path):
    x = _clip(441.0, 1.013)
    y = seamless_loop(x, fade_length(len(x), 0.05, SR))
    write_loop(tmp_path / "a.ogg", y, SR, "ogg")
    info = sf.info(tmp_path / "a.ogg")
    assert (info.format, info.subtype) == ("OGG", "VORBIS")
    z, sr = read_mono(tmp_path / "a.ogg")
    assert sr == SR and len(z) == len(y)
    assert abs(float(z[0]) - float(z[-1])) < 3 * float(np.abs(np.diff(x)).max())
    assert (tmp_path / "a.ogg").stat().st_size < 0.25 * len(y) * 2  # compressed: < 1/4 of 16-bit PCM
    with pytest.raises(ValueError, match="study.audio_format"):
        write_loop(tmp_path / "a.mp9", y, SR, "mp9")


# ----- stops and variants -------------------------------------------------------------------------
def test_stop_alphas_follow_the_calibration_or_the_fixed_range():
    cal = {"concept": "piano", "variants": {"caa": {"pos": {"alpha_max": 3.0}, "neg": {"alpha_max": 1.5}},
                                            "austeer": {"pos": {"alpha_max": 0.3}, "neg": {"alpha_max": None}}}}
    alphas, flat, source = stop_alphas("caa", cal, 30, 3)
    assert alphas == [-1.5, -1.0, -0.5, 0.0, 1.0, 2.0, 3.0] and source == "calibrated"
    assert flat == {"pos": False, "neg": False}
    alphas, flat, _ = stop_alphas("austeer", cal, 30, 3)
    assert alphas[:4] == [0.0, 0.0, 0.0, 0.0] and flat == {"pos": False, "neg": True}
    alphas, flat, source = stop_alphas("pci", cal, 30, 3)
    assert alphas == [-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0] and source == "fixed"
    with pytest.raises(KeyError, match="no entry for sae_localized"):
        stop_alphas("sae_localized", cal, 30, 3)


def test_study_variants_pair_each_family_and_keep_the_anchor():
    chosen = study_variants(VARIANTS, ["sae_localized"])
    assert chosen.always == ("sae_localized",)
    assert chosen.pairs == {"pci": ("pci", "pci_localized"), "caa": ("caa", "caa_localized"),
                            "austeer": ("austeer", "austeer_localized")}
    assert "caa_ablated" not in chosen.names and len(chosen.names) == 7
    with pytest.raises(ValueError, match="study.always"):
        study_variants(["caa", "caa_localized"], ["sae_localized"])


# ----- the bundle -----------------------------------------------------------------------------------
def test_bundle_takes_every_stop_from_the_sweeps(bundle):
    manifest = read_manifest(bundle)
    assert [t["id"] for t in manifest["trials"]] == ["piano-p000", "tempo-p000"]
    assert manifest["settings"]["stops"] == 7 and manifest["provenance"]["rendered"] == []
    trial = manifest["trials"][0]
    assert len(trial["samples"]) == 7 and set(trial["families"]) == {"pci", "caa", "austeer"}
    by_variant = {s["variant"]: s for s in trial["samples"].values()}
    caa = by_variant["caa"]
    assert caa["alphas"] == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0] and caa["flat"] == {"pos": False, "neg": True}
    assert caa["files"][:4] == [trial["center"]] * 4  # a flat side repeats the α = 0 loop
    assert [s["source"] for s in caa["stops"]] == ["baseline"] * 4 + ["sweep"] * 3
    assert by_variant["pci"]["alphas"] == [-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0]
    sae = by_variant["sae_localized"]
    assert sae["alphas"] == [-1.5, -1.0, -0.5, 0.0, 1.0, 2.0, 3.0]
    # the automatic metrics of the sample's own stops: δ = 0.01 α per unit, d = 0.1 |α|
    assert sae["stops"][6]["align_clap"] == pytest.approx(0.23) and sae["stops"][0]["preservation"] == pytest.approx(0.15)
    assert sae["metrics"]["preservation"] == pytest.approx(np.mean([0.15, 0.1, 0.05, 0.1, 0.2, 0.3]))
    assert sae["metrics"]["smooth_clap"] == pytest.approx(0.0, abs=1e-9)  # linear curve: perfectly smooth
    # every file exists, loops share one length and play the stop's own clip
    public = bundle / "public"
    lengths = {len(read_mono(public / f)[0]) for s in trial["samples"].values() for f in s["files"]}
    assert lengths == {SR - fade_length(SR, 0.05, SR)}
    assert trial["loop_seconds"] == pytest.approx((SR - 800) / SR)
    z, _ = read_mono(public / sae["files"][6])
    spectrum = np.abs(np.fft.rfft(z))
    assert np.argmax(spectrum) * SR / len(z) == pytest.approx(220 * 1.15, abs=2)  # α = 3 -> 253 Hz


def test_nothing_public_names_a_method(bundle):
    manifest = read_manifest(bundle)
    public = bundle / "public"
    assert sorted(p.name for p in public.iterdir()) == ["audio", "crossfade.js", "index.html", "study.js", "style.css"]
    texts = [p.read_text() for p in public.glob("*.*")] + [json.dumps(public_plan(manifest, PARTICIPANT))]
    texts += [p.name for p in (public / "audio").iterdir()]
    words = set(VARIANTS) | {"sae", "localized", "ablated", "global"}
    for text in texts:
        found = {w for w in words if re.search(rf"\b{w}\b", text)}
        assert not found, found
    assert not re.search(r"variant|family|alpha", texts[-1 - len(list((public / "audio").iterdir()))])
    assert not (public / "manifest.json").exists()


def test_plans_are_stable_per_participant_and_draw_whole_families(tmp_path):
    bundle = make_bundle(tmp_path, families_per_trial=2)
    manifest = read_manifest(bundle)
    plan = participant_plan(manifest, PARTICIPANT)
    assert plan == participant_plan(manifest, PARTICIPANT)
    orders = {tuple(p["trial"] for p in participant_plan(manifest, f"{i:08d}-0000-4000-8000-000000000000"))
              for i in range(20)}
    assert len(orders) == 2  # both trial orders occur
    seen_families = set()
    for i in range(20):
        for entry in participant_plan(manifest, f"{i:08d}-0000-4000-8000-000000000000"):
            trial = next(t for t in manifest["trials"] if t["id"] == entry["trial"])
            variants = [trial["samples"][s]["variant"] for s in entry["samples"]]
            assert len(variants) == 5 and "sae_localized" in variants
            families = {v.removesuffix("_localized") for v in variants} - {"sae"}
            assert len(families) == 2 and all(f in variants and f"{f}_localized" in variants for f in families)
            seen_families.add(frozenset(families))
    assert len(seen_families) == 3  # every pair of the three families gets drawn


# ----- stops the sweeps lack: rendered by the sweep code --------------------------------------------
def test_missing_stops_are_rendered_like_the_sweeps(tmp_path, monkeypatch):
    from tada.evaluate.sweep import SweepClips, run_sweep, sweep_rows
    from tada.methods import Unsteered, build_variant
    from tada.study.bundle import SweepRenderer
    from tiny_embedded import tiny_model

    monkeypatch.setattr("tada.models.embedded._vocode",
                        lambda feats: np.tanh(np.asarray(feats, np.float32).reshape(len(feats), 1, -1)))
    model = tiny_model(batch_size=4, steps=4)
    concept = load_concepts().steering("tempo")
    results = tmp_path / "results" / "embedded"
    prompts = pd.DataFrame({"prompt_id": ["p000"], "prompt": ["a calm melody"], "seed": [3], "role": ["eval"]})
    settings = {"steps": 4, "batch_size": 4}
    run_sweep(model, Unsteered(), sweep_rows(prompts, None, [0.0]), results / "sweeps" / "none", progress=False, **settings)
    pci = build_variant("pci")
    # the sweep has α = ±1 and ±4 of PCI's grid [1, 3, 4]; ±3 are missing
    run_sweep(model, pci, sweep_rows(prompts, concept, [-4.0, -1.0, 1.0, 4.0]), results / "sweeps" / "tempo" / "pci",
              progress=False, **settings)
    (results / "calibration").mkdir(parents=True)
    (results / "calibration" / "tempo.json").write_text(json.dumps({"concept": "tempo", "cutoff": {}, "variants": {}}))
    renderer = SweepRenderer(load_model=lambda: model, make_variant=lambda name, c: build_variant(name),
                             settings=SweepClips(results / "sweeps" / "none").meta["settings"],
                             baseline_dir=results / "sweeps" / "none")
    out = tmp_path / "bundle"
    manifest = build_bundle(out, results_dir=results, prompts=prompts, concepts=load_concepts(),
                            variants=["pci", "caa"], renderer=renderer,
                            study={**STUDY, "concepts": ["tempo"], "always": ["pci"], "audio_format": "wav"})
    sample = next(iter(manifest["trials"][0]["samples"].values()))
    assert sample["alphas"] == [-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 4.0]
    assert [s["source"] for s in sample["stops"]] == ["sweep", "rendered", "sweep", "baseline", "sweep", "rendered", "sweep"]
    assert manifest["provenance"]["rendered"] == ["tempo/pci"]
    # the rendered stop is the clip a sweep of that α makes
    ref = run_sweep(model, pci, sweep_rows(prompts, concept, [3.0]), tmp_path / "ref", progress=False, **settings)
    x = SweepClips(tmp_path / "ref").audio()[0]
    loop, _ = read_mono(out / "public" / sample["files"][5])
    expected = seamless_loop(x, fade_length(len(x), STUDY["loop_crossfade"], model.sample_rate))
    np.testing.assert_allclose(loop, np.clip(expected, -1, 1), atol=2 / 32768)
    assert len(ref) == 1
    # without a renderer a missing stop is an error that names it
    with pytest.raises(FileNotFoundError, match="tempo/pci lacks the study's stops"):
        build_bundle(tmp_path / "b2", results_dir=results, prompts=prompts, concepts=load_concepts(),
                     variants=["pci"], study={**STUDY, "concepts": ["tempo"], "always": ["pci"]})
