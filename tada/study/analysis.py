r"""The study's analysis: a ratings file -> tables and figures.

Input: the ratings file (JSON Lines, :mod:`.ratings`; malformed lines are reported by number in
``problems.csv`` and in the log, never dropped silently) and the bundle's manifest (the
automatic metrics of each sample's own clips). One analysed row per (participant, trial,
sample); only rows with listened = true are kept (the others are counted in ``summary.md``).

* **Means** (``means.csv``/``.md``, ``means.png``): per method family and per variant, per scale
  (Seamless Edit, Audio Quality, Smoothness): mean m, n and the 95% interval
  m ± t₀.₉₇₅,ₙ₋₁ · sd/√n (sd with ddof = 1; none for n < 2). Ratings are taken as independent.
* **Localized vs standard** (``preference.csv``/``.md``, ``preference.png``): for every family
  whose standard and localized samples were both rated (listened) in the same (participant,
  trial), per scale: the share of pairs where the localized variant got the higher / equal /
  lower score, the mean difference Δ = localized − standard with its 95% interval, and the
  two-sided sign test on the non-tied pairs (binomial, p = ½).
* **By skill** (``by_skill.csv``/``.md``): the means per skill level (1–5) and variant.
* **Correlations** (``correlations.csv``/``.md``, ``correlations.png``): Spearman ρ (with n and
  p) between the three scales over the rated samples, and between each scale and each automatic
  metric of the sample's own stops (``auc_<scorer>``, ``smooth_<scorer>``: higher AUC = more
  concept per unit of distortion, lower smoothness value = smoother; ``preservation``: mean LPAPS
  of the steered stops), from the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tada.evaluate.tables import markdown_table
from tada.figures import _pyplot
from tada.io import atomic_path, write_csv, write_text

from .ratings import SCALE_NAMES, SCALES, read_ratings

log = logging.getLogger(__name__)


def long_table(rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per (participant, trial, sample), with the sample's automatic metrics (``auto_*``)."""
    metrics = {}
    for t in (manifest or {}).get("trials", []):
        for s in t["samples"].values():  # by variant: a rebuilt bundle has new sample ids
            metrics[(t["id"], s["variant"])] = s.get("metrics") or {}
    out = []
    for r in rows:
        for s in r["samples"]:
            rec = {"line": r.get("line"), "participant": r["participant"], "trial": r["trial"],
                   "trial_index": r["trial_index"], "skill": r["skill"], "concept": r["concept"],
                   "prompt_id": r["prompt_id"], "sample": s["sample"], "sample_index": s.get("sample_index"),
                   "variant": s["variant"], "family": s["family"], "layer_set": s["layer_set"],
                   "listened": bool(s["listened"]), "visited": len(s.get("visited", [])),
                   **{n: int(s[n]) for n in SCALES}}
            for k, v in metrics.get((r["trial"], s["variant"]), {}).items():
                rec[f"auto_{k}"] = np.nan if v is None else float(v)
            out.append(rec)
    return pd.DataFrame(out)


def interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the 95% t interval of the mean (low = high = NaN for n < 2)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    m = float(v.mean())
    if n < 2:
        return m, float("nan"), float("nan"), n
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return m, m - half, m + half, n


