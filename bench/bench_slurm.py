"""Wall time of a one-concept slice of the study through SLURM against the same slice run locally.

Starts the single-node test cluster (tests/slurm/cluster.sh; Debian's slurm-wlm + slurmdbd),
runs the slice of tests/slurm/workflow_slice.py (prompts -> activation cache -> localization ->
one CAA vector) three times in fresh working directories: locally (`--cores 2`), through
`--profile profiles/slurm` as tests/test_slurm.py runs it (first status check 2 s after a
submission), and through the profile with the executor plugin's own polling (first check after
40 s), then prints the table and writes the "Cluster runs (SLURM)" section of BENCHMARKS.md.

    .venv/bin/python bench/bench_slurm.py [--no-write] [--keep-cluster]

Needs root and `bash tests/slurm/cluster.sh install`. Uses the cluster in $TADA_SLURM_DIR when
one is running there, else starts one in a temporary directory and stops it at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "slurm"))

import workflow_slice as ws  # noqa: E402

from tada.io import replace_section  # noqa: E402

SECTION_START = "<!-- bench_slurm:start -->"
SECTION_END = "<!-- bench_slurm:end -->"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} CPU cores ({cpu}), {mem_kb / 1024 ** 2:.0f} GiB RAM, shared with other jobs"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    text = res.stdout + res.stderr
    if res.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{text[-4000:]}")
    return wall, text


def sacct_elapsed(env: dict[str, str], job_ids: list[str]) -> dict[str, float]:
    """Seconds each job ran (sacct ElapsedRaw), and waited from submission to start."""
    if not job_ids:
        return {}
    out = subprocess.run(["sacct", "-X", "--parsable2", "--noheader", "-j", ",".join(job_ids),
                          "--format=JobIdRaw,ElapsedRaw,Submit,Start"],
                         env=env, capture_output=True, text=True, check=True).stdout
    ran, waited = 0.0, 0.0
    for line in out.splitlines():
        _, elapsed, submit, start = line.split("|")
        ran += float(elapsed)
        waited += (dt.datetime.fromisoformat(start) - dt.datetime.fromisoformat(submit)).total_seconds()
    return {"ran": ran, "waited": waited}


def script_seconds(work: Path, rules: list[str]) -> float | None:
    """Wall seconds the scripts of these rules took, summed over their jobs, from the benchmark
    files the rules leave (benchmarks/<model>/<rule>/<job>.tsv); None without such files."""
    total, found = 0.0, False
    for rule in rules:
        for tsv in (work / "benchmarks" / "embedded" / rule).glob("*.tsv"):
            lines = tsv.read_text().splitlines()
            if len(lines) >= 2:
                total += float(dict(zip(lines[0].split("\t"), lines[1].split("\t")))["s"])
                found = True
    return total if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a cluster this script started running")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    given = os.environ.get("TADA_SLURM_DIR")
    started = False
    if given and ws.cluster("status", Path(given)).returncode == 0:
        state = Path(given)
    else:
        state = scratch / "cluster"
        res = ws.cluster("start", state)
        if res.returncode != 0:
            raise SystemExit(f"cluster.sh start failed:\n{res.stdout}{res.stderr}")
        started = True
    try:
        env = ws.cluster_env(state)
        partition = env["TADA_SLURM_PARTITION"]
        profile = ws.make_profile(scratch / "profile")
        slurm_version = subprocess.run(["sinfo", "--version"], env=env, capture_output=True,
                                       text=True).stdout.strip()
        rows = []
        runs = [
            ("local, `--cores 2`", ws.local_cmd()),
            ("SLURM profile, first status check after 2 s (as in tests/test_slurm.py)",
             ws.slurm_cmd(profile, partition)),
            ("SLURM profile, the plugin's polling (first check after 40 s)",
             ws.slurm_cmd(profile, partition, plugin_args=[])),
        ]
        for i, (name, cmd) in enumerate(runs):
            work = ws.make_workdir(scratch / f"run{i}")
            wall, text = timed(cmd, work, env)
            jobs = ws.submitted_jobs(text)
            blocks = ws.job_blocks(text)
            acct = sacct_elapsed(env, list(jobs))
            rules = sorted(set(jobs.values()))
            rows.append({"run": name, "wall": wall, "jobs": len(blocks), "sbatch": len(jobs),
                         "rules": rules, "script": script_seconds(work, rules), **acct})
            print(f"{name}: {wall:.1f} s, {len(blocks)} jobs, {len(jobs)} sbatch submissions", flush=True)
    finally:
        if started and args.keep_cluster:
            print(f"cluster left running: TADA_SLURM_DIR={state}", file=sys.stderr)
        else:
            if started:
                ws.cluster("stop", state)
            shutil.rmtree(scratch, ignore_errors=True)

    base = rows[0]["wall"]
    versions = {p: md.version(p) for p in ("snakemake", "snakemake-executor-plugin-slurm",
                                           "snakemake-executor-plugin-slurm-jobstep")}
    lines = [
        "## Cluster runs (SLURM)",
        "",
        f"`bench/bench_slurm.py`, {dt.date.today().isoformat()}. Machine: {machine()}. "
        f"Single-node test cluster of tests/slurm/cluster.sh ({slurm_version}, slurmdbd on MariaDB, "
        f"one node with all {os.cpu_count()} cores); snakemake {versions['snakemake']}, "
        f"snakemake-executor-plugin-slurm {versions['snakemake-executor-plugin-slurm']}, "
        f"snakemake-executor-plugin-slurm-jobstep {versions['snakemake-executor-plugin-slurm-jobstep']}.",
        "",
        f"Slice: target `{ws.TARGET}` on tests/slurm/workflow_slice.py's config (steering concept "
        f"`{ws.STEERING}`, localization concept `{ws.LOCALIZATION}`, 4 base prompts, 4 pairs, one seed, "
        "4 sampler steps, 1 thread per job). One run each, in a fresh working directory; outputs of the "
        "runs are equal (tests/test_slurm.py).",
        "",
        "`in SLURM` = the submitted jobs' run time by sacct (ElapsedRaw, summed over the jobs, which "
        "run side by side); `scripts` = the part of it spent in the rules' scripts (their benchmark "
        "files); `queued` = submission to start, summed.",
        "",
        "| run | wall s | ratio to local | jobs | sbatch submissions (rules) | in SLURM, s | scripts, s | queued, s |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        subs = f"{r['sbatch']} ({', '.join(r['rules'])})" if r["sbatch"] else "0"
        ran = f"{r['ran']:.0f}" if r["sbatch"] else ""
        waited = f"{r['waited']:.0f}" if r["sbatch"] else ""
        script = f"{r['script']:.1f}" if r["sbatch"] and r["script"] is not None else ""
        lines.append(f"| {r['run']} | {r['wall']:.1f} | {r['wall'] / base:.2f}x | {r['jobs']} | {subs} | "
                     f"{ran} | {script} | {waited} |")
    slurm = rows[1]
    startup = (f" ({slurm['ran'] - slurm['script']:.0f} of the {slurm['ran']:.0f} s in SLURM here)"
               if slurm["script"] is not None else "")
    lines += [
        "",
        "Reading the numbers: only the jobs that run the model go through sbatch; the others are local "
        "rules, run by the Snakemake process itself. Each SLURM job first starts a Snakemake of its own "
        "on the node (parsing the workflow, importing torch) before its script runs" + startup + "; the "
        "rest of the gap to the local run is the executor's polling: it looks at the jobs' states after "
        "the first interval, then every 10 s longer while nothing finishes (up to 180 s). Both costs "
        "come per job, not per unit of work, so they weigh less the longer each job runs (minutes to "
        "hours on a real model).",
        "",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", SECTION_START, SECTION_END, text)
        print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
