"""The SLURM profile (profiles/slurm) on a real single-node SLURM cluster.

The cluster is Debian's slurm-wlm 22.05 with slurmdbd (so that `sacct`, which the executor
plugin polls, answers), set up and torn down by tests/slurm/cluster.sh in a temporary state
directory. The slice is one concept of the default study (tests/slurm/workflow_slice.py):
prompts -> activation cache -> localization -> one CAA vector. It is run once locally and once
through `snakemake --profile profiles/slurm`, and the tests check that the jobs went through
sbatch, that the outputs equal the local run's, that each rule log holds its job's output,
that a rerun submits nothing, and that a job killed with scancel is redone by a plain rerun
without leaving outputs that look complete.

The last test needs no cluster: a stand-in `sbatch` records the command lines GPU rules get.

Needs root (the daemons run as root) and `bash tests/slurm/cluster.sh install`; skipped otherwise.
Set TADA_SLURM_DIR to a running cluster's state directory to use it instead of a fresh one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import workflow_slice as ws  # noqa: E402

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
NEEDED = ["sbatch", "sacct", "slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd"]
MISSING = [name for name in NEEDED if shutil.which(name, path=SBIN) is None]

SKIPS = [
    pytest.mark.skipif(bool(MISSING), reason=f"SLURM not installed ({', '.join(MISSING)} missing): "
                       "run `bash tests/slurm/cluster.sh install` as root"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0,
                       reason="the single-node SLURM test cluster runs its daemons as root"),
]


def needs_cluster(test):
    """Marks a test `slurm` and skips it where the test cluster cannot run."""
    for mark in (pytest.mark.slurm, *SKIPS):
        test = mark(test)
    return test


def run(cmd, cwd, env=None, timeout=600):
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    res.wall_s = time.perf_counter() - t0
    res.text = res.stdout + res.stderr
    return res


# --- the cluster and the two runs of the slice ------------------------------------------------

@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """(state directory, client environment) of a running single-node cluster."""
    given = os.environ.get("TADA_SLURM_DIR")
    if given and ws.cluster("status", Path(given)).returncode == 0:
        state = Path(given)
        yield state, ws.cluster_env(state)
        return
    state = tmp_path_factory.mktemp("slurm")
    started = ws.cluster("start", state)
    try:
        assert started.returncode == 0, f"cluster.sh start failed:\n{started.stdout}{started.stderr}"
        yield state, ws.cluster_env(state)
    finally:
        stopped = ws.cluster("stop", state)
        assert stopped.returncode == 0, stopped.stderr
        shutil.rmtree(state / "mysql", ignore_errors=True)  # the accounting database, ~100 MB


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    work = ws.make_workdir(tmp_path_factory.mktemp("slice_local"))
    res = run(ws.local_cmd(), cwd=work)
    assert res.returncode == 0, res.text[-4000:]
    return work, res


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    state, env = cluster
    work = ws.make_workdir(tmp_path_factory.mktemp("slice_slurm"))
    profile = ws.make_profile(tmp_path_factory.mktemp("profile"))
    cmd = ws.slurm_cmd(profile, env["TADA_SLURM_PARTITION"])
    before = {r["JobIdRaw"] for r in ws.sacct_rows(env)}
    res = run(cmd, cwd=work, env=env)
    assert res.returncode == 0, res.text[-4000:]
    return {"work": work, "env": env, "cmd": cmd, "res": res, "before": before, "state": state}


# --- through sbatch ---------------------------------------------------------------------------

@needs_cluster
def test_slice_jobs_went_through_sbatch(slurm_run):
    res, env = slurm_run["res"], slurm_run["env"]
    blocks = ws.job_blocks(res.stdout + res.stderr)
    remote = [b for b in blocks if not b["local"]]
    # The rules that run the model are never local rules.
    assert {"cache_activations", "localize_concept"} <= {b["rule"] for b in remote}, res.text[-3000:]
    submitted = ws.submitted_jobs(res.text)
    assert sorted(submitted.values()) == sorted(b["rule"] for b in remote)
    run_id = next(line.split("SLURM run ID:")[1].strip() for line in res.text.splitlines()
                  if "SLURM run ID:" in line)
    rows = {r["JobIdRaw"]: r for r in ws.sacct_rows(env)}
    for job_id, rule in submitted.items():
        row = rows[job_id]
        # The plugin names each job after the run and puts the rule (and wildcards) in the comment.
        assert row["JobName"] == run_id and row["State"] == "COMPLETED", row
        assert row["Comment"].startswith(f"rule_{rule}"), row
    assert set(rows) - slurm_run["before"] == set(submitted)


@needs_cluster
def test_slurm_outputs_equal_the_local_run(local_run, slurm_run):
    """Same files; every one byte for byte except the JSONs that record wall times (the
    activation manifest and the localization summary), which are equal less `elapsed_s`."""
    local, remote = local_run[0] / "results", slurm_run["work"] / "results"
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(remote) for p in remote.rglob("*") if p.is_file())
    assert Path(ws.TARGET).relative_to("results") in files
    timed = []
    for rel in files:
        a, b = (local / rel).read_bytes(), (remote / rel).read_bytes()
        if a == b:
            continue
        assert rel.suffix == ".json", f"{rel} differs between the local and the SLURM run"
        ja, jb = json.loads(a), json.loads(b)
        assert ws.strip_timings(ja) == ws.strip_timings(jb), rel
        timed.append(str(rel))
    assert set(timed) <= {f"embedded/activations/contrastive_{ws.STEERING}.json",
                          f"embedded/localize/{ws.LOCALIZATION}/summary.json"}, timed
    # the vector, tensor by tensor (byte equality above implies it; this names what differs)
    from safetensors.numpy import load_file
    va, vb = load_file(local / Path(ws.TARGET).relative_to("results")), load_file(
        remote / Path(ws.TARGET).relative_to("results"))
    assert va.keys() == vb.keys() and all((va[k] == vb[k]).all() for k in va)


@needs_cluster
def test_rule_logs_hold_each_jobs_output(slurm_run):
    work, res = slurm_run["work"], slurm_run["res"]
    blocks = ws.job_blocks(res.text)
    assert len(blocks) >= 7, res.text[-3000:]
    for b in blocks:
        log = work / b["log"]
        assert log.is_file(), f"{b['rule']}: no log {b['log']}"
        text = log.read_text()
        assert " INFO " in text and "Traceback" not in text, f"{b['log']}:\n{text[-2000:]}"
    cache = (work / f"logs/embedded/cache/contrastive_{ws.STEERING}.log").read_text()
    assert "done:" in cache
    localize = (work / ws.LOCALIZE_LOG).read_text()
    assert "summary:" in localize and "impact:" in localize


@needs_cluster
def test_rerun_submits_nothing(slurm_run):
    env = slurm_run["env"]
    before = ws.sacct_rows(env)
    res = run(slurm_run["cmd"], cwd=slurm_run["work"], env=env)
    assert res.returncode == 0, res.text[-3000:]
    assert "Nothing to be done" in res.text, res.text[-3000:]
    assert "has been submitted" not in res.text
    assert ws.sacct_rows(env) == before


@needs_cluster
def test_cancelled_job_is_redone_by_a_plain_rerun(slurm_run, local_run):
    """Delete the localization (and what was built from it), start the run, `scancel` the
    localization job while its script runs: the run fails, leaves no output of that job that
    looks complete, and the same command run again completes it (with the local run's bytes)."""
    work, env, cmd = slurm_run["work"], slurm_run["env"], slurm_run["cmd"]
    for rel in ws.LOCALIZE_OUTPUTS + ws.LOCALIZE_DOWNSTREAM:
        (work / rel).unlink()
    log = work / ws.LOCALIZE_LOG
    log.unlink()  # (Snakemake would delete it too, when the job starts)
    out_path = work / "cancelled_run.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        job_id, started = None, False
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if job_id is None:
                    jobs = ws.submitted_jobs(out_path.read_text())
                    job_id = next((j for j, rule in jobs.items() if rule == "localize_concept"), None)
                # The script logs its plan once the model and scorer are loaded, then patches.
                if job_id and log.exists():
                    started = "pairs (using up to" in log.read_text()
                if started:
                    break
                time.sleep(0.2)
            assert started, f"the localization job never started:\n{out_path.read_text()[-3000:]}"
            subprocess.run(["scancel", job_id], env=env, check=True, timeout=30)
            proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = out_path.read_text()
    assert proc.returncode != 0, text[-3000:]
    assert "Error in rule localize_concept" in text, text[-3000:]
    state = next(r["State"] for r in ws.sacct_rows(env) if r["JobIdRaw"] == job_id)
    assert state.startswith("CANCELLED"), state
    partial = log.read_text()
    assert "pairs (using up to" in partial and "summary:" not in partial, partial

    # No output of the killed job looks complete: each is absent, or Snakemake's metadata marks
    # it incomplete (a run without --rerun-incomplete then refuses to use it).
    left = [rel for rel in ws.LOCALIZE_OUTPUTS if (work / rel).exists()]
    if left:
        dry = run(ws.snakemake_cmd("-n", "--cores", "1", ws.TARGET), cwd=work)
        assert "incomplete" in dry.text.lower() and all(rel in dry.text for rel in left), dry.text[-3000:]
    dry = run(ws.snakemake_cmd("-n", "--rerun-incomplete", "--cores", "1", ws.TARGET), cwd=work)
    assert dry.returncode == 0 and "localize_concept" in dry.stdout, dry.text[-3000:]

    again = run(cmd, cwd=work, env=env)
    assert again.returncode == 0, again.text[-3000:]
    assert "localize_concept" in ws.submitted_jobs(again.text).values()
    for rel in ws.LOCALIZE_OUTPUTS[:2]:
        assert (work / rel).read_bytes() == (local_run[0] / rel).read_bytes(), rel
    assert (work / ws.TARGET).read_bytes() == (local_run[0] / ws.TARGET).read_bytes()


# --- the sbatch command line of a GPU rule (no cluster needed) --------------------------------

FAKE_SBATCH = """#!/bin/sh
# Records its arguments (one per line) and refuses the job, which ends the run.
printf '%s\\n' "$@" > "$SBATCH_CALLS/$(date +%s%N).args"
echo "sbatch: error: stand-in sbatch of tests/test_slurm.py" >&2
exit 1
"""


def test_gpu_rules_get_a_gpu_request(tmp_path):
    """A CUDA model makes the model rules ask for gpu=1; the SLURM executor turns that into
    `--gpus=1` on each job's sbatch line, beside the profile's partition, memory and time. With
    `--workflow-profile none` (profiles/slurm's documented command) two GPU jobs are submitted
    at once: the local profile's `resources: gpu=1` does not cap them."""
    work = ws.make_workdir(tmp_path / "work")
    profile = ws.make_profile(tmp_path / "profile")
    bindir, calls = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    calls.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    # Every other SLURM client fails at once, as on a machine without a cluster.
    for name in ("sacct", "squeue", "sinfo", "scontrol", "scancel", "sacctmgr", "sshare", "srun"):
        (bindir / name).write_text("#!/bin/sh\nexit 1\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    concepts = [ws.STEERING, "mood"]
    for concept in concepts:
        prompts = work / f"results/prompts/{concept}/contrastive.csv"
        prompts.parent.mkdir(parents=True)
        prompts.write_text("prompt\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", SBATCH_CALLS=str(calls))
    cuda = '{"embedded": {"backend": "embedded", "path": "data/embedded_model", "device": "cuda"}}'
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["concepts"]["steering"] = concepts
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/embedded/activations/contrastive_{c}.json" for c in concepts]
    res = run(ws.snakemake_cmd(*targets, "--profile", str(profile),
                               "--config", f"models={cuda}",
                               *ws.TEST_PLUGIN_ARGS, "--allowed-rules", "cache_activations"),
              cwd=work, env=env, timeout=300)
    assert res.returncode != 0 and "SLURM sbatch failed" in res.text, res.text[-3000:]
    assert "Execute 2 jobs" in res.text, res.text[-3000:]
    recorded = sorted(calls.iterdir())
    assert len(recorded) == 2, res.text[-3000:]
    comments = set()
    for path in recorded:
        args = path.read_text().splitlines()
        line = " ".join(args)
        print("sbatch", line)  # shown with pytest -s
        assert "--gpus=1" in args, line
        assert args[args.index("-p") + 1] == "gpu", line  # the profile's slurm_partition
        assert "--mem" in args and "-t" in args, line
        comments.add(args[args.index("--comment") + 1])
    assert comments == {f"rule_cache_activations_wildcards_{c}" for c in concepts}
    # the executor reports the same command line in the error
    assert "--gpus=1" in res.text
