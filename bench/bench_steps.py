"""Sampler steps of the embedded model: what the default config loses by sampling fewer steps.

    .venv/bin/python bench/bench_steps.py [--steps 30 20] [--pairs 8] [--threads 2] [--write]

For every quality concept (tada/embedded_quality/concepts.py) the same caption pairs (held-out
templates; training words, where the model follows its prompts, and held-out words) are generated
with each step count from the same noise. Per step count it prints the world classifiers' paired
accuracy and AUC (as in bench/bench_embedded.py), the seconds per clip (median over the concepts'
batches, timed in this process), and per step count after the first the *drift*: the mean squared
log-mel difference between a clip and the first step count's clip of the same prompt and seed,
divided by the mean squared difference between the two members of a pair (same seed, concept
switched) at the first step count, i.e. the change fewer steps make relative to the change the
concept makes. ``--write`` replaces the "Sampler steps" block of BENCHMARKS.md's "## Evaluation".
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.embedded_quality.concepts import QUALITY_CONCEPTS, _separation, concept_prompts  # noqa: E402
from tada.io import replace_subsection  # noqa: E402
from tada.models.embedded import EmbeddedModel  # noqa: E402
from tada.world.classifiers import ConceptClassifiers  # noqa: E402

TITLE = "### Sampler steps (`bench/bench_steps.py`)"
WORDS = ("train", None)  # training words, held-out words


def measure(model: EmbeddedModel, classifiers, steps: list[int], pairs: int, seed: int = 2024) -> dict:
    """Per (words, concept, steps): paired accuracy, AUC, mels; per steps: seconds per clip."""
    out: dict = {"sep": {}, "mels": {}, "seconds": {s: [] for s in steps}}
    for w in WORDS:
        for k, concept in enumerate(QUALITY_CONCEPTS):
            pos, neg, _, _ = concept_prompts(concept, pairs, seed + 100 * k, words=w)
            seeds = [seed + 1000 * k + i for i in range(len(pos))] * 2
            for s in steps:
                t0 = time.perf_counter()
                mels = model.generate(pos + neg, seeds=seeds, steps=s).features
                out["seconds"][s].append((time.perf_counter() - t0) / len(seeds))
                _, paired, auc = _separation(classifiers, mels, concept, len(pos))
                out["sep"][(w, concept.name, s)] = (paired, auc)
                out["mels"][(w, concept.name, s)] = np.asarray(mels, dtype=np.float64)
            print(f"... {w or 'held-out'} words, {concept.name}", flush=True)
    return out


def drift(mels: dict, steps: list[int]) -> dict:
    """{(words, steps): drift} for every step count after the first (see the module docstring)."""
    ref, res = steps[0], {}
    for w in WORDS:
        for s in steps[1:]:
            num, den = [], []
            for c in QUALITY_CONCEPTS:
                a, b = mels[(w, c.name, ref)], mels[(w, c.name, s)]
                n = len(a) // 2
                num.append(np.mean((a - b) ** 2))
                den.append(np.mean((a[:n] - a[n:]) ** 2))
            res[(w, s)] = float(np.mean(num) / np.mean(den))
    return res


def report(r: dict, steps: list[int], pairs: int, threads: int) -> list[str]:
    lines = [f"{date.today()}, {platform.machine()} CPU, torch {torch.__version__} with {threads} thread(s). "
             f"Embedded model, CFG {r['guidance']:g}, 4 s clips; {pairs} caption pairs per concept (held-out "
             "templates, pair members share the noise), the same noise for every step count.", ""]
    head = "| concept | " + " | ".join(f"{s} steps: paired / AUC (train words) | {s} steps: paired / AUC (held-out)"
                                        for s in steps) + " |"
    lines += [head, "|---" * (1 + 2 * len(steps)) + "|"]
    for c in QUALITY_CONCEPTS:
        cells = []
        for s in steps:
            for w in WORDS:
                p, a = r["sep"][(w, c.name, s)]
                cells.append(f"{p:.0%} / {a:.2f}")
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    means = []
    for s in steps:
        for w in WORDS:
            vals = np.array([r["sep"][(w, c.name, s)] for c in QUALITY_CONCEPTS])
            means.append(f"**{vals[:, 0].mean():.0%} / {vals[:, 1].mean():.2f}**")
    lines.append("| mean | " + " | ".join(means) + " |")
    lines.append("")
    sec = {s: statistics.median(r["seconds"][s]) for s in steps}
    lines.append("| steps | seconds per clip (batch of " + str(2 * pairs) + ", median) | time vs "
                 f"{steps[0]} steps | drift vs {steps[0]} steps, train words | drift, held-out words |")
    lines.append("|---|---|---|---|---|")
    for s in steps:
        d = [f"{r['drift'][(w, s)]:.2f}" if s != steps[0] else "0" for w in WORDS]
        lines.append(f"| {s} | {sec[s]:.3f} | {sec[s] / sec[steps[0]]:.2f}x | {d[0]} | {d[1]} |")
    lines += ["", "Drift: mean squared log-mel change from the first step count's clip of the same prompt and "
              "seed, over the mean squared change between the two members of a pair (the concept switched). "
              "Below 1, fewer steps change a clip less than the concept does."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "embedded_model"))
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 20])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = EmbeddedModel.from_pretrained(args.model)
    classifiers = ConceptClassifiers.load(ROOT / "data" / "embedded_classifiers")
    model.generate(["a warm-up prompt"], seeds=0, steps=2)
    r = measure(model, classifiers, args.steps, args.pairs)
    r["drift"] = drift(r.pop("mels"), args.steps)
    r["guidance"] = float(model.default_guidance)
    lines = report(r, args.steps, args.pairs, args.threads)
    print("\n".join([TITLE] + lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", "## Evaluation", TITLE, lines)


if __name__ == "__main__":
    main()
