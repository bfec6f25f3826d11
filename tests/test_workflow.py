"""The Snakemake workflow: dry-run DAGs (whole study, one concept alone) and the linter.

Snakemake runs in a scratch working directory holding a copy of config.yaml and links to the
repository's data files; inputs that the repository does not hold yet (e.g. trained weights)
are stood in for by empty placeholders, so the DAG is checked without building anything.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    (work / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    for src in (ROOT / "data").rglob("*"):
        if src.is_file():
            dst = work / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    model = config["models"][config["model"]]
    dirs = [model.get("path"), config["scorer"].get("path")]
    files = [v for k, v in config["prompts"].items() if isinstance(v, str)]
    for d in filter(None, dirs):
        if not Path(d).is_absolute():
            (work / d).mkdir(parents=True, exist_ok=True)
    for f in files:
        path = work / f
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("ytid,caption\n" if f.endswith(".csv") else "a song\n")
    return work


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--nolock", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=120)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["job", "count"])
    counts = {}
    for line in lines[start + 2:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_shows_the_default_dag(workdir):
    res = snakemake(workdir, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    counts = job_counts(res.stdout)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    n_loc, n_steer = len(config["concepts"]["localization"]), len(config["concepts"]["steering"])
    assert counts["make_pairs"] == n_loc and counts["localize_concept"] == n_loc
    assert counts["make_contrastive"] == n_steer and counts["cache_activations"] == n_steer
    assert counts["choose_layers"] == 1 and counts["all"] == 1
    assert f"results/{config['model']}/localize/layers.json" in res.stdout


def test_one_concept_alone_runs_only_what_it_needs(workdir):
    res = snakemake(workdir, "-n", "results/embedded/localize/drums/impact.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    assert job_counts(res.stdout) == {"make_pairs": 1, "localize_concept": 1}
    assert "wildcards: concept=drums" in res.stdout


def test_jobs_that_run_the_model_depend_on_its_weight_files(workdir):
    """Overwriting the weights inside the model folder (adopting retrained weights) must make
    the jobs that run the model out of date; a folder's own mtime does not change then."""
    res = snakemake(workdir, "-n", "--forceall", "results/embedded/localize/drums/impact.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    inputs = next(line for line in res.stdout.splitlines() if "results/prompts/drums/pairs.csv" in line
                  and line.strip().startswith("input:"))
    assert "data/embedded_model/model.safetensors" in inputs
    assert "data/embedded_model/config.json" in inputs


@pytest.fixture(scope="module")
def lint(workdir):
    res = snakemake(workdir, "--lint")
    return res.returncode, res.stdout + res.stderr


def lints_by_file(output: str) -> dict[str, str]:
    """{snakefile name: its lint text} from `snakemake --lint` output."""
    out, current = {}, None
    for line in output.splitlines():
        if line.startswith("Lints for"):
            current = Path(line.split("Lints for snakefile", 1)[-1].strip().rstrip(":")).name
            out[current] = ""
        elif current:
            out[current] += line + "\n"
    return out


def test_lint_is_clean_for_prompts_cache_localize(lint):
    _, out = lint
    flagged = lints_by_file(out)
    assert not {"prompts.smk", "cache.smk", "localize.smk"} & set(flagged), out


def test_lint_is_clean(lint):
    rc, out = lint
    assert rc == 0 and "Lints for" not in out, out


