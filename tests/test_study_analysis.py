"""The study's analysis on a synthetic ratings file whose answer is known, malformed lines
reported by number, and the workflow's study rules in a dry run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tada.study.analysis import analyse
from tada.study.ratings import read_ratings

ROOT = Path(__file__).resolve().parents[1]
T_975_3 = 3.182446305284263  # t quantile 0.975, 3 degrees of freedom
VARIANTS = ["sae_localized", "caa", "caa_localized", "pci", "pci_localized"]


def _row(p: int, scores: dict[str, int], listened: dict[str, bool] | None = None) -> dict:
    """One submission of participant p on trial piano-p000; quality = seamless, smoothness = 6 − seamless."""
    samples = []
    for k, v in enumerate(VARIANTS):
        s = scores[v]
        family, _, loc = v.partition("_")
        samples.append({"sample": f"s{k}", "sample_index": k, "variant": v, "family": family,
                        "layer_set": loc or "global", "alphas": [0.0] * 7, "visited": [3],
                        "listened": (listened or {}).get(v, True), "seamless": s, "quality": s,
                        "smoothness": 6 - s})
    return {"participant": f"p{p}", "trial": "piano-p000", "trial_index": 0, "skill": 2 if p < 2 else 5,
            "concept": "piano", "prompt_id": "p000", "prompt": "a song", "samples": samples}


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    lines = []
    for p in range(4):
        caa = 2 + p % 2  # 2, 3, 2, 3
        scores = {"sae_localized": 5, "caa": caa, "caa_localized": caa + 1, "pci": 3, "pci_localized": 3}
        # participant 3 did not play pci_localized: its (absurd) rating must not count
        listened = {"pci_localized": False} if p == 3 else None
        if p == 3:
            scores["pci_localized"] = 1
        lines.append(json.dumps(_row(p, scores, listened)))
    lines.insert(2, "{this is not json")                                   # line 3
    lines.insert(4, json.dumps({"participant": "p9", "trial": "t"}))       # line 5: fields missing
    lines.append(json.dumps(_row(0, {v: 1 for v in VARIANTS})))           # line 7: repeats line 1
    lines.append("")                                                       # a blank line is no row
    path = tmp_path_factory.mktemp("ratings") / "ratings.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _manifest() -> dict:
    auc = {"sae_localized": 0.5, "caa": 0.1, "caa_localized": 0.2, "pci": 0.3, "pci_localized": 0.4}
    return {"trials": [{"id": "piano-p000", "samples": {
        f"x{k}": {"variant": v, "metrics": {"auc_clap": auc[v], "smooth_clap": None, "preservation": 0.1 * k}}
        for k, v in enumerate(VARIANTS)}}]}


def test_malformed_lines_are_reported_by_number(ratings):
    rows, problems = read_ratings(ratings)
    assert [r["participant"] for r in rows] == ["p0", "p1", "p2", "p3"]
    assert [n for n, _ in problems] == [3, 5, 7]
    assert "not JSON" in problems[0][1] and "missing" in problems[1][1] and "line 1" in problems[2][1]


def test_analysis_known_answer(ratings, tmp_path):
    result = analyse(ratings, tmp_path, _manifest())
    kept = result["kept"]
    assert len(kept) == 4 * 5 - 1  # one sample not listened to
    means = result["means"].set_index("variant")
    assert means.loc["caa", "seamless_mean"] == pytest.approx(2.5)
    half = T_975_3 * np.std([2, 3, 2, 3], ddof=1) / 2
    assert means.loc["caa", "seamless_low"] == pytest.approx(2.5 - half)
    assert means.loc["caa", "seamless_high"] == pytest.approx(2.5 + half)
    assert means.loc["caa_localized", "quality_mean"] == pytest.approx(3.5)
    assert means.loc["pci_localized", "seamless_mean"] == pytest.approx(3.0)  # the unplayed 1 is out
    assert means.loc["pci_localized", "n"] == 3
    assert means.loc["sae_localized", "smoothness_mean"] == pytest.approx(1.0)
    fam = result["family_means"].set_index("family")
    assert fam.loc["caa", "seamless_mean"] == pytest.approx(3.0) and fam.loc["caa", "n"] == 8

    pref = result["preference"].set_index(["family", "scale"])
    caa = pref.loc[("caa", "seamless")]
    assert caa["pairs"] == 4 and caa["localized_better"] == 1.0 and caa["tie"] == 0.0
    assert caa["mean_difference"] == pytest.approx(1.0) and caa["sign_test_p"] == pytest.approx(0.125)
    assert pref.loc[("caa", "smoothness"), "standard_better"] == 1.0
    pci = pref.loc[("pci", "quality")]
    assert pci["pairs"] == 3 and pci["tie"] == 1.0 and np.isnan(pci["sign_test_p"])
    assert "sae" not in pref.index.get_level_values(0)

    skill = result["by_skill"].set_index(["skill", "variant"])
    assert skill.loc[(2, "caa"), "seamless_mean"] == pytest.approx(2.5)
    assert skill.loc[(5, "caa_localized"), "seamless_mean"] == pytest.approx(3.5)

    corr = result["correlations"].set_index(["a", "b"])
    assert corr.loc[("seamless", "quality"), "spearman"] == pytest.approx(1.0)
    assert corr.loc[("seamless", "smoothness"), "spearman"] == pytest.approx(-1.0)
    assert corr.loc[("seamless", "auc_clap"), "n"] == 19 and corr.loc[("seamless", "auc_clap"), "kind"] == "automatic"
    assert np.isnan(corr.loc[("quality", "smooth_clap"), "spearman"])  # no metric values
    for name in ["summary.md", "means.md", "preference.md", "by_skill.md", "correlations.md", "means.png",
                 "preference.png", "correlations.png", "problems.csv", "ratings_long.csv"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert pd.read_csv(tmp_path / "problems.csv")["line"].tolist() == [3, 5, 7]
    summary = (tmp_path / "summary.md").read_text()
    assert "malformed lines: 3 (lines 3, 5, 7)" in summary and "dropped as not listened: 1" in summary


def test_cli_analyse(ratings, tmp_path):
    from tada.cli import main

    assert main(["study", "analyse", "--ratings", str(ratings), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "means.md").exists()


def test_workflow_builds_the_bundle_and_analyses_existing_ratings(tmp_path):
    """Dry run: the default DAG has the bundle; with a ratings file it also has the analysis."""
    work = tmp_path
    (work / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    for src in (ROOT / "data").rglob("*"):
        if src.is_file():
            dst = work / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for f in [v for v in config["prompts"].values() if isinstance(v, str)]:
        if not (work / f).exists():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            (work / f).write_text("ytid,caption\n" if f.endswith(".csv") else "a song\n")
    ratings = work / "results" / "embedded" / "study" / "ratings.jsonl"
    ratings.parent.mkdir(parents=True)
    ratings.write_text("")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--nolock", "-n"]
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rule study_bundle:" in res.stdout and "rule study_analysis:" in res.stdout
    job = res.stdout[res.stdout.index("rule study_bundle:"):]
    job = job[:job.index("\n\n")]
    for c in ("piano", "vocal_gender", "tempo"):
        assert f"results/embedded/calibration/{c}.json" in job
    assert "results/embedded/sweeps/piano/sae_localized/index.csv" in job
    assert "caa_ablated" not in job
