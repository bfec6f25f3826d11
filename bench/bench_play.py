"""Steering playground latency: first sound and all stops after "Generate", over HTTP.

    .venv/bin/python bench/bench_play.py --results results/embedded [--config config.yaml]
        [--concept tempo] [--method caa_localized] [--repeats 10] [--threads 2] [--steps N] [--write]

Loads the config's model and the run's vectors once, starts the playground server on a free
loopback port (in this process) and, `repeats` times with a new prompt and seed (no cache hit):
POSTs /api/generate with the slider at α = 0 and fetches the stops' WAVs like the page does.
"first sound" = until the WAV of the stop under the slider has arrived; "all stops" = until
every WAV has. Each repeat times both designs on fresh prompts, interleaved: the stop under the
slider first, then the other six in one batch (the default), and all seven stops in one batch
(``tada play --one-batch``). Then a repeated request (cache hit). A warm-up generation of each
design is not counted. Prints the medians (and every run); ``--write`` replaces the "Steering
playground" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_section  # noqa: E402

START, END = "<!-- bench_play:start -->", "<!-- bench_play:end -->"
PROMPTS = ["an upbeat pop song with piano and drums", "a calm acoustic guitar ballad", "a fast jazz tune with brass",
           "a dark ambient piece with strings", "a cheerful folk song with violin", "a slow blues with a male singer",
           "an energetic rock track with electric guitar", "a soft lullaby on piano",
           "a dance track with a female vocal", "a sad classical piece for cello"]
FIRST_S, ALL_S = 1.5, 3.0


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=600) as r:
        return len(r.read())


def timed(url: str, body: dict, pool: ThreadPoolExecutor) -> tuple[float, float]:
    """(first sound, all stops) in seconds for one request, the WAVs fetched in parallel."""
    t0 = time.perf_counter()
    res = _post(url + "api/generate", body)
    futures = [pool.submit(_get, url + s["url"]) for s in res["stops"]]
    futures[res["first"]].result()
    first = time.perf_counter() - t0
    for f in futures:
        f.result()
    return first, time.perf_counter() - t0


def _run_relative(results: str | Path) -> Path:
    """results/<model> of whichever checkout made the run."""
    p = Path(results).resolve()
    return p.relative_to(p.parents[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--results", default=None, help="run folder (default results/<model>)")
    parser.add_argument("--concept", default="tempo")
    parser.add_argument("--method", default="caa_localized")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    import tempfile

    import torch

    from tada.commands import load_model_from_args
    from tada.config import model_config
    from tada.play.engine import Catalog, Engine
    from tada.play.server import PlayServer

    torch.set_num_threads(args.threads)
    ns = argparse.Namespace(config=args.config, model=None, device=None)
    model, config = load_model_from_args(ns)
    name, _ = model_config(config)
    catalog = Catalog(args.results or f"results/{name}")
    kw = {"steps": args.steps} if args.steps else {}
    split = Engine(model, catalog, model_name=name, **kw)
    one = Engine(model, catalog, model_name=name, split_first=False, **kw)
    body = {"method": args.method, "axes": [{"concept": args.concept, "alpha": 0.0}]}
    runs: dict[str, list[tuple[float, float]]] = {"split": [], "one": []}
    cached: list[float] = []
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(8) as pool, \
            PlayServer(split, tmp) as url_split, PlayServer(one, tmp) as url_one:
        timed(url_split, {**body, "prompt": "warm up", "seed": 10_000}, pool)
        timed(url_one, {**body, "prompt": "warm up", "seed": 10_001}, pool)
        for k in range(args.repeats):
            prompt = PROMPTS[k % len(PROMPTS)]
            runs["split"].append(timed(url_split, {**body, "prompt": prompt, "seed": 2 * k}, pool))
            runs["one"].append(timed(url_one, {**body, "prompt": prompt, "seed": 2 * k + 1}, pool))
            cached.append(timed(url_split, {**body, "prompt": prompt, "seed": 2 * k}, pool)[1])
            print(f"run {k + 1}: split first/all {runs['split'][-1][0]:.2f}/{runs['split'][-1][1]:.2f} s, "
                  f"one batch {runs['one'][-1][1]:.2f} s, cached {cached[-1] * 1000:.1f} ms", flush=True)
    load.append(os.getloadavg()[0])
    split.close()
    one.close()

    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in runs.items()}
    first, whole = med["split"]
    verdict = lambda value, target: "meets" if value <= target else "**misses**"  # noqa: E731
    every = lambda v, i: ", ".join(f"{r[i]:.2f}" for r in v)  # noqa: E731
    text = (f"## Steering playground (`bench/bench_play.py`)\n\n"
            f"{date.today()}, {platform.machine()} CPU ({os.cpu_count()} cores, shared; load average "
            f"{load[0]:.1f} -> {load[1]:.1f}), torch {torch.__version__} with {args.threads} thread(s). "
            f"Model `{name}` ({split.steps} steps, CFG {split.guidance:g}, {split.duration:g} s clips), "
            f"{args.method} / {args.concept} from `{_run_relative(catalog.results_dir)}` of a `make run`, {split.n_stops} stops, the slider at "
            f"α = 0. Times from the POST of /api/generate until the WAVs arrived over HTTP on loopback "
            f"(server in the benchmark's process), each request a new prompt and seed; median of "
            f"{args.repeats}.\n\n"
            f"| design | first sound (s) | all {split.n_stops} stops (s) | runs: first | runs: all |\n"
            f"|---|---|---|---|---|\n"
            f"| stop under the slider first, then the other {split.n_stops - 1} (default) | {first:.2f} | "
            f"{whole:.2f} | {every(runs['split'], 0)} | {every(runs['split'], 1)} |\n"
            f"| all stops in one batch (`--one-batch`) | {med['one'][0]:.2f} | {med['one'][1]:.2f} | "
            f"{every(runs['one'], 0)} | {every(runs['one'], 1)} |\n\n"
            f"- first sound ≤ {FIRST_S} s: {first:.2f} s ({verdict(first, FIRST_S)}); all stops ≤ {ALL_S} s: "
            f"{whole:.2f} s ({verdict(whole, ALL_S)}), default design\n"
            f"- a repeated request (cache hit), all stops: {statistics.median(cached) * 1000:.1f} ms median\n")
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", START, END, text)


if __name__ == "__main__":
    main()
