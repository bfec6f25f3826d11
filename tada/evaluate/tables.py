"""The evaluation tables from a per-alpha CSV: read and check it, compute the protocol
(:mod:`tada.evaluate.protocol`), write CSV and Markdown tables atomically.

Files written by :func:`write_tables` into the output folder:

* ``cutoffs.csv``: concept, direction, cutoff, set_by;
* ``per_concept.csv`` / ``per_concept.md``: one row per (method, concept), every metric
  (``.md``: AUC and smoothness per scorer and quality, "†" after a concept that does not respond);
* ``average.csv`` / ``average.md``: per method, mean ± standard error over concepts;
* ``relative_gain.csv`` / ``relative_gain.md``: table 2, localized over global variants;
* ``combinations.csv`` / ``combinations.md`` when combination data is passed (table 3).

Numbers are printed with three decimals, NaN as "-".
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tada.io import write_csv, write_text

from . import protocol as P

EXPECTED = ("method, concept, alpha, preservation, align_<scorer> (one or more), "
            "optional quality_<axis> (e.g. quality_CE, quality_PQ)")
DAGGER = "†"

Responds = Mapping[str, bool] | pd.DataFrame | pd.Series | None


# ----- input ----------------------------------------------------------------------------------------

def validate_per_alpha(frame: pd.DataFrame, source: str = "per-alpha data") -> pd.DataFrame:
    """Check a per-alpha frame and return a clean copy (numeric columns as floats, method and
    concept as strings). Every problem is a ValueError naming the column and `source`."""
    cols = [str(c) for c in frame.columns]
    missing = [c for c in P.REQUIRED_COLUMNS if c not in cols]
    if missing:
        unknown = [c for c in cols if c not in P.REQUIRED_COLUMNS]
        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, unknown, n=1, cutoff=0.7)
            if close:
                hints.append(f"'{close[0]}' looks like a misspelling of '{c}'")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)}{hint}; expected columns: {EXPECTED}; "
                         f"found: {', '.join(cols)}")
    if not P.scorer_names(frame):
        raise ValueError(f"{source}: no alignment column: expected at least one 'align_<scorer>' column "
                         f"(expected columns: {EXPECTED}; found: {', '.join(cols)})")
    out = frame.copy()
    for c in ("method", "concept"):
        if out[c].isna().any():
            raise ValueError(f"{source}: column '{c}' has empty values")
        out[c] = out[c].astype(str)
    numeric = ["alpha", "preservation"] + [c for c in cols if c.startswith(("align_", "quality_"))]
    for c in numeric:
        values = pd.to_numeric(out[c], errors="coerce")
        bad = values.isna() & out[c].notna()
        if bad.any():
            raise ValueError(f"{source}: column '{c}' has non-numeric values, e.g. {out[c][bad].iloc[0]!r}")
        out[c] = values.astype(float)
    if out["alpha"].isna().any():
        raise ValueError(f"{source}: column 'alpha' has empty values")
    dup = out.duplicated(["method", "concept", "alpha"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"{source}: several rows for method {r['method']}, concept {r['concept']}, "
                         f"alpha {r['alpha']:g}; expected one row per (method, concept, alpha)")
    has_zero = out.assign(z=out["alpha"] == 0).groupby(["method", "concept"], sort=False)["z"].any()
    if not has_zero.all():
        lacking = ", ".join(f"{m}/{c}" for m, c in has_zero[~has_zero].index[:5])
        raise ValueError(f"{source}: no alpha = 0 row (the unsteered baseline) for {lacking}")
    return out


def read_per_alpha(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a per-alpha CSV (:func:`validate_per_alpha`; errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such per-alpha CSV")
    return validate_per_alpha(pd.read_csv(path), source=str(path))


def responds_map(responds: Responds) -> dict[str, bool]:
    """{concept: responds} from a mapping, a Series, or a frame with columns concept and
    responds (several rows of a concept, e.g. one per scorer: it responds only if all say so)."""
    if responds is None:
        return {}
    if isinstance(responds, pd.DataFrame):
        for c in ("concept", "responds"):
            if c not in responds.columns:
                raise ValueError(f"responds table: missing column '{c}' (expected concept, responds)")
        pairs = zip(responds["concept"], responds["responds"])
    else:
        pairs = dict(responds).items()
    out: dict[str, bool] = {}
    for concept, flag in pairs:
        if isinstance(flag, str):
            if flag.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"responds table: {concept}: not a boolean: {flag!r}")
            flag = flag.strip().lower() in ("true", "1", "yes")
        out[str(concept)] = out.get(str(concept), True) and bool(flag)
    return out


# ----- formatting -----------------------------------------------------------------------------------

def fmt(x: Any, digits: int = 3) -> str:
    """A number with `digits` decimals, "-" for NaN/None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return f"{v:.{digits}f}" if np.isfinite(v) else "-"


