"""Listening-study server under load: submissions/s, p99 latency and rows lost to a SIGKILL.

    .venv/bin/python bench/bench_study_load.py --bundle results/embedded/study/bundle
        [--submissions 500] [--clients 50] [--repeats 3] [--ratings-dir DIR] [--write]

Starts ``tada study serve`` as a subprocess on a free loopback port, with a fresh ratings file
in a temporary folder under --ratings-dir (default: the system's), `repeats` times. Each time
it sends `submissions` distinct valid submissions from `clients` concurrent keep-alive
connections (asyncio streams, :mod:`tada.study.loadtest`) and reads the throughput
(submissions / wall time of the burst) and the 99th percentile of the per-request latency;
then a second burst, during which the server is SIGKILLed once 30% of it was answered: rows
lost = acknowledged (2xx) submissions whose row is not in the file. Also times a single
write + fsync of a row on the same file system (median of 200). Prints the median over the
repeats (and every run); ``--write`` replaces the "Listening study server" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_section  # noqa: E402
from tada.study.loadtest import ServerProcess, burst, check_file, percentile, submissions  # noqa: E402
from tada.study.plan import read_manifest  # noqa: E402

START, END = "<!-- bench_study_load:start -->", "<!-- bench_study_load:end -->"


def filesystem(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True, check=True)
        return out.stdout.split()[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def fsync_ms(folder: Path, n: int = 200) -> float:
    """Median time of appending one 1.5 kB line and fsyncing it, in ms."""
    import time

    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 1500 + b"\n")
            os.fsync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return 1000 * statistics.median(times)


def one_run(bundle: Path, manifest: dict, folder: Path, n: int, clients: int, tag: int) -> dict:
    ratings = folder / f"ratings-{tag}.jsonl"
    server = ServerProcess(bundle, ratings)
    try:
        bodies = submissions(manifest, n, tag=2 * tag)
        results, wall = burst(server.url, bodies, clients=clients)
        ok = [r for r in results if r.status == 201]
        first = check_file(ratings, [bodies[r.index] for r in ok])
        second = submissions(manifest, n, tag=2 * tag + 1)
        answered = []

        def kill(result):
            answered.append(result)
            if len(answered) == int(0.3 * n):
                server.kill()

        killed, _ = burst(server.url, second, clients=clients, on_result=kill)
    finally:
        server.kill()
    acked = [second[r.index] for r in killed if r.status is not None and 200 <= r.status < 300]
    after = check_file(ratings, [bodies[r.index] for r in ok] + acked)
    return {"rate": len(ok) / wall, "p99": 1000 * percentile([r.latency for r in results], 99),
            "p50": 1000 * percentile([r.latency for r in results], 50), "accepted": len(ok),
            "duplicated": first["duplicated"], "acked_before_kill": len(acked), "lost": after["lost"],
            "unparsable": after["unparsable"], "rows": after["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="results/embedded/study/bundle")
    parser.add_argument("--submissions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ratings-dir", default=None)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    bundle = Path(args.bundle)
    manifest = read_manifest(bundle)
    runs = []
    with tempfile.TemporaryDirectory(dir=args.ratings_dir) as tmp:
        fs = filesystem(Path(tmp))
        fsync = fsync_ms(Path(tmp))
        for k in range(args.repeats):
            runs.append(one_run(bundle, manifest, Path(tmp), args.submissions, args.clients, k + 1))
            print(f"run {k + 1}: {runs[-1]}", flush=True)
    med = {key: statistics.median(r[key] for r in runs) for key in ("rate", "p99", "p50")}
    lost = sum(r["lost"] for r in runs)
    bad = sum(r["unparsable"] + r["duplicated"] for r in runs)
    each = lambda key, fmt: ", ".join(format(r[key], fmt) for r in runs)
    lines = ["## Listening study server (`bench/bench_study_load.py`)", "",
             f"{date.today()}, {platform.machine()} CPU ({os.cpu_count()} cores, shared), `tada study serve` "
             f"(uvicorn, one process) on loopback, ratings file on {fs} (every row fsynced before its 2xx); "
             f"{args.submissions} distinct submissions of 7 rated samples from {args.clients} concurrent clients, "
             f"{args.repeats} runs, each on a fresh server:", "",
             "| measure | median | runs |", "|---|---|---|",
             f"| submissions/s | {med['rate']:.0f} | {each('rate', '.0f')} |",
             f"| p50 latency (ms) | {med['p50']:.1f} | {each('p50', '.1f')} |",
             f"| p99 latency (ms) | {med['p99']:.1f} | {each('p99', '.1f')} |",
             f"| accepted of {args.submissions} | {statistics.median(r['accepted'] for r in runs):.0f} | "
             f"{', '.join(str(r['accepted']) for r in runs)} |", "",
             f"Then each server was SIGKILLed during a second burst, once 30% of it was answered: "
             f"{', '.join(str(r['acked_before_kill']) for r in runs)} submissions had got their 2xx; "
             f"**rows lost: {lost}**; rows duplicated or unparsable: {bad}.", "",
             f"One row's write + fsync alone took {fsync:.2f} ms on this file system (median of 200): the "
             f"server's time goes to HTTP and validation, and the load client runs on the same cores. On a disk "
             f"with slow fsync the store's group commit (the rows that arrive during a write go out together "
             f"with the next one, one fsync for the lot; `tada/study/ratings.py`) keeps the fsync from capping "
             f"the rate at one row per fsync.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", START, END, text)


if __name__ == "__main__":
    main()