def test_default_dag_ends_with_the_evaluation(workdir):
    res = snakemake(workdir, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    counts = job_counts(res.stdout)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    n_steer = len(config["concepts"]["steering"])
    assert counts["sweep_baseline"] == 1 and counts["evaluate"] == 1 and counts["quality_reference"] == 1
    assert counts["sweep_fixed"] == n_steer and counts["calibrate"] == n_steer
    assert counts["sweep_calibrated"] == n_steer and counts["sweep_combination"] >= 1
    assert "results/embedded/evaluation/table1.md" in res.stdout


def test_one_concept_calibration_needs_only_that_concept_sweeps(workdir):
    res = snakemake(workdir, "-n", "results/embedded/scores/tempo/caa_localized/scores.csv")
    assert res.returncode == 0, res.stdout + res.stderr
    counts = job_counts(res.stdout)
    assert counts["sweep_calibrated"] == 1 and counts["calibrate"] == 1 and counts["sweep_fixed"] == 1
    assert "evaluate" not in counts and "sweep_combination" not in counts


def test_default_profile_schedules_model_rules_on_cuda(workdir):
    """A CUDA model under the default profile: the model rules are started holding the one GPU
    the profile offers (gpu=1), not scaled down to gpu=0. The job itself fails here (no CUDA and
    a placeholder prompt table), which shows that it was scheduled and ran, with its traceback
    in the rule's log."""
    prompts = workdir / "results/prompts/tempo/contrastive.csv"
    prompts.parent.mkdir(parents=True, exist_ok=True)
    prompts.write_text("prompt\n")
    cuda = '{"embedded": {"backend": "embedded", "path": "data/embedded_model", "device": "cuda"}}'
    out = snakemake(workdir, "results/embedded/activations/contrastive_tempo.json",
                    "--profile", str(ROOT / "profiles" / "default"), "--cores", "1",
                    "--config", f"models={cuda}", "--allowed-rules", "cache_activations")
    text = out.stdout + out.stderr
    job = text[text.index("rule cache_activations:"):]
    assert "gpu=1" in job.split("Error in rule")[0], text[-2000:]
    assert "Error in rule cache_activations" in text, text[-2000:]
    log = (workdir / "logs/embedded/cache/contrastive_tempo.log").read_text()
    assert "Traceback" in log and "contrastive table lacks column" in log


def test_conda_env_installs_tada_from_the_checkout_wherever_it_is_deployed(tmp_path):
    """envs/tada.yaml names no relative path (Snakemake copies it under .snakemake/conda/); its
    post-deploy script installs the checkout named by TADA_ROOT, from any working directory."""
    env = yaml.safe_load((ROOT / "envs" / "tada.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [p for p in pip if ".." in p or p.startswith("-e")]
    assert "os.environ[\"TADA_ROOT\"]" in (ROOT / "rules" / "common.smk").read_text()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").write_text('#!/bin/sh\necho "$@" > "$CALLS"\n')
    (bindir / "python").chmod(0o755)
    elsewhere = tmp_path / "deploy"
    elsewhere.mkdir()
    script = ROOT / "envs" / "tada.post-deploy.sh"
    base = {"PATH": f"{bindir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")}
    ok = subprocess.run(["bash", str(script)], cwd=elsewhere, capture_output=True, text=True,
                        env={**base, "TADA_ROOT": str(ROOT)})
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "calls").read_text().split()[-2:] == ["-e", str(ROOT)]
    bad = subprocess.run(["bash", str(script)], cwd=elsewhere, capture_output=True, text=True,
                         env={**base, "TADA_ROOT": str(elsewhere)})
    assert bad.returncode != 0 and "TADA_ROOT" in bad.stderr


def test_model_rules_declare_the_measured_resources(workdir):
    """A dry run shows each job with the mem_mb and runtime of rules/resources.yaml, and its
    benchmark file under benchmarks/<model>/<rule>/."""
    from tada.resources import load_resources

    measured = load_resources(ROOT / "rules" / "resources.yaml", "embedded")
    if not measured:
        pytest.skip("no measured sizes for the embedded model")
    res = snakemake(workdir, "-n", "-p", "--forceall", "results/embedded/activations/contrastive_tempo.json")
    assert res.returncode == 0, res.stdout + res.stderr
    job = res.stdout[res.stdout.index("rule cache_activations:"):]
    job = job[:job.index("\n\n")]
    want = measured["cache_activations"]
    assert f"mem_mb={want['mem_mb']}" in job and f"runtime={want['runtime']}" in job, job
    assert "benchmarks/embedded/cache_activations/tempo.tsv" in job, job


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("smk_args, writes_report", [("", True), ("-n", False), ("--dry-run", False)])
def test_make_run_writes_the_report_beside_the_results_except_for_a_dry_run(smk_args, writes_report):
    """`make run` ends with `snakemake --report results/<config.yaml's model>/report.html`."""
    res = subprocess.run(["make", "-n", "run", f"SMK_ARGS={smk_args}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    model = yaml.safe_load((ROOT / "config.yaml").read_text())["model"]
    report = [line.strip() for line in res.stdout.splitlines() if "--report" in line]
    assert report == ([f".venv/bin/snakemake --profile profiles/default --report results/{model}/report.html {smk_args}".rstrip()]
                      if writes_report else [])