def means(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean, 95% interval and n of every scale per group of `by`."""
    rows = []
    for key, g in frame.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rec = dict(zip(by, key))
        for s in SCALES:
            m, lo, hi, n = interval(g[s])
            rec.update({f"{s}_mean": m, f"{s}_low": lo, f"{s}_high": hi})
        rec["n"] = n
        rows.append(rec)
    return pd.DataFrame(rows)


def preference(frame: pd.DataFrame) -> pd.DataFrame:
    """Localized vs standard of each family on identical (participant, trial) (module doc)."""
    from scipy import stats

    pairs = frame[frame["layer_set"].isin(["global", "localized"])]
    rows = []
    for family, g in pairs.groupby("family", sort=True):
        wide = g.pivot_table(index=["participant", "trial"], columns="layer_set", values=list(SCALES), aggfunc="first")
        if "global" not in wide.columns.get_level_values(1) or "localized" not in wide.columns.get_level_values(1):
            continue
        for s in SCALES:
            both = wide[s].dropna(subset=["global", "localized"])
            diff = (both["localized"] - both["global"]).to_numpy(dtype=float)
            n = diff.size
            if n == 0:
                continue
            wins, ties, losses = int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())
            m, lo, hi, _ = interval(diff)
            p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else float("nan")
            rows.append({"family": family, "scale": s, "pairs": n, "localized_better": wins / n, "tie": ties / n,
                         "standard_better": losses / n, "mean_difference": m, "difference_low": lo,
                         "difference_high": hi, "sign_test_p": p})
    return pd.DataFrame(rows, columns=["family", "scale", "pairs", "localized_better", "tie", "standard_better",
                                       "mean_difference", "difference_low", "difference_high", "sign_test_p"])


def correlations(frame: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ between the scales, and between each scale and each automatic metric."""
    from scipy import stats

    autos = [c for c in frame.columns if c.startswith("auto_")]
    rows = []
    pairs = [(a, b) for i, a in enumerate(SCALES) for b in SCALES[i + 1:]] + [(s, m) for s in SCALES for m in autos]
    for a, b in pairs:
        sub = frame[[a, b]].astype(float).dropna()
        n = len(sub)
        if n >= 3 and sub[a].nunique() > 1 and sub[b].nunique() > 1:
            res = stats.spearmanr(sub[a], sub[b])
            rho, p = float(res.statistic), float(res.pvalue)
        else:
            rho, p = float("nan"), float("nan")
        rows.append({"a": a, "b": b.removeprefix("auto_"), "kind": "automatic" if b in autos else "scales",
                     "spearman": rho, "p": p, "n": n})
    return pd.DataFrame(rows, columns=["a", "b", "kind", "spearman", "p", "n"])


def _fmt(x: Any, digits: int = 2) -> str:
    if isinstance(x, (float, np.floating)):
        return "-" if not np.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def _means_md(table: pd.DataFrame, by: Sequence[str]) -> str:
    head = [*by, *(SCALE_NAMES[s] for s in SCALES), "n"]
    rows = [[*(r[k] for k in by), *(f"{_fmt(r[f'{s}_mean'])} [{_fmt(r[f'{s}_low'])}, {_fmt(r[f'{s}_high'])}]"
                                     for s in SCALES), r["n"]] for _, r in table.iterrows()]
    return markdown_table(head, rows)


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_means(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SCALES), figsize=(3.6 * len(SCALES), 0.35 * len(table) + 1.6), sharey=True)
    y = np.arange(len(table))
    for ax, s in zip(np.atleast_1d(axes), SCALES):
        m = table[f"{s}_mean"].to_numpy(float)
        err = np.vstack([m - table[f"{s}_low"].to_numpy(float), table[f"{s}_high"].to_numpy(float) - m])
        ax.errorbar(m, y, xerr=np.nan_to_num(err), fmt="o", ms=4, capsize=3)
        ax.set_xlim(1, 5)
        ax.set_title(SCALE_NAMES[s], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    np.atleast_1d(axes)[0].set_yticks(y, table["variant"])
    np.atleast_1d(axes)[0].invert_yaxis()
    _save(fig, path)


def plot_preference(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * max(len(table), 1) + 1.4))
    labels = [f"{r.family}: {SCALE_NAMES[r.scale]}" for r in table.itertuples()]
    left = np.zeros(len(table))
    for col, color, name in (("localized_better", "#2e7d32", "localized better"), ("tie", "#bdbdbd", "tie"),
                             ("standard_better", "#c62828", "standard better")):
        v = table[col].to_numpy(float) if len(table) else np.zeros(0)
        ax.barh(np.arange(len(table)), v, left=left, color=color, label=name)
        left += v
    ax.set_yticks(np.arange(len(table)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of (participant, trial) pairs", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def plot_correlations(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    rows = list(SCALES)
    cols = list(dict.fromkeys([*SCALES, *table["b"]]))
    grid = np.full((len(rows), len(cols)), np.nan)
    for r in table.itertuples():
        for a, b in ((r.a, r.b), (r.b, r.a)):
            if a in rows and b in cols:
                grid[rows.index(a), cols.index(b)] = r.spearman
    for i, s in enumerate(rows):
        grid[i, cols.index(s)] = 1.0
    fig, ax = plt.subplots(figsize=(0.9 * len(cols) + 2, 2.6))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(cols)), [SCALE_NAMES.get(c, c) for c in cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [SCALE_NAMES[s] for s in rows], fontsize=8)
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="Spearman ρ")
    _save(fig, path)


