"""Summarize an evaluation run for BENCHMARKS.md: stage times and Tables 1-3.

    .venv/bin/python bench/evaluation_summary.py [--results results/embedded] [--log SNAKEMAKE_LOG]
        [--note TEXT] [--also LOG ...] [--write]

Stage times come from a Snakemake log (default: the newest under .snakemake/log that ran jobs): per rule, the
summed wall time of its jobs (start line to "Finished jobid"), and the run's wall time from its
first to its last timestamp; summed job time over wall time is how many jobs ran at once.
``--also`` names the logs of other runs of the same config: their wall times are listed with the
median over all runs, which is the number the time target is judged on, and the run's audio and
tables are compared byte for byte with theirs (the runs' folders are found from the logs'
places, ``<checkout>/.snakemake/log/``). (The
rules' `benchmark:` files are not used for CPU time: Snakemake samples a job's CPU time every 30 s,
so the last seconds of every job are missing from them.) Tables come from
``<results>/evaluation/`` (table1.md, table2.md, table3.md, bottleneck.md, quality.md, responds.csv). ``--write`` replaces the "## Evaluation" section's
"### Default run" block of BENCHMARKS.md and copies the run's curves and localization heatmap to
the README's figures (docs/figures/curves_<model>.png, localization_heatmap_<model>.png).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from tada.io import replace_subsection  # noqa: E402

TITLE = "### Default run of the evaluation"
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def rule_times(log: Path) -> tuple[dict[str, list[float]], float]:
    """Per rule: wall seconds of each job; and the run's wall seconds."""
    now, starts, rules, out = None, {}, {}, defaultdict(list)
    first = last = None
    pending_rule = None
    for line in log.read_text().splitlines():
        m = STAMP.match(line.strip())
        if m:
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or now
            last = now
            continue
        s = line.strip()
        if re.match(r"^(local)?(rule|checkpoint) \w+:$", s):
            pending_rule = s.split()[1].rstrip(":")
        elif s.startswith("jobid:") and pending_rule:
            jid = int(s.split()[1])
            starts[jid], rules[jid] = now, pending_rule
            pending_rule = None
        elif s.startswith("Finished jobid:"):
            jid = int(s.split()[2])
            if jid in starts and starts[jid] is not None and now is not None:
                out[rules[jid]].append((now - starts[jid]).total_seconds())
    return dict(out), (last - first).total_seconds() if first and last else float("nan")


SHORT_S = 4.0  # jobs this short are counted apart: their cost is more start-up than work
SAME_FILES = ("sweeps/**/*.flac", "calibration/*.json", "evaluation/*.csv")


def _digests(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for pattern in SAME_FILES for p in sorted(results.glob(pattern))}


def same_files(results: Path, other: Path) -> str:
    """How many of the run's sweep clips, calibrations and evaluation tables equal the other's."""
    mine, theirs = _digests(results), _digests(other)
    same = sum(theirs.get(k) == v for k, v in mine.items())
    return f"{same} of {len(mine)} identical" + ("" if len(theirs) == len(mine) else f" ({len(theirs)} files there)")


def summarize(results: Path, log: Path, note: str | None, also: list[Path] = ()) -> list[str]:
    times, wall = rule_times(log)
    lines = [note, ""] if note else []
    summed = sum(sum(v) for v in times.values())
    if also:
        lines += ["| run (Snakemake log) | jobs | wall, first to last job (min) | job time, summed (min) | "
                  f"files ({', '.join(SAME_FILES)}) vs the first row |", "|---|---|---|---|---|"]
        walls = []
        for i, path in enumerate((log, *also)):
            t, w = rule_times(path)
            walls.append(w)
            other = path.resolve().parents[2] / results.resolve().relative_to(results.resolve().parents[1])
            lines.append(f"| `{path.name}` | {sum(len(v) for v in t.values())} | {w / 60:.1f} | "
                         f"{sum(sum(v) for v in t.values()) / 60:.1f} | "
                         f"{'(the reference)' if i == 0 else same_files(results, other)} |")
        lines += ["", f"Median wall time over these {len(walls)} runs: **{pd.Series(walls).median() / 60:.1f} min**. "
                      f"The stage times and tables below are from the first row.", ""]
    lines.append(f"Snakemake log `{log.name}`: {sum(len(v) for v in times.values())} jobs, "
                 f"{wall / 60:.1f} min of wall time from first to last job; the jobs' times add up to "
                 f"{summed / 60:.1f} min, i.e. {summed / wall:.2f} jobs running at once on average.")
    short = [t for ts in times.values() for t in ts if t <= SHORT_S]
    lines.append(f"{len(short)} jobs took at most {SHORT_S:g} s each ({sum(short) / 60:.1f} min summed).")
    lines.append("")
    lines.append("| rule | jobs | job time, summed (min) | share of the summed time | median per job (s) |")
    lines.append("|---|---|---|---|---|")
    for rule, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| {rule} | {len(ts)} | {sum(ts) / 60:.1f} | {sum(ts) / summed:.0%} | "
                     f"{pd.Series(ts).median():.0f} |")
    ev = results / "evaluation"
    for name, title in (("table1.md", "Table 1 (averaged over concepts)"), ("table2.md", "Table 2"),
                        ("bottleneck.md", "Bottleneck test"), ("table3.md", "Table 3"),
                        ("quality.md", "Quality")):
        path = ev / name
        if path.exists():
            lines += ["", f"**{title}** (`{path.relative_to(results.parents[1])}`)", "",
                      path.read_text().strip()]
    resp = ev / "responds.csv"
    if resp.exists():
        r = pd.read_csv(resp)
        lines += ["", "**Does the model respond to the concept** (PCI's alignment gain at |α| = T, mean ± SE):", ""]
        lines.append("; ".join(f"{x.concept} {x.pci_gain:+.3f} ± {x.pci_gain_se:.3f}"
                               f"{'' if x.responds else ' (no)'}" for x in r.itertuples()) + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default=str(ROOT / "results" / "embedded"))
    parser.add_argument("--log", default=None)
    parser.add_argument("--note", default=None)
    parser.add_argument("--also", nargs="*", default=[], help="logs of other runs of the same config")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    # The newest log that ran jobs (`make run` leaves a second, job-less log: the report's).
    ran = [p for p in sorted((ROOT / ".snakemake" / "log").glob("*.snakemake.log")) if "Finished jobid" in p.read_text()]
    log = Path(args.log) if args.log else (ran or [None])[-1]
    if log is None:
        parser.error("no Snakemake log with finished jobs under .snakemake/log; name one with --log")
    results = Path(args.results)
    lines = summarize(results, log, args.note, [Path(p) for p in args.also])
    print(TITLE)
    print("\n".join(lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", "## Evaluation", TITLE, lines)
        for source, name in ((results / "evaluation" / "curves.png", f"curves_{results.name}.png"),
                             (results / "localize" / "heatmap.png", f"localization_heatmap_{results.name}.png")):
            if source.exists():
                shutil.copyfile(source, ROOT / "docs" / "figures" / name)


if __name__ == "__main__":
    main()
