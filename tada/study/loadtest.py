"""Load on the study server: concurrent submissions against a real ``tada study serve`` process.

Used by tests/test_study_load.py and bench/bench_study_load.py. A *burst* sends `bodies` from
`clients` concurrent keep-alive HTTP/1.1 connections (plain asyncio streams: a client library
would cost more CPU than the server, on the same cores) and records per submission its HTTP
status (None when the connection failed, e.g. the server was killed) and its latency.
:func:`check_file` then compares the ratings file with what was acknowledged: rows lost (a 2xx
without its row), rows stored twice, and lines that do not parse.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .plan import participant_plan


def submissions(manifest: Mapping[str, Any], count: int, tag: int = 0) -> list[dict[str, Any]]:
    """`count` valid submissions with distinct (participant, trial): every trial of as many
    participants as needed (participant ids made from `tag` and a counter)."""
    out: list[dict[str, Any]] = []
    k = 0
    while len(out) < count:
        participant = f"{tag:08x}-0000-4000-8000-{k:012x}"
        for position, entry in enumerate(participant_plan(manifest, participant)):
            out.append({"participant": participant, "trial": entry["trial"], "trial_index": position,
                        "skill": 1 + k % 5,
                        "samples": [{"sample": s, "listened": True, "visited": [3], "seamless": 1 + (k + i) % 5,
                                     "quality": 3, "smoothness": 4} for i, s in enumerate(entry["samples"])]})
            if len(out) == count:
                break
        k += 1
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``tada study serve`` in a subprocess on a free loopback port."""

    def __init__(self, bundle: str | Path, ratings: str | Path, *, timeout: float = 30.0):
        import urllib.error
        import urllib.request

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tada.cli", "study", "serve", "--bundle", str(bundle), "--port",
               str(self.port), "--ratings", str(ratings)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/", timeout=1.0).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("the server did not answer in time") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Result:
    index: int
    status: int | None
    latency: float


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """One HTTP/1.1 request on an open keep-alive connection: (status, server closes)."""
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status, length, close = int(status_line.split()[1]), 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _burst(url: str, bodies: Sequence[Mapping[str, Any]], clients: int,
                 on_result: Callable[[Result], None] | None) -> list[Result]:
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    requests = []
    for body in bodies:
        data = json.dumps(body).encode()
        requests.append(f"POST /api/submit HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    results: list[Result] = []

    async def worker() -> None:
        conn = None
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, int(port))
                status, close = await _post(*conn, requests[i])
                res = Result(i, status, time.perf_counter() - t)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                res, close = Result(i, None, time.perf_counter() - t), True
            if close and conn is not None:
                conn[1].close()
                conn = None
            results.append(res)
            if on_result is not None:
                on_result(res)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return results


def burst(url: str, bodies: Sequence[Mapping[str, Any]], clients: int = 50,
          on_result: Callable[[Result], None] | None = None) -> tuple[list[Result], float]:
    """(results, wall seconds) of sending every body once from `clients` concurrent clients."""
    t = time.perf_counter()
    results = asyncio.run(_burst(url, bodies, clients, on_result))
    return sorted(results, key=lambda r: r.index), time.perf_counter() - t


def check_file(path: str | Path, acknowledged: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows of the ratings file against the acknowledged submissions: lost (acknowledged, absent),
    duplicated (a key stored more than once), unparsable lines, rows."""
    counts: dict[tuple[str, str], int] = {}
    bad = 0
    data = Path(path).read_bytes() if Path(path).exists() else b""
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            doc = json.loads(line)
            key = (doc["participant"], doc["trial"])
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        counts[key] = counts.get(key, 0) + 1
    lost = [b for b in acknowledged if counts.get((b["participant"], b["trial"]), 0) == 0]
    return {"rows": sum(counts.values()), "lost": len(lost), "duplicated": sum(1 for n in counts.values() if n > 1),
            "unparsable": bad, "ends_with_newline": data.endswith(b"\n") or not data}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    v = sorted(values)
    if not v:
        return float("nan")
    rank = max(1, int(-(-q * len(v) // 100)))
    return v[min(rank, len(v)) - 1]
