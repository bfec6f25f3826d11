"""The evaluation protocol on hand-computed examples (expected numbers worked out in comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tada.cli import main
from tada.evaluate import protocol as P
from tada.evaluate.tables import read_per_alpha, validate_per_alpha, write_tables


# ----- one curve ------------------------------------------------------------------------------------

def test_directions_and_delta():
    frame = pd.DataFrame({"alpha": [2.0, -1.0, 0.0, 1.0, -2.0], "preservation": [0.4, 0.2, 0.0, 0.2, 0.5]})
    sides = P.directions(frame)
    assert sides["pos"]["alpha"].tolist() == [0.0, 1.0, 2.0]
    assert sides["neg"]["alpha"].tolist() == [0.0, -1.0, -2.0]
    # δ = sign·(s − s0): neg direction, s = [0.5, 0.4], s0 = 0.5 -> [0, 0.1]
    assert P.delta([0.5, 0.4], 0.5, -1) == pytest.approx([0.0, 0.1])


def test_auc_interpolates_the_cutoff_point():
    # d = 0, .1, .2, .4; δ = 0, .1, .3, .5; cutoff .3 lies between .2 and .4:
    # δ_c = .3 + (.3 − .2)/(.4 − .2)·(.5 − .3) = .4
    # area = .1·(0 + .1)/2 + .1·(.1 + .3)/2 + .1·(.3 + .4)/2 = .005 + .02 + .035 = .06
    assert P.auc([0, 0.1, 0.2, 0.4], [0, 0.1, 0.3, 0.5], 0.3) == pytest.approx(0.06)
    # no point past the cutoff: plain trapezoid .005 + .02 + .2·(.3 + .5)/2 = .105
    assert P.auc([0, 0.1, 0.2, 0.4], [0, 0.1, 0.3, 0.5], 1.0) == pytest.approx(0.105)
    # only α = 0 inside plus the added point: δ_c = 1·(.3/.5) = .6, area = .3·.6/2 = .09
    assert P.auc([0, 0.5], [0, 1.0], 0.3) == pytest.approx(0.09)


def test_auc_nan_with_fewer_than_two_points():
    assert math.isnan(P.auc([0.0], [0.0], 0.3))
    assert math.isnan(P.auc([0.5, 0.6], [0.1, 0.2], 0.3))      # nothing inside, nothing to interpolate from
    assert math.isnan(P.auc([0, 0.1], [0, 0.1], float("nan")))  # no cutoff
    assert math.isnan(P.auc([0, np.nan], [0, 0.1], 1.0))        # the NaN point is dropped


def test_auc_negative_delta_is_not_clipped():
    # .1·(0 − .2)/2 + .1·(−.2 + .2)/2 = −.01 (clipping at 0 would give +.005)
    assert P.auc([0, 0.1, 0.2], [0, -0.2, 0.2], 1.0) == pytest.approx(-0.01)


def test_auc_point_back_inside_is_kept_after_the_added_point():
    # d = 0, .2, .5, .25 (|α| order), cutoff .3: first outside is .5, δ_c = .2 + (.1/.3)·.3 = .3;
    # K = (0,0) (.2,.2) (.3,.3) (.25,.3): .02 + .025 + (.25 − .3)·.3 = .03
    assert P.auc([0, 0.2, 0.5, 0.25], [0, 0.2, 0.5, 0.3], 0.3) == pytest.approx(0.03)


def test_smoothness_ramp_zigzag_and_no_peak():
    # linear ramp: δ/peak = 0, 1/3, 2/3, 1 -> equal steps, std 0
    assert P.smoothness([0, 0.1, 0.2, 0.3], [0, 0.1, 0.2, 0.3], 1.0) == pytest.approx(0.0, abs=1e-12)
    # zig-zag (last point past the cutoff is ignored): δ/.3 = 0, 2/3, 1/3, 1; steps 2/3, −1/3, 2/3;
    # mean 1/3, deviations 1/3, −2/3, 1/3 -> variance (1 + 4 + 1)/27 = 2/9 -> std √2/3
    got = P.smoothness([0, 0.1, 0.2, 0.3, 5.0], [0, 0.2, 0.1, 0.3, 10.0], 1.0)
    assert got == pytest.approx(math.sqrt(2) / 3)
    assert math.isnan(P.smoothness([0, 0.1, 0.2], [0, -0.1, -0.2], 1.0))   # no positive peak
    assert P.smoothness([0, 0.1], [0, 0.5], 1.0) == 0.0                     # one step: std 0
    assert math.isnan(P.smoothness([0, 2.0], [0, 0.5], 1.0))                # one point inside


def test_quality_interpolation():
    # points (unsorted) d = 1, 0, .5 with q = 3, 4, 3; cutoff 1.75 -> grid step 1.75/14 = .125;
    # grid values in [0, 1]: 0, .125, ..., 1 (9 values). On [0, .5] q = 4 − 2d: 4, 3.75, 3.5, 3.25, 3;
    # on (.5, 1] q = 3 (4 values). Mean = (17.5 + 12)/9
    assert P.quality([1.0, 0.0, 0.5], [3.0, 4.0, 3.0], 1.75) == pytest.approx(29.5 / 9)
    assert math.isnan(P.quality([0.5, 0.6], [3.0, 3.0], 0.3))  # no grid value in the measured range


# ----- cutoffs --------------------------------------------------------------------------------------

def curve(method, concept, alphas, d, s, **extra):
    return pd.DataFrame({"method": method, "concept": concept, "alpha": alphas, "preservation": d,
                         "align_clap": s, **extra})


def cutoff_frame():
    return pd.concat([
        # piano: pci reaches .5 (pos) and .6 (neg), pci_localized .4 and .8
        curve("pci", "piano", [-2, -1, 0, 1, 2], [0.6, 0.3, 0, 0.2, 0.5], [0.1] * 5),
        curve("pci_localized", "piano", [-1, 0, 1], [0.8, 0, 0.4], [0.1] * 3),
        curve("caa", "piano", [-1, 0, 1], [3.0, 0, 3.0], [0.1] * 3),   # not a cutoff method
        curve("caa", "violin", [-1, 0, 1], [0.3, 0, 0.3], [0.1] * 3),  # no PCI points for violin
    ], ignore_index=True)


def test_cutoff_is_min_over_pci_of_max_distance():
    cut = P.cutoffs(cutoff_frame()).set_index(["concept", "direction"])
    assert cut.loc[("piano", "pos"), "cutoff"] == pytest.approx(0.4)   # min(.5, .4)
    assert cut.loc[("piano", "pos"), "set_by"] == "pci_localized"
    assert cut.loc[("piano", "neg"), "cutoff"] == pytest.approx(0.6)   # min(.6, .8)
    assert cut.loc[("piano", "neg"), "set_by"] == "pci"
    assert math.isnan(cut.loc[("violin", "pos"), "cutoff"])


def test_cutoff_method_absent_is_an_error():
    with pytest.raises(ValueError, match=r"sae.*methods present: pci, pci_localized, caa"):
        P.cutoffs(cutoff_frame(), ["pci", "sae"])


# ----- input checks ---------------------------------------------------------------------------------

def test_missing_or_misnamed_column_names_column_and_file(tmp_path):
    path = tmp_path / "per_alpha.csv"
    curve("pci", "piano", [0, 1], [0, 0.1], [0.1, 0.2]).rename(
        columns={"preservation": "preservaton"}).to_csv(path, index=False)
    with pytest.raises(ValueError) as err:
        read_per_alpha(path)
    msg = str(err.value)
    assert str(path) in msg and "'preservation'" in msg and "preservaton" in msg
    assert "expected columns: method, concept, alpha, preservation" in msg
    curve("pci", "piano", [0, 1], [0, 0.1], [0.1, 0.2]).drop(columns="align_clap").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"per_alpha\.csv: no alignment column.*align_<scorer>"):
        read_per_alpha(path)


def test_missing_baseline_row_is_an_error():
    with pytest.raises(ValueError, match=r"x\.csv: no alpha = 0 row .*pci/piano"):
        validate_per_alpha(curve("pci", "piano", [1, 2], [0.1, 0.2], [0.1, 0.2]), "x.csv")


# ----- over concepts --------------------------------------------------------------------------------

def test_average_over_concepts_skips_nan():
    table = pd.DataFrame({"method": "caa", "concept": ["a", "b", "c", "d"], "auc_clap": [0.1, 0.2, np.nan, 0.3]})
    row = P.average_over_concepts(table).iloc[0]
    # finite values .1, .2, .3: mean .2, std(ddof=1) = √((.01 + 0 + .01)/2) = .1, SE = .1/√3
    assert row["auc_clap"] == pytest.approx(0.2)
    assert row["auc_clap_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert row["auc_clap_n"] == 3 and row["n_concepts"] == 4


def test_relative_gain():
    glob = [0.1, 0.2, 0.3, 0.2]
    loc = [0.15, 0.3, 0.45, np.nan]
    table = pd.DataFrame({"method": ["caa"] * 4 + ["caa_localized"] * 4, "concept": list("abcd") * 2,
                          "auc_clap": glob + loc, "auc_clap_pos": 0.0, "auc_clap_neg": 0.0})
    row = P.relative_gain(table).iloc[0]
    # mean global (.1 + .2 + .3 + .2)/4 = .2, mean localized (.15 + .3 + .45)/3 = .3 -> +50 %
    assert (row["global"], row["localized"], row["metric"]) == ("caa", "caa_localized", "auc_clap")
    assert row["gain_pct"] == pytest.approx(50.0)
    # differences on a, b, c: .05, .1, .15 -> mean .1, std(ddof=1) .05, SE .05/√3; in % of .2
    assert row["diff_mean"] == pytest.approx(0.1)
    assert row["diff_se"] == pytest.approx(0.05 / math.sqrt(3))
    assert row["gain_se_pct"] == pytest.approx(100 * 0.05 / math.sqrt(3) / 0.2)
    assert row["n_pairs"] == 3 and row["n_global"] == 4 and row["n_localized"] == 3


def test_combination_auc():
    frame = pd.DataFrame({
        "method": "caa", "combination": "piano+slower", "alpha": [2.0, 0.0, 3.0, 1.0],
        "preservation": [0.2, 0.0, 0.4, 0.1],
        "align_clap__piano": [0.3, 0.1, 0.4, 0.2],
        "align_clap__tempo": [0.3, 0.5, 0.1, 0.45],
    })
    cut = pd.DataFrame({"concept": ["piano", "piano", "tempo", "tempo"], "direction": ["pos", "neg"] * 2,
                        "cutoff": [0.3, 0.05, 0.1, 0.2]})
    row = P.combination_auc(frame, [("piano", 1), ("tempo", -1)], cut).iloc[0]
    # cutoff = min(piano pos .3, tempo neg .2) = .2 (tempo pos .1 is the wrong direction)
    assert row["cutoff"] == pytest.approx(0.2)
    # sorted by α: d = 0, .1, .2, .4. piano δ = 0, .1, .2, .3; the last inside point sits at the
    # cutoff, so nothing is added: .1·.1/2 + .1·(.1 + .2)/2 = .005 + .015 = .02
    assert row["auc_clap__piano"] == pytest.approx(0.02)
    # tempo (sign −1): δ = −(s − .5) = 0, .05, .2, .4 -> .1·.05/2 + .1·.25/2 = .0025 + .0125 = .015
    assert row["auc_clap__tempo"] == pytest.approx(0.015)
    assert row["auc_clap"] == pytest.approx(0.0175)


# ----- tables and CLI -------------------------------------------------------------------------------

def small_csv(path):
    frame = pd.concat([
        # pci: pos d = 0, .2, .4, s = .5, .6, .7; neg d = 0, .2, .4, s = .5, .45, .4
        curve("pci", "piano", [-2, -1, 0, 1, 2], [0.4, 0.2, 0, 0.2, 0.4], [0.4, 0.45, 0.5, 0.6, 0.7],
              quality_PQ=[6.0, 6.5, 7.0, 6.5, 6.0]),
        curve("caa", "piano", [-2, -1, 0, 1, 2], [0.6, 0.3, 0, 0.3, 0.6], [0.45, 0.5, 0.5, 0.55, 0.6],
              quality_PQ=[6.0, 6.5, 7.0, 6.5, 6.0]),
    ], ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def test_cli_end_to_end(tmp_path, capsys):
    src, out = tmp_path / "per_alpha.csv", tmp_path / "tables"
    small_csv(src)
    pd.DataFrame({"concept": ["piano"], "responds": [False]}).to_csv(tmp_path / "responds.csv", index=False)
    rc = main(["evaluate", "tables", "--input", str(src), "--out", str(out),
               "--responds", str(tmp_path / "responds.csv")])
    assert rc == 0
    for name in ("per_concept.csv", "per_concept.md", "average.csv", "average.md", "cutoffs.csv"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "per_concept.csv").set_index("method")
    # cutoff .4 both ways. pci pos: .2·(0 + .1)/2 + .2·(.1 + .2)/2 = .04; neg δ = 0, .05, .1 -> .02
    assert table.loc["pci", "auc_clap_pos"] == pytest.approx(0.04)
    assert table.loc["pci", "auc_clap"] == pytest.approx(0.03)
    assert "piano†" in (out / "per_concept.md").read_text()
    average = (out / "average.md").read_text()
    assert "| pci " in average and "0.030" in average and "does not respond to: piano" in average


def test_cli_bad_input_exits_1(tmp_path, capsys):
    src = tmp_path / "per_alpha.csv"
    small_csv(src)
    assert main(["evaluate", "tables", "--input", str(src), "--out", str(tmp_path / "o"),
                 "--cutoff-from", "pci,nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_write_tables_returns_frames_and_files(tmp_path):
    frame = small_csv(tmp_path / "x.csv")
    result = write_tables(frame, tmp_path / "o", cutoff_from=["pci"], source="x.csv")
    assert set(result["files"]) >= {"cutoffs", "per_concept", "average", "per_concept_md", "average_md"}
    assert all(p.is_file() for p in result["files"].values())
    avg = result["average"].set_index("method")
    assert avg.loc["pci", "auc_clap"] == pytest.approx(0.03)
    assert avg.loc["pci", "auc_clap_n"] == 1 and math.isnan(avg.loc["pci", "auc_clap_se"])
    assert "quality" in avg.columns


def test_write_tables_with_combinations(tmp_path):
    frame = small_csv(tmp_path / "x.csv")
    combos = pd.DataFrame({"method": "caa", "combination": "piano+piano", "alpha": [0.0, 1.0, 2.0],
                           "preservation": [0.0, 0.2, 0.4], "align_clap__piano": [0.5, 0.6, 0.7]})
    result = write_tables(frame, tmp_path / "o", combinations=combos,
                          terms={"piano+piano": [("piano", 1), ("piano", 1)]})
    # cutoff .4 (pci, pos); δ = 0, .1, .2 over d = 0, .2, .4: .2·.1/2 + .2·.3/2 = .04
    assert result["combinations"].iloc[0]["auc_clap"] == pytest.approx(0.04)
    assert "smallest of the constituents' cutoffs" in result["files"]["combinations_md"].read_text()