def analyse(ratings: str | Path, out_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every table and figure of the module doc into `out_dir`; returns the tables."""
    out = Path(out_dir)
    rows, problems = read_ratings(ratings)
    if problems:
        log.warning("%s: %d malformed line(s), left out: %s", ratings, len(problems),
                    "; ".join(f"line {n}: {why}" for n, why in problems[:20]))
    write_csv(out / "problems.csv", pd.DataFrame(problems, columns=["line", "reason"]))
    frame = long_table(rows, manifest)
    if frame.empty:
        raise ValueError(f"{ratings}: no rating rows to analyse ({len(problems)} malformed line(s))")
    kept = frame[frame["listened"]].reset_index(drop=True)
    if kept.empty:
        raise ValueError(f"{ratings}: no sample was listened to")
    write_csv(out / "ratings_long.csv", kept)
    by_family, by_variant = means(kept, ["family"]), means(kept, ["family", "variant"])
    skill = means(kept, ["skill", "variant"])
    pref, corr = preference(kept), correlations(kept)
    write_csv(out / "means.csv", pd.concat([by_family.assign(variant="all"), by_variant], ignore_index=True))
    write_csv(out / "preference.csv", pref)
    write_csv(out / "by_skill.csv", skill)
    write_csv(out / "correlations.csv", corr)
    write_text(out / "means.md", "Mean rating (1–5) with 95% interval, per method family and per variant.\n\n"
               + _means_md(by_family, ["family"]) + "\n" + _means_md(by_variant, ["family", "variant"]))
    write_text(out / "preference.md", "Localized against standard variant on identical (participant, trial).\n\n"
               + markdown_table(["family", "scale", "pairs", "localized better", "tie", "standard better",
                                 "Δ [95%]", "sign test p"],
                                [[r.family, SCALE_NAMES[r.scale], r.pairs, _fmt(r.localized_better),
                                  _fmt(r.tie), _fmt(r.standard_better),
                                  f"{_fmt(r.mean_difference)} [{_fmt(r.difference_low)}, {_fmt(r.difference_high)}]",
                                  _fmt(r.sign_test_p, 3)] for r in pref.itertuples()]))
    write_text(out / "by_skill.md", "Mean rating per musical skill level (1–5) and variant.\n\n"
               + _means_md(skill, ["skill", "variant"]))
    write_text(out / "correlations.md", "Spearman correlations between the scales and with the automatic "
               "metrics of each sample's own clips.\n\n"
               + markdown_table(["a", "b", "ρ", "p", "n"],
                                [[SCALE_NAMES.get(r.a, r.a), SCALE_NAMES.get(r.b, r.b), _fmt(r.spearman),
                                  _fmt(r.p, 3), r.n] for r in corr.itertuples()]))
    participants = kept["participant"].nunique()
    write_text(out / "summary.md", "\n".join([
        f"Ratings file: {ratings}", "",
        f"- rows (participant, trial): {len(rows)}; malformed lines: {len(problems)}"
        + (f" (lines {', '.join(str(n) for n, _ in problems)})" if problems else ""),
        f"- rated samples: {len(frame)}; listened: {len(kept)}; dropped as not listened: {len(frame) - len(kept)}",
        f"- participants: {participants}; trials: {kept['trial'].nunique()}", ""]))
    plot_means(by_variant, out / "means.png")
    plot_preference(pref, out / "preference.png")
    plot_correlations(corr, out / "correlations.png")
    return {"means": by_variant, "family_means": by_family, "preference": pref, "by_skill": skill,
            "correlations": corr, "problems": problems, "kept": kept}
