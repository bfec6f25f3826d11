"""Sweep throughput: one batched call per `batch_size` clips against one call per clip.

    .venv/bin/python bench/bench_sweep.py [--clips 16] [--repeats 3] [--threads 2] [--config config.yaml] [--write]

Renders the same `clips` rows (one prompt, a CAA-like random vector, α spread over the grid)
through the embedded model both ways, with the config's steps, guidance and clip length,
`repeats` times each, and prints the median wall time per clip and the ratio (one clip at a
time / batched). ``--write`` replaces the "Sweep throughput" block of the "## Evaluation"
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tada.config import load_config, model_config  # noqa: E402
from tada.io import replace_subsection  # noqa: E402
from tada.methods import SweepRow, build_variant  # noqa: E402
from tada.models import load_model  # noqa: E402
from tada.steering.vectors import SteeringVector  # noqa: E402

TITLE = "### Sweep throughput (`bench/bench_sweep.py`)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"), help="steps, guidance and duration from its model")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, cfg = model_config(load_config(args.config), "embedded")
    settings = {k: cfg[k] for k in ("steps", "guidance", "duration") if cfg.get(k) is not None}
    model = load_model({"backend": "embedded", "path": str(ROOT / "data" / "embedded_model"), "batch_size": args.clips})
    g = torch.Generator().manual_seed(0)
    steps = int(settings.get("steps", model.default_steps))
    vec = SteeringVector({i: 0.05 * torch.randn(steps, l.width, generator=g) for i, l in enumerate(model.layers)},
                         method="caa", concept="bench", model=model.describe())
    variant = build_variant("caa", vector=vec)
    prompt = "Catchy synth-pop chorus with bright hooks and a steady four-on-the-floor beat"
    rows = [SweepRow("p0", prompt, prompt, prompt, 0, a) for a in torch.linspace(-2, 2, args.clips).tolist()]

    def batched() -> None:
        model.generate([r.neutral for r in rows], [r.seed for r in rows], **settings,
                       interventions=variant.interventions(model, rows, steps))

    def single() -> None:
        for r in rows:
            model.generate([r.neutral], [r.seed], **settings, interventions=variant.interventions(model, [r], steps))

    times = {"batched": [], "single": []}
    for _ in range(args.repeats):
        for name, fn in (("batched", batched), ("single", single)):
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / args.clips)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"{date.today()}, {platform.machine()} CPU, {args.threads} threads, embedded model, {args.clips} clips "
             f"({steps} steps, CFG {settings.get('guidance', model.default_guidance):g}, "
             f"{settings.get('duration', 4.0):g} s, from `{Path(args.config).name}`), median of {args.repeats} runs:", "",
             "| mode | median s per clip | runs (s per clip) |", "|---|---|---|"]
    for k in ("batched", "single"):
        lines.append(f"| {k} | {med[k]:.3f} | {', '.join(f'{x:.3f}' for x in times[k])} |")
    lines += ["", f"One clip at a time is **{med['single'] / med['batched']:.2f}×** slower than batches of {args.clips}."]
    print(TITLE)
    print("\n".join(lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", "## Evaluation", TITLE, lines)


if __name__ == "__main__":
    main()
