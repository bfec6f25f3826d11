"""Activation patching throughput: one patched copy per layer batched together, versus one at a time.

Both variants patch the same source prompt with the same cached target keys/values, layer by
layer, on the embedded model (the trained weights in data/embedded_model when present, else a
randomly initialised network of the default size: the speed does not depend on the weights).
Also times the whole per-concept routine (`tada.localize.localize_concept`) with packing across
pairs (units_per_round = batch size) against batch size 1.

    .venv/bin/python bench/bench_patching.py [--threads 1] [--seeds 4] [--write]

Prints patched generations per second and the ratio; --write puts the numbers into the
"Localization" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_subsection  # noqa: E402
from tada.localize import localize_concept, pair_text_length  # noqa: E402
from tada.models.embedded import EmbeddedModel  # noqa: E402
from tada.models.interventions import Capture, PatchKV  # noqa: E402

TARGET, SOURCE = "lively drums and percussion, a groovy band", "lively saxophone and percussion, a groovy band"


def load_model(batch_size: int, device: str, small: bool = False) -> tuple[EmbeddedModel, str]:
    path = ROOT / "data" / "embedded_model"
    if small:
        from tada.embedded.model import EmbeddedConfig, EmbeddedTransformer

        torch.manual_seed(0)
        net = EmbeddedTransformer(EmbeddedConfig(width=32, depth=8, heads=2))
        return EmbeddedModel(net, batch_size=batch_size, device=device), "small embedded network (width 32), random weights"
    if (path / "model.safetensors").exists():
        return EmbeddedModel.from_pretrained(path, batch_size=batch_size, device=device), "trained embedded model"
    from tada.embedded.model import EmbeddedConfig, EmbeddedTransformer

    torch.manual_seed(0)
    return EmbeddedModel(EmbeddedTransformer(EmbeddedConfig()), batch_size=batch_size, device=device), \
        "embedded architecture, random weights"


class FeatureMean:
    """Stand-in scorer (mean log-mel): the benchmark times generation, not scoring."""

    def score(self, gen, text):
        return gen.features.reshape(len(gen.features), -1).mean(axis=1)


def patched_rate(model: EmbeddedModel, seeds: list[int], batched: bool) -> float:
    tl = pair_text_length(model, TARGET, SOURCE)
    n_layers = len(model.layers)
    n, elapsed = 0, 0.0
    for seed in seeds:
        cap = Capture(means=False, keys_values=True)
        model.generate([TARGET], [seed], interventions=[cap], text_length=tl)
        t0 = time.perf_counter()
        if batched:
            for start in range(0, n_layers, model.batch_size):
                layers = list(range(start, min(n_layers, start + model.batch_size)))
                ivs = [PatchKV(cap, layers=[l], samples=[i]) for i, l in enumerate(layers)]
                model.generate([SOURCE] * len(layers), [seed] * len(layers), interventions=ivs, text_length=tl)
        else:
            for l in range(n_layers):
                model.generate([SOURCE], [seed], interventions=[PatchKV(cap, layers=[l])], text_length=tl)
        elapsed += time.perf_counter() - t0
        n += n_layers
    return n / elapsed


def routine_rate(model: EmbeddedModel, n_pairs: int, seeds: list[int], per_round: int) -> float:
    pairs = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n_pairs)], "target": [TARGET] * n_pairs,
                          "source": [SOURCE] * n_pairs})
    t0 = time.perf_counter()
    res = localize_concept(model, FeatureMean(), pairs, "drums", seeds=seeds, units_per_round=per_round,
                           min_denominator=-np.inf)
    return res.summary["patched_generations"] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--small", action="store_true", help="a width-32 network: per-call overhead dominates")
    ap.add_argument("--seeds", type=int, default=3, help="seeds (repeats) per variant")
    ap.add_argument("--pairs", type=int, default=4, help="pairs for the whole-routine comparison")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, what = load_model(batch_size=16, device=args.device, small=args.small)
    load0 = os.getloadavg()[0]
    seeds = list(range(args.seeds))
    model.generate([TARGET], [0], steps=2)  # warm-up
    batched = patched_rate(model, seeds, batched=True)
    single = patched_rate(model, seeds, batched=False)
    routine_packed = routine_rate(model, args.pairs, seeds[:2], per_round=model.batch_size)
    model.batch_size = 1
    routine_single = routine_rate(model, args.pairs, seeds[:2], per_round=1)
    n_layers = len(model.layers)
    load1 = os.getloadavg()[0]
    lines = [
        f"- model: {what} ({n_layers} cross-attention layers, {model.default_steps} steps, CFG "
        f"{model.default_guidance}, {model.default_duration:g} s clips); {args.device}, {args.threads} torch thread(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load0:.1f} -> {load1:.1f}",
        f"- patched generations/s, {n_layers} layers of one pair batched together: {batched:.2f}",
        f"- patched generations/s, one layer at a time (batch 1): {single:.2f}",
        f"- **ratio batched / one at a time: {batched / single:.2f}x**",
        f"- whole `localize_concept` ({args.pairs} pairs x 2 seeds, source + {n_layers} layers + all-layers copies "
        f"packed into batches of 16): {routine_packed:.2f} patched generations/s, versus batch size 1: "
        f"{routine_single:.2f} ({routine_packed / routine_single:.2f}x)",
    ]
    print("\n".join(lines))
    if args.write:
        title = "### Patching throughput (`bench/bench_patching.py" + (" --small" if args.small else "") + "`)"
        write_section(title, lines)


def write_section(title: str, lines: list[str]) -> None:
    """Replace (or add) the `title` block inside the "## Localization" section of BENCHMARKS.md."""
    replace_subsection(ROOT / "BENCHMARKS.md", "## Localization", title, lines)


if __name__ == "__main__":
    main()
