# Shared helpers: the studied model, its resources, and the target lists.
import json
import os
from pathlib import Path

from tada.io import input_files
from tada.resources import benchmark_path, load_resources

MODEL = config["model"]
MODEL_CFG = config["models"][MODEL]
ON_GPU = str(MODEL_CFG.get("device", "cpu")).startswith("cuda")
RESULTS = f"results/{MODEL}"
ENV = "../envs/tada.yaml"
# The conda env's post-deploy script installs tada from this checkout (envs/tada.post-deploy.sh);
# envvars also hands the variable on to cluster jobs.
os.environ["TADA_ROOT"] = str(Path(workflow.basedir).resolve())


envvars:
    "TADA_ROOT",


THREADS = config.get("threads", 2)

# Rules that run the model ask for a GPU when the model is configured for CUDA.
GPU = 1 if ON_GPU else 0

# Memory and run time of each rule, sized from a measured run of this model (rules/resources.yaml,
# written by bench/rule_resources.py from the benchmark files every job leaves; see
# tada/resources.py). A model without measured sizes gets the profile's default-resources.
RULE_RESOURCES = load_resources(Path(workflow.basedir) / "rules" / "resources.yaml", MODEL)


def sized(rule):
    return RULE_RESOURCES.get(rule, {})


def bench(rule, job="all"):
    return benchmark_path(MODEL, rule, job)

STEERING = list(config["concepts"].get("steering", []))
LOCALIZATION = list(config["concepts"].get("localization", []))


def log(name):
    return f"logs/{MODEL}/{name}.log"


def optional_targets(name):
    """Targets contributed by rule files (each defines a function `<name>_targets`)."""
    fn = globals().get(f"{name}_targets")
    return fn() if fn else []


def all_targets():
    out = []
    for stage in ("prompts", "cache", "localize", "vectors", "sae", "sweeps", "evaluate"):
        out += optional_targets(stage)
    return out