def fmt_pm(mean: Any, se: Any, digits: int = 3) -> str:
    """"mean ± se"; "-" when the mean is NaN, the mean alone when the SE is (one concept)."""
    m = fmt(mean, digits)
    if m == "-":
        return m
    s = fmt(se, digits)
    return m if s == "-" else f"{m} ± {s}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table. Written here rather than with ``DataFrame.to_markdown``: that needs
    `tabulate`, which happens to be installed in the dev venv but is no declared dependency of the
    package (nor of the workflow's environment), and the tables must render the same everywhere."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = [cell(h) for h in header]
    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(head)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *[line(r) for r in body]]) + "\n"


def _columns(scorers: Sequence[str], has_quality: bool) -> list[tuple[str, str]]:
    """(metric column, header) pairs of the reported table."""
    cols = [(f"auc_{s}", f"AUC ({s})") for s in scorers]
    cols += [(f"smooth_{s}", f"Smoothness ({s})") for s in scorers]
    if has_quality:
        cols.append(("quality", "Quality"))
    return cols


def per_concept_markdown(table: pd.DataFrame, scorers: Sequence[str], has_quality: bool,
                         responds: Mapping[str, bool], cutoff_from: Sequence[str]) -> str:
    """The per-concept table as Markdown (concept, method rows)."""
    cols = _columns(scorers, has_quality)
    rows = []
    for _, r in table.iterrows():
        name = r["concept"] + (DAGGER if responds.get(r["concept"], True) is False else "")
        rows.append([name, r["method"], *[fmt(r[c]) for c, _ in cols]])
    text = (f"Per concept (mean of the two directions; \"-\": undefined in a direction). Cutoff per "
            f"concept and direction: the smallest of the largest preservation distances of "
            f"{', '.join(cutoff_from)}.\n\n")
    text += markdown_table(["Concept", "Method", *[h for _, h in cols]], rows)
    flagged = [c for c in dict.fromkeys(table["concept"]) if responds.get(c, True) is False]
    if flagged:
        text += f"\n{DAGGER} The model does not respond to this concept (still averaged).\n"
    return text


def average_markdown(avg: pd.DataFrame, scorers: Sequence[str], has_quality: bool,
                     responds: Mapping[str, bool], concepts: Sequence[str]) -> str:
    """The concept-averaged table as Markdown (method rows, "mean ± SE")."""
    cols = _columns(scorers, has_quality)
    rows = [[r["method"], *[fmt_pm(r[c], r[f"{c}_se"]) for c, _ in cols]] for _, r in avg.iterrows()]
    text = f"Mean ± standard error over {len(concepts)} concepts (NaN skipped).\n\n"
    text += markdown_table(["Method", *[h for _, h in cols]], rows)
    notes = []
    for _, r in avg.iterrows():
        short = [f"{h} over {int(r[f'{c}_n'])}" for c, h in cols if int(r[f"{c}_n"]) < len(concepts)]
        if short:
            notes.append(f"- {r['method']}: {', '.join(short)} of {len(concepts)} concepts (the rest undefined).")
    flagged = [c for c in concepts if responds.get(c, True) is False]
    if flagged:
        notes.append(f"- {DAGGER} The model does not respond to: {', '.join(flagged)} (still averaged).")
    return text + ("\n" + "\n".join(notes) + "\n" if notes else "")


def relative_gain_markdown(gain: pd.DataFrame) -> str:
    """Table 2 as Markdown: one row per family, gain % ± SE % per AUC metric."""
    metrics = list(dict.fromkeys(gain["metric"]))
    rows = []
    for (glob, loc), g in gain.groupby(["global", "localized"], sort=False):
        by = g.set_index("metric")
        rows.append([glob, loc, *[fmt_pm(by.loc[m, "gain_pct"], by.loc[m, "gain_se_pct"], 1)
                                  if m in by.index else "-" for m in metrics]])
    text = ("Relative gain (%) of the localized variant's concept-averaged AUC over the global one; "
            "± the SE of the per-concept difference, in % of the global mean.\n\n")
    text += markdown_table(["Global", "Localized", *[f"Gain {m} (%)" for m in metrics]], rows)
    uneven = gain[(gain["n_global"] != gain["n_localized"]) | (gain["n_pairs"] != gain["n_global"])]
    notes = [f"- {r['localized']} vs {r['global']}, {r['metric']}: means over {r['n_localized']} and "
             f"{r['n_global']} concepts, SE over the {r['n_pairs']} concepts where both are defined."
             for _, r in uneven.iterrows()]
    return text + ("\n" + "\n".join(notes) + "\n" if notes else "")


