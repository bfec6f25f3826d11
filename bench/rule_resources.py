"""Size every rule's memory and run time from the benchmark files of a measured run, and count
the jobs a cluster run submits.

Every job of the workflow leaves ``benchmarks/<model>/<rule>/<job>.tsv`` (Snakemake's
``benchmark:`` directive: wall seconds and peak RSS). This script reads them, sizes each rule
(formula in tada/resources.py), writes the sizes to rules/resources.yaml (which the rules
declare as ``mem_mb`` and ``runtime``) and the "Rule resources" section of BENCHMARKS.md. It also
dry-runs the default DAG and counts the jobs that go to the cluster (``rule``) and those run on
the submitting host (``localrule``).

    .venv/bin/python bench/rule_resources.py [--benchmarks benchmarks/embedded] [--model embedded]
        [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_section  # noqa: E402
from tada.resources import read_benchmarks, resources_markdown, size_resources, write_resources  # noqa: E402

START, END = "<!-- rule_resources:start -->", "<!-- rule_resources:end -->"


def local_rules() -> set[str]:
    """Rules marked ``localrule: True`` in rules/*.smk (a dry run does not show which run locally)."""
    found = set()
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=(?:rule|checkpoint) )", path.read_text())[1:]:
            if re.search(r"(?m)^    localrule: True$", block):
                found.add(re.match(r"(?:rule|checkpoint) (\w+)", block).group(1))
    return found | {"all"}


def dag_counts(snakemake: str) -> tuple[Counter, Counter]:
    """Jobs per rule of the default DAG's dry run: (submitted, local)."""
    out = subprocess.run([snakemake, "-n", "--cores", "1", "--forceall"], cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    local_names = local_rules()
    submitted, local = Counter(), Counter()
    for rule in re.findall(r"(?m)^(?:rule|checkpoint) (\w+):$", out.stdout):
        (local if rule in local_names else submitted)[rule] += 1
    local.pop("all", None)
    return submitted, local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--benchmarks", default=None, help="default benchmarks/<model>")
    parser.add_argument("--resources", default=str(ROOT / "rules" / "resources.yaml"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    folder = Path(args.benchmarks or ROOT / "benchmarks" / args.model)
    sizes = size_resources(read_benchmarks(folder))
    table = resources_markdown(sizes)
    submitted, local = dag_counts(str(Path(sys.executable).parent / "snakemake"))
    n_sub, n_local = sum(submitted.values()), sum(local.values())
    date = dt.date.today().isoformat()
    # A run made in another checkout (a fresh clone) is named by its place inside that checkout.
    where = (folder.relative_to(ROOT) if folder.is_relative_to(ROOT)
             else f"{Path(*folder.parts[-2:])}` of a fresh clone's `make run")
    lines = [
        "## Rule resources",
        "",
        f"Measured {date} on {platform.machine()} ({platform.node() or 'this machine'}), model `{args.model}`, from "
        f"`{where}` (one TSV per job; "
        "`bench/rule_resources.py`). mem_mb = 1.5 x the largest peak RSS (at least 512), runtime = 3 x the "
        "longest wall time (at least 2 min); written to `rules/resources.yaml`.",
        "",
        *table,
        "",
        f"Cluster submissions of the default DAG (dry run before the `layer_sets` checkpoint, so the "
        f"per-layer `sae_train` jobs are not counted): {n_sub} jobs go through sbatch, {n_local} run on the "
        f"submitting host as local rules (prompt tables, layer sets, AUSteer and SAE feature scores, CAA / "
        f"AUSteer / SAE vectors and their combinations, the layer choice); with every rule submitted it would be {n_sub + n_local}.",
        "",
        "| submitted rule | jobs |",
        "|---|---|",
        *[f"| {rule} | {n} |" for rule, n in sorted(submitted.items())],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_resources(args.resources, args.model, {r: {"mem_mb": v["mem_mb"], "runtime": v["runtime"]}
                                                      for r, v in sizes.items()},
                        source=f"{str(where).replace('`', '')}, {date}")
        replace_section(ROOT / "BENCHMARKS.md", START, END, text)


if __name__ == "__main__":
    main()
