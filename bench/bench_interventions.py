"""Overhead of the intervention wrappers on a (tiny but not minute) Stable Audio pipeline.

Builds a `StableAudioPipeline` with a DiT of width 256 and 8 blocks producing 4 s clips, then
times, interleaved and repeated (median), plain generation against generation with

* ``Capture()``: time-averaged outputs of every layer at every step (target <= 1.15x),
* ``Capture(keys_values=True)``: the same plus every layer's keys/values (the patching cache),
* CAA-style ``AddVector`` on 2 layers, conditional branch (target <= 1.03x),
* ``PatchKV`` of 1 layer from a cached target run (target <= 1.05x for the patched run; the
  total adds the target run that fills the cache).

Prints a table and writes it to the "Intervention overhead" section of BENCHMARKS.md.

    .venv/bin/python bench/bench_interventions.py [--repeats 15] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_section  # noqa: E402
from tada.models import AddVector, Capture, PatchKV  # noqa: E402
from tada.models.stable_audio import StableAudioModel  # noqa: E402
from tada.testing.tiny import build_tiny_stable_audio  # noqa: E402

SECTION_START = "<!-- bench_interventions:start -->"
SECTION_END = "<!-- bench_interventions:end -->"
PROMPTS = ["jazz song, a love song", "rock song, a love song"]
SOURCES = ["classical song, a song", "electronic song, a song"]


def build_model(directory: str, steps: int) -> StableAudioModel:
    path = build_tiny_stable_audio(directory, width=256, layers=8, heads=4, kv_heads=2,
                                   latent_length=128, sampling_rate=256, max_tokens=64)
    from diffusers import StableAudioPipeline

    pipe = StableAudioPipeline.from_pretrained(path, local_files_only=True)
    return StableAudioModel(pipe, steps=steps, guidance=7.0, duration=4.0)


def measure(model: StableAudioModel, repeats: int) -> dict[str, list[float]]:
    n_layers = len(model.layers)
    width = model.layers[0].width
    caa = AddVector({n_layers // 2 - 1: torch.randn(width), n_layers // 2: torch.randn(width)}, alpha=4.0)
    cache = Capture(keys_values=True, means=False)
    model.generate(PROMPTS, [0, 1], interventions=[cache])
    patch = PatchKV(cache, layers=[n_layers // 2])

    runs = {
        "plain": lambda: model.generate(SOURCES, [0, 1]),
        "capture means": lambda: model.generate(SOURCES, [0, 1], interventions=[Capture()]),
        "capture means + keys/values": lambda: model.generate(
            SOURCES, [0, 1], interventions=[Capture(keys_values=True)]),
        "AddVector, 2 layers (CAA)": lambda: model.generate(SOURCES, [0, 1], interventions=[caa]),
        "PatchKV, 1 layer (patched run)": lambda: model.generate(SOURCES, [0, 1], interventions=[patch]),
        "target run caching keys/values": lambda: model.generate(
            PROMPTS, [0, 1], interventions=[Capture(keys_values=True, means=False)]),
    }
    for fn in runs.values():  # warm-up
        fn()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {"wall": wall, "cpu": cpu}


def table(times: dict[str, dict[str, list[float]]]) -> list[tuple[str, float, float, float, str]]:
    """Rows (run, median wall s, median CPU s, CPU ratio to plain, verdict). Ratios use process
    CPU time, which other jobs on the shared machine disturb much less than wall time."""
    wall = {name: statistics.median(v) for name, v in times["wall"].items()}
    cpu = {name: statistics.median(v) for name, v in times["cpu"].items()}
    plain = cpu["plain"]
    targets = {"capture means": 1.15, "AddVector, 2 layers (CAA)": 1.03,
               "PatchKV, 1 layer (patched run)": 1.05}
    rows = []
    for name in cpu:
        ratio, target = cpu[name] / plain, targets.get(name)
        verdict = "" if target is None else f"<= {target:.2f}: " + ("met" if ratio <= target else "MISSED")
        rows.append((name, wall[name], cpu[name], ratio, verdict))
    patched, cache = "PatchKV, 1 layer (patched run)", "target run caching keys/values"
    rows.append(("PatchKV total (target run + patched run)", wall[patched] + wall[cache],
                 cpu[patched] + cpu[cache], (cpu[patched] + cpu[cache]) / plain, "vs one plain run"))
    return rows


def render(rows, args, model: StableAudioModel) -> str:
    cfg = model.pipe.transformer.config
    lines = [
        "## Intervention overhead (bench/bench_interventions.py)",
        "",
        f"Tiny Stable Audio pipeline: DiT width {cfg.num_attention_heads * cfg.attention_head_dim}, "
        f"{cfg.num_layers} blocks, {cfg.sample_size} latent frames (4 s clip), batch of "
        f"{len(PROMPTS)} prompts x 2 CFG branches, {model.default_steps} sampler steps. Machine: "
        f"2-core CPU shared with other jobs, torch {torch.__version__} with {args.threads} "
        f"thread(s), Python {platform.python_version()}, {dt.date.today().isoformat()}. Median of "
        f"{args.repeats} interleaved runs.",
        "",
        "Ratios are of median process CPU time (steadier than wall time on a shared machine).",
        "",
        "| run | median wall s | median CPU s | CPU ratio to plain | target |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [f"| {name} | {w:.3f} | {c:.3f} | {ratio:.3f}x | {verdict} |" for name, w, c, ratio, verdict in rows]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path) -> None:
    replace_section(path, SECTION_START, SECTION_END, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(tmp, args.steps)
        times = measure(model, args.repeats)
    text = render(table(times), args, model)
    print(text)
    if not args.no_write:
        write_section(text, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