def combinations_markdown(table: pd.DataFrame, scorers: Sequence[str]) -> str:
    """Table 3 as Markdown: (combination, method) rows, AUC (mean over constituents) per scorer."""
    rows = [[r["combination"], r["method"], fmt(r["cutoff"]), *[fmt(r.get(f"auc_{s}")) for s in scorers]]
            for _, r in table.iterrows()]
    text = ("Multi-concept AUC: per constituent with its sign, then the mean over constituents. "
            "Preservation cutoff = the smallest of the constituents' cutoffs (each in the direction "
            "its term steers).\n\n")
    return text + markdown_table(["Combination", "Method", "Cutoff", *[f"AUC ({s})" for s in scorers]], rows)


# ----- everything -----------------------------------------------------------------------------------

def write_tables(per_alpha: pd.DataFrame, out_dir: str | os.PathLike, cutoff_from: Sequence[str] | None = None,
                 responds: Responds = None, source: str = "per-alpha data",
                 pairs: Sequence[tuple[str, str]] | None = None, combinations: pd.DataFrame | None = None,
                 terms: Mapping[str, P.Terms] | None = None) -> dict[str, Any]:
    """Check `per_alpha` (errors name `source`), compute every table and write them to `out_dir`.

    `cutoff_from`: methods setting the cutoff (default: names starting with "pci"); `responds`:
    concept -> bool flags (see :func:`responds_map`); `pairs`: (global, localized) pairs of table 2
    (default: "X" and "X_localized" both present); `combinations` + `terms`: the multi-concept
    data and combination -> [(concept, ±1)] (:func:`tada.evaluate.protocol.combination_auc`).

    Returns {"cutoffs", "per_concept", "average", "relative_gain"[, "combinations",
    "combination_average"]: DataFrame, "files": {name: Path}}.
    """
    frame = validate_per_alpha(per_alpha, source)
    out = Path(out_dir)
    names = list(cutoff_from) if cutoff_from else P.default_cutoff_methods(frame)
    flags = responds_map(responds)
    scorers, has_quality = P.scorer_names(frame), bool(P.quality_axes(frame))
    concepts = list(dict.fromkeys(frame["concept"]))

    cut = P.cutoffs(frame, names)
    table = P.per_concept(frame, cut)
    if flags:
        table.insert(2, "responds", [flags.get(c, True) for c in table["concept"]])
    avg = P.average_over_concepts(table.drop(columns=["responds"], errors="ignore"))
    gain = P.relative_gain(table, pairs)
    result: dict[str, Any] = {"cutoffs": cut, "per_concept": table, "average": avg, "relative_gain": gain}
    files = {"cutoffs": out / "cutoffs.csv", "per_concept": out / "per_concept.csv",
             "per_concept_md": out / "per_concept.md", "average": out / "average.csv",
             "average_md": out / "average.md", "relative_gain": out / "relative_gain.csv",
             "relative_gain_md": out / "relative_gain.md"}
    write_csv(files["cutoffs"], cut)
    write_csv(files["per_concept"], table)
    write_text(files["per_concept_md"], per_concept_markdown(table, scorers, has_quality, flags, names))
    write_csv(files["average"], avg)
    write_text(files["average_md"], average_markdown(avg, scorers, has_quality, flags, concepts))
    write_csv(files["relative_gain"], gain)
    write_text(files["relative_gain_md"], relative_gain_markdown(gain) if len(gain) else
               "No (X, X_localized) method pairs in the data.\n")
    if combinations is not None:
        if terms is None:
            raise ValueError("combination data given without its terms (combination -> [(concept, sign)])")
        combo = P.combination_auc(combinations, terms, cut)
        combo_scorers = [c[len("auc_"):] for c in combo.columns if c.startswith("auc_") and "__" not in c]
        result["combinations"] = combo
        result["combination_average"] = P.average_over_concepts(combo, unit="combination")
        files["combinations"] = out / "combinations.csv"
        files["combinations_md"] = out / "combinations.md"
        write_csv(files["combinations"], combo)
        write_text(files["combinations_md"], combinations_markdown(combo, combo_scorers))
    result["files"] = files
    return result
