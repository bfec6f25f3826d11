"""A one-concept slice of the default study, run locally or through the SLURM profile.

Shared by tests/test_slurm.py and bench/bench_slurm.py. The slice is the target
``results/embedded/vectors/caa/localized/tempo.safetensors`` on a small copy of config.yaml:
steering concept `tempo` (contrastive prompts -> activation cache -> CAA vector on the
localized layers) and localization concept `fast_tempo` (counterfactual pairs -> activation
patching -> functional layers), 4 base prompts, 4 pairs, one seed, 4 sampler steps.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
CLUSTER_SH = ROOT / "tests" / "slurm" / "cluster.sh"
PROFILE = ROOT / "profiles" / "slurm"

TARGET = "results/embedded/vectors/caa/localized/tempo.safetensors"
STEERING, LOCALIZATION = "tempo", "fast_tempo"
#: outputs of the localization job, the one the cancellation test kills
LOCALIZE_OUTPUTS = [f"results/embedded/localize/{LOCALIZATION}/{name}"
                    for name in ("impact.csv", "raw.csv", "summary.json")]
LOCALIZE_LOG = f"logs/embedded/localize/{LOCALIZATION}.log"
#: what is built from the localization on the way to TARGET (Snakemake, like make, rebuilds a
#: deleted intermediate file only when something downstream of it is missing or older)
LOCALIZE_DOWNSTREAM = ["results/embedded/localize/layers.json", "results/embedded/localize/heatmap.png",
                       "results/embedded/vectors/layer_sets.json", TARGET]

#: resources of every slice job on the test cluster (the profile's are sized for a GPU node)
TEST_RESOURCES = ["mem_mb=2000", "runtime=10"]
#: the plugin's first status check comes 40 s after a submission by default
TEST_PLUGIN_ARGS = ["--slurm-init-seconds-before-status-checks", "2"]


def make_workdir(work: Path) -> Path:
    """A working directory with the slice's config.yaml and links to the repository's data."""
    work.mkdir(parents=True, exist_ok=True)
    for src in (ROOT / "data").rglob("*"):
        if src.is_file():
            dst = work / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                dst.symlink_to(src)
    bases = [line for line in (ROOT / "data/prompts/base_prompts.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    (work / "small_base_prompts.txt").write_text("\n".join(bases[:4]) + "\n")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["model"] = "embedded"
    cfg["models"] = {"embedded": {**cfg["models"]["embedded"], "device": "cpu", "steps": 4,
                                  "batch_size": 8, "duration": 2.0}}
    cfg["prompts"].update(base_prompts="small_base_prompts.txt", max_pairs=4)
    cfg["concepts"] = {"steering": [STEERING], "localization": [LOCALIZATION], "combinations": False}
    cfg["cache"].update(seeds=[0], frame_steps=[])
    cfg["localize"].update(seeds=[0], max_pairs=4)
    cfg["steering"]["methods"] = ["caa"]
    # One thread per job: the two model jobs run side by side on two cores, locally and in SLURM.
    cfg["threads"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return work


def make_profile(dest: Path) -> Path:
    """profiles/slurm, less its `software-deployment-method` (there is no conda here: the jobs
    use the Python environment that runs Snakemake). Every other key is the repository's."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    profile.pop("software-deployment-method", None)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def snakemake_cmd(*args: str) -> list[str]:
    # --workflow-profile none: Snakemake would otherwise add profiles/default (found next to
    # the Snakefile) to any run, on top of the profile given.
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--workflow-profile", "none",
            *args]


def local_cmd(target: str = TARGET) -> list[str]:
    return snakemake_cmd(target, "--cores", "2")


def slurm_cmd(profile: Path, partition: str, target: str = TARGET,
              plugin_args: list[str] = TEST_PLUGIN_ARGS) -> list[str]:
    """The slice through the profile; on the command line only what the test cluster needs
    otherwise: its partition, small jobs, and (plugin_args) quicker first status checks."""
    return snakemake_cmd(target, "--profile", str(profile),
                         "--default-resources", f"slurm_partition={partition}", *TEST_RESOURCES,
                         *plugin_args)


def cluster_env(state_dir: Path) -> dict[str, str]:
    """The environment of the client commands: SLURM_CONF etc. from the cluster's env.sh."""
    env = dict(os.environ)
    for line in (state_dir / "env.sh").read_text().splitlines():
        m = re.match(r'export (\w+)="(.*)"$', line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


def cluster(action: str, state_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "TADA_SLURM_DIR": str(state_dir)}
    return subprocess.run(["bash", str(CLUSTER_SH), action], env=env, capture_output=True,
                          text=True, timeout=timeout)


def sacct_rows(env: dict[str, str]) -> list[dict[str, str]]:
    """Every job the cluster's accounting knows: JobIdRaw, State, JobName, Comment."""
    fields = ["JobIdRaw", "State", "JobName", "Comment"]
    out = subprocess.run(["sacct", "-X", "--allusers", "--parsable2", "--noheader",
                          "--starttime", "2000-01-01", f"--format={','.join(fields)}"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]


def submitted_jobs(output: str) -> dict[str, str]:
    """{SLURM job id: rule} of the jobs a Snakemake run submitted, from its output.

    A submission names the Snakemake job id ("Job 3 has been submitted with SLURM jobid 17"),
    which is matched to the rule block that printed "jobid: 3": blocks of jobs submitted together
    are printed before their submission lines, so the order alone does not pair them."""
    rule_of = {b["jobid"]: b["rule"] for b in job_blocks(output) if b["jobid"]}
    jobs = {}
    for line in output.splitlines():
        m = re.search(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line)
        if m:
            jobs[m.group(2)] = rule_of.get(m.group(1))
    return jobs


def job_blocks(output: str) -> list[dict[str, str]]:
    """The jobs a Snakemake run started, from its output: rule, local (bool), log, wildcards, jobid."""
    blocks, current = [], None
    for line in output.splitlines():
        m = re.match(r"^(local)?(?:rule|checkpoint) (\w+):$", line.strip())
        if m:
            current = {"rule": m.group(2), "local": bool(m.group(1)), "log": "", "wildcards": "", "jobid": ""}
            blocks.append(current)
            continue
        if current is not None:
            key, _, value = line.strip().partition(": ")
            if key in ("log", "wildcards", "jobid"):
                current[key] = value.split(",")[0].strip() if key == "log" else value
    return blocks


def strip_timings(obj):
    """A JSON value without its `elapsed_s` entries (wall times differ between runs)."""
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if k != "elapsed_s"}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def read_json(path: Path):
    return json.loads(path.read_text())
