"""Rule resources (memory, run time) sized from measured runs.

Every rule of the workflow has a ``benchmark:`` directive; Snakemake writes one TSV per job with
the job's wall time ``s`` (seconds) and peak resident memory ``max_rss`` (MB). For a rule r with
jobs j, measured on model m:

    mem_mb(r)  = max(min_mem_mb,  ceil(mem_margin  * max_j max_rss_j / 64) * 64)
    runtime(r) = max(min_runtime, ceil(time_margin * max_j s_j / 60))          (minutes)

The sizes are kept per model in ``rules/resources.yaml`` (written by ``bench/rule_resources.py``
from a run's ``benchmarks/<model>/`` folder) and declared by the rules as ``mem_mb`` and
``runtime``; a model without measured sizes gets the profile's ``default-resources``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from .io import write_text

#: margins over the largest measured job (memory grows with batch shapes; time with load)
MEM_MARGIN = 1.5
TIME_MARGIN = 3.0
MIN_MEM_MB = 512
MIN_RUNTIME = 2


def benchmark_path(model: str, rule: str, job: str = "all") -> str:
    """Where the ``benchmark:`` TSV of one job goes: ``benchmarks/<model>/<rule>/<job>.tsv``."""
    return f"benchmarks/{model}/{rule}/{job}.tsv"


def read_benchmarks(folder: str | os.PathLike) -> pd.DataFrame:
    """One row per job from the TSVs under ``folder/<rule>/``: rule, job, s, max_rss (MB).
    Values Snakemake could not measure (``-`` or NA for very short jobs) are NaN."""
    rows = []
    for path in sorted(Path(folder).glob("*/*.tsv")):
        table = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        for _, rec in table.iterrows():
            rows.append({"rule": path.parent.name, "job": path.stem,
                         "s": float(rec.get("s", math.nan)), "max_rss": float(rec.get("max_rss", math.nan))})
    if not rows:
        raise FileNotFoundError(f"{folder}: no benchmark files (<rule>/<job>.tsv) found")
    return pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss"])


def size_resources(jobs: pd.DataFrame, mem_margin: float = MEM_MARGIN, time_margin: float = TIME_MARGIN,
                   min_mem_mb: int = MIN_MEM_MB, min_runtime: int = MIN_RUNTIME) -> dict[str, dict[str, Any]]:
    """Per rule: ``mem_mb`` and ``runtime`` by the module's formula, with what they came from
    (``jobs``, ``max_rss_mb``, ``max_s``, ``median_s``)."""
    out: dict[str, dict[str, Any]] = {}
    for rule, group in jobs.groupby("rule", sort=True):
        rss = float(group["max_rss"].max(skipna=True)) if group["max_rss"].notna().any() else 0.0
        secs = float(group["s"].max(skipna=True)) if group["s"].notna().any() else 0.0
        out[str(rule)] = {
            "mem_mb": max(min_mem_mb, int(math.ceil(mem_margin * rss / 64.0)) * 64),
            "runtime": max(min_runtime, int(math.ceil(time_margin * secs / 60.0))),
            "jobs": int(len(group)),
            "max_rss_mb": round(rss, 1),
            "max_s": round(secs, 2),
            "median_s": round(float(group["s"].median(skipna=True)), 2) if group["s"].notna().any() else 0.0,
        }
    return out


def load_resources(path: str | os.PathLike, model: str) -> dict[str, dict[str, int]]:
    """The measured ``{rule: {mem_mb, runtime}}`` of `model` (empty when none were measured)."""
    p = Path(path)
    if not p.exists():
        return {}
    data = yaml.safe_load(p.read_text()) or {}
    rules = (data.get("models") or {}).get(model) or {}
    return {rule: {"mem_mb": int(v["mem_mb"]), "runtime": int(v["runtime"])} for rule, v in rules.items()}


def write_resources(path: str | os.PathLike, model: str, sizes: Mapping[str, Mapping[str, Any]],
                    source: str) -> None:
    """Replace `model`'s entry of the resources file (other models kept), atomically."""
    p = Path(path)
    data = (yaml.safe_load(p.read_text()) if p.exists() else None) or {}
    models = dict(data.get("models") or {})
    models[model] = {rule: dict(v) for rule, v in sorted(sizes.items())}
    head = ("# Rule resources per model, sized from measured runs (tada/resources.py has the formula).\n"
            "# Written by bench/rule_resources.py; do not edit by hand: measure again instead.\n")
    data = {"sources": {**(data.get("sources") or {}), model: source}, "models": models}
    write_text(p, head + yaml.safe_dump(data, sort_keys=False, width=100))


def resources_markdown(sizes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A Markdown table of the measured jobs and the sizes chosen from them."""
    lines = ["| rule | jobs | peak RSS (MB) | wall s: median / max | mem_mb | runtime (min) |",
             "|---|---|---|---|---|---|"]
    for rule, v in sorted(sizes.items()):
        lines.append(f"| {rule} | {v['jobs']} | {v['max_rss_mb']:.0f} | {v['median_s']:.1f} / {v['max_s']:.1f} | "
                     f"{v['mem_mb']} | {v['runtime']} |")
    return lines
