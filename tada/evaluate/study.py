"""The evaluation rule: every sweep's scores -> the paper's tables and figures.

Outputs (under ``results/<model>/evaluation/``):

* ``per_alpha.csv`` (single concepts) and ``per_alpha_combinations.csv``: the tables' inputs;
* ``table1.md`` (method variants averaged over concepts), ``table2.md`` (localized vs global),
  ``bottleneck.md`` (CAA global / localized / ablated per concept), ``table3.md``
  (multi-concept), ``per_concept.md``, with CSVs beside them (:mod:`.tables`);
* ``responds.csv`` (does the model do the concept: PCI's gain at |α| = T), ``cutoffs.csv``,
  ``quality.md`` (Fréchet distance per variant and α bucket), ``descriptors.md`` (table 8);
* ``curves.png``, ``sheets/<concept>.png``, ``descriptors.png``, ``heatmap.png``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tada.io import write_csv, write_text

from . import collect
from .figures import plot_curves, plot_descriptor_scatter, plot_sweep_sheet
from .scores import read_scores
from .sweep import SweepClips
from .tables import markdown_table, write_tables

log = logging.getLogger(__name__)


def _fmt(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.3f}"


def quality_markdown(fd: pd.DataFrame) -> str:
    """quality.md: per variant and α bucket, the change steering caused in the per-clip distance
    to the reference (5-NN) and in the Fréchet distance, both against the unsteered counterparts
    of the same clips; the unsteered row gives its absolute values (collect.frechet_quality)."""
    sizes = fd.pivot(index="method", columns="bucket", values="n")

    def block(column: str, none_column: str) -> str:
        value = fd[column].where(fd["method"] != "none", fd[none_column])
        table = fd.assign(value=value).pivot(index="method", columns="bucket", values="value")

        def cell(m: str, b: int) -> str:
            x = table.loc[m, b]
            return "-" if not np.isfinite(x) else f"{x:+.3f} ({int(sizes.loc[m, b])})"

        return markdown_table(["method", *[f"bucket {b}" for b in table.columns]],
                              [[m, *[cell(m, b) for b in table.columns]] for m in table.index])

    return ("Audio quality in the CLAP audio-embedding space, per α bucket (clips per cell in brackets). "
            "Audiobox Aesthetics is not configured, so no CE/CU/PC/PQ columns; quality.csv has every raw value.\n\n"
            "**Per-clip distance to the reference** (mean distance to the 5 nearest reference clips). Steered "
            "rows: the change steering caused against the α = 0 clips of the same prompts and seeds (0 = "
            "unchanged; higher = farther from real clips). Row `none`: the unsteered clips' own value.\n\n"
            + block("knn_delta", "knn")
            + "\n**Fréchet distance to the reference.** Steered rows: FD(clips) − FD(their α = 0 counterparts); "
            "row `none`: FD in excess of as many reference clips (0 = as close as real clips). With few "
            "evaluation prompts a bucket's FD mostly measures its spread: steered buckets are more varied "
            "than their counterparts (the same few clips repeated), so a negative change here is not better "
            "audio.\n\n" + block("delta", "excess"))


def bottleneck_markdown(per_concept: pd.DataFrame, scorer: str, family: str = "caa") -> str:
    names = [family, f"{family}_localized", f"{family}_ablated"]
    col = f"auc_{scorer}"
    rows = []
    for concept in dict.fromkeys(per_concept["concept"]):
        f = per_concept[per_concept["concept"] == concept].set_index("method")
        rows.append([concept] + [_fmt(float(f.loc[n, col])) if n in f.index else "-" for n in names])
    return (f"AUC ({scorer}) of {family.upper()} on all layers, the functional layers and all but them.\n\n"
            + markdown_table(["concept", *names], rows))


def evaluate_study(*, results: str | Path, out_dir: str | Path, steering: Sequence[str], variants: Sequence[str],
                   combinations: Mapping[str, Sequence[tuple[str, int]]], combination_variants: Sequence[str],
                   prompts: pd.DataFrame, cutoff_from: Sequence[str], steps: int, sheet_prompts: int = 1,
                   heatmap: str | Path | None = None) -> dict[str, Any]:
    results, out = Path(results), Path(out_dir)
    base_scores, base_emb = read_scores(results / "scores" / "none" / "scores.csv")
    eval_ids = list(prompts.loc[prompts["role"] == "eval", "prompt_id"])
    scores, embs = {}, {}
    for c in steering:
        for v in variants:
            frame, emb = read_scores(results / "scores" / c / v / "scores.csv")
            scores[(v, c)], embs[(v, c)] = frame, (frame, emb)
    per_alpha = collect.per_alpha(scores, base_scores, eval_ids)
    write_csv(out / "per_alpha.csv", per_alpha)
    scorers = list(dict.fromkeys(c.split("__")[0] for c in base_scores.columns if c.startswith("align_")))
    primary = scorers[0][len("align_"):]
    pci = {c: scores[(cutoff_from[0], c)] for c in steering if (cutoff_from[0], c) in scores}
    responds = collect.responds(pci, base_scores, int(steps), primary)
    write_csv(out / "responds.csv", responds)

    combo_frame, terms = None, None
    if combinations and combination_variants:
        rows = []
        for name, t in combinations.items():
            for v in combination_variants:
                frame, emb = read_scores(results / "scores" / name / v / "scores.csv")
                embs[(v, name)] = (frame, emb)
                base = base_scores.copy()
                base["alpha"] = 0.0
                both = pd.concat([base, frame], ignore_index=True)
                both = both[both["prompt_id"].isin(eval_ids)]
                cols = ["preservation"] + [f"{s}__{c}" for s in scorers for c, _ in t]
                mean = both.groupby("alpha", as_index=False)[cols].mean()
                mean.insert(0, "combination", name)
                mean.insert(0, "method", v)
                rows.append(mean)
        combo_frame = pd.concat(rows, ignore_index=True)
        terms = {k: [(c, int(s)) for c, s in t] for k, t in combinations.items()}
        write_csv(out / "per_alpha_combinations.csv", combo_frame)

    res = write_tables(per_alpha, out, cutoff_from=list(cutoff_from), responds=responds, source=str(out / "per_alpha.csv"),
                       combinations=combo_frame, terms=terms)
    shutil.copyfile(res["files"]["average_md"], out / "table1.md")
    shutil.copyfile(res["files"]["relative_gain_md"], out / "table2.md")
    if "combinations_md" in res["files"]:
        shutil.copyfile(res["files"]["combinations_md"], out / "table3.md")
    else:
        write_text(out / "table3.md", "No multi-concept combinations were swept.\n")
    write_text(out / "bottleneck.md", bottleneck_markdown(res["per_concept"], primary))

    reference = np.load(out / "reference_embeddings.npy")
    fd = collect.frechet_quality({k: v for k, v in embs.items() if k[1] in steering},
                                 (base_scores[base_scores["prompt_id"].isin(eval_ids)],
                                  base_emb[base_scores["prompt_id"].isin(eval_ids).to_numpy()]), reference)
    write_csv(out / "quality.csv", fd)
    write_text(out / "quality.md", quality_markdown(fd))

    clips = {c: pd.concat([collect.baseline_for(base_scores, c)] + [scores[(v, c)] for v in variants],
                          ignore_index=True) for c in steering}
    corr = collect.descriptor_correlation(clips)
    write_csv(out / "descriptors.csv", corr)
    write_text(out / "descriptors.md", "Pearson r of alignment scores with external descriptors, all clips of "
               "each concept.\n\n" + markdown_table(
                   ["concept", "scorer", "descriptor", "r", "n"],
                   [[r.concept, r.scorer, r.descriptor, _fmt(r.pearson_r), r.n] for r in corr.itertuples()]))

    plot_curves(per_alpha, res["cutoffs"], out / "curves.png", scorer=primary, methods=list(variants))
    plot_descriptor_scatter(clips, out / "descriptors.png", scorer=primary)
    _sheets(results, out / "sheets", steering, variants, eval_ids[: max(0, int(sheet_prompts))])
    if heatmap and Path(heatmap).exists():
        shutil.copyfile(heatmap, out / "heatmap.png")
    return res


def _sheets(results: Path, out: Path, steering: Sequence[str], variants: Sequence[str],
            prompt_ids: Sequence[str]) -> None:
    """One sheet per concept (and sheet prompt): rows = variants, columns = α stops."""
    from tada.world.features import log_mel

    out.mkdir(parents=True, exist_ok=True)
    base = SweepClips(results / "sweeps" / "none")
    for c in steering:
        for pid in prompt_ids:
            b_rows = [i for i, p in enumerate(base.index["prompt_id"]) if p == pid]
            b_mel = _mels(base, b_rows, log_mel)[0]
            sheet = {}
            for v in variants:
                sweep = SweepClips(results / "sweeps" / c / v)
                rows = [i for i, p in enumerate(sweep.index["prompt_id"]) if p == pid]
                mels = _mels(sweep, rows, log_mel)
                sheet[v] = [(0.0, b_mel)] + [(float(sweep.index["alpha"].iloc[i]), m) for i, m in zip(rows, mels)]
            plot_sweep_sheet(sheet, out / f"{c}.png" if len(prompt_ids) == 1 else out / f"{c}_{pid}.png",
                             title=f"{c}, prompt {pid}")


def _mels(sweep: SweepClips, rows: list[int], log_mel) -> list[np.ndarray]:
    feats = sweep.features(rows)
    if feats is not None:
        return list(feats)
    return [log_mel(a, sr=sweep.sample_rate) for a in sweep.audio(rows)]
