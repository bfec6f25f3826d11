"""Datasets of rendered world clips: log-mels, ground-truth attributes, captions, seeds.

Clip attributes, render seeds and captions are drawn from generators seeded by
``(seed, split)``, so the same call always returns the same data and the "train" and
"heldout" splits of one seed hold different clips (no accidental overlap).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tada.io import atomic_path, write_text
from tada.world.attributes import CONCEPT_VALUES, ClipAttributes, sample_attributes
from tada.world.captions import SPLITS, caption
from tada.world.features import N_MELS, SR, log_mel, n_frames
from tada.world.render import Renderer

_SPLIT_ID = {name: i for i, name in enumerate(SPLITS)}
_STREAM_ATTRS, _STREAM_SEEDS, _STREAM_CAPTIONS = 0, 1, 2


@dataclass
class WorldDataset:
    """Rendered clips: ``mels`` (n, frames, n_mels), one attribute set, caption and seed each."""

    mels: np.ndarray
    attributes: list[ClipAttributes]
    captions: list[str]
    seeds: np.ndarray
    split: str = "train"
    duration: float = 4.0
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.attributes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"mel": self.mels[i], "attributes": self.attributes[i], "caption": self.captions[i],
                "seed": int(self.seeds[i])}

    def to_table(self):
        """One row per clip: index, seed, caption and every attribute."""
        import pandas as pd

        rows = []
        for i, (a, c, s) in enumerate(zip(self.attributes, self.captions, self.seeds)):
            rows.append({"index": i, "seed": int(s), "caption": c, **a.to_dict()})
        cols = ["index", "seed", "caption", *CONCEPT_VALUES]
        return pd.DataFrame(rows, columns=cols)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "WorldDataset":
        idx = np.asarray(idx, dtype=int)
        return WorldDataset(self.mels[idx], [self.attributes[i] for i in idx],
                            [self.captions[i] for i in idx], self.seeds[idx], self.split,
                            self.duration, dict(self.info))

    def _meta(self) -> dict[str, Any]:
        return {"attributes": [a.to_dict() for a in self.attributes], "captions": list(self.captions),
                "seeds": [int(s) for s in self.seeds], "split": self.split,
                "duration": float(self.duration), "info": self.info}

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``*.npz`` (one file) or to a directory (``mels.safetensors`` + ``meta.json``)."""
        path = Path(path)
        meta = self._meta()
        if path.suffix == ".npz":
            with atomic_path(path) as tmp:
                np.savez(tmp, mels=self.mels, meta=np.array(json.dumps(meta)))
            return path
        from safetensors.numpy import save_file

        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "mels.safetensors") as tmp:
            save_file({"mels": np.ascontiguousarray(self.mels)}, str(tmp))
        write_text(path / "meta.json", json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WorldDataset":
        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                mels = data["mels"]
                meta = json.loads(str(data["meta"]))
        else:
            from safetensors.numpy import load_file

            mels = load_file(str(path / "mels.safetensors"))["mels"]
            meta = json.loads((path / "meta.json").read_text())
        return cls(mels=mels, attributes=[ClipAttributes.from_dict(d) for d in meta["attributes"]],
                   captions=list(meta["captions"]), seeds=np.asarray(meta["seeds"], dtype=np.int64),
                   split=meta.get("split", "train"), duration=float(meta.get("duration", 4.0)),
                   info=meta.get("info", {}))


def load_dataset(path: str | os.PathLike) -> WorldDataset:
    """Load a dataset written by :meth:`WorldDataset.save`."""
    return WorldDataset.load(path)


def _stream(seed: int, split: str, stream: int) -> np.random.Generator:
    if split not in _SPLIT_ID:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, _SPLIT_ID[split], stream])


def sample_clips(n: int, seed: int, split: str = "train") -> tuple[list[ClipAttributes], np.ndarray]:
    """The attributes and render seeds of the first `n` clips of ``(seed, split)``."""
    ra = _stream(seed, split, _STREAM_ATTRS)
    attrs = [sample_attributes(ra) for _ in range(n)]
    seeds = _stream(seed, split, _STREAM_SEEDS).integers(0, 2**31 - 1, size=n, dtype=np.int64)
    return attrs, seeds


def _render_jobs(jobs: list[tuple[dict, int]], duration: float) -> np.ndarray:
    r = Renderer(SR)
    return np.stack([log_mel(r.render(ClipAttributes.from_dict(a), int(s), duration))
                     for a, s in jobs]).astype(np.float16)


def _worker_main() -> None:
    """Entry point of a rendering subprocess: pickled jobs on stdin, pickled mels written to the
    file named by the last argument (not stdout: the synthesizer library may print there)."""
    import pickle
    import sys

    jobs, duration = pickle.load(sys.stdin.buffer)
    out = _render_jobs(jobs, duration)
    with open(sys.argv[-1], "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)


def _render_in_subprocesses(jobs: list[tuple[dict, int]], duration: float, n_workers: int,
                            bar) -> np.ndarray:
    """Render jobs in `n_workers` fresh Python processes (no fork of a process that may hold
    BLAS or torch thread pools, and no ``__main__`` guard needed by the caller)."""
    import pickle
    import subprocess
    import sys
    import threading

    import tada

    root = os.path.dirname(os.path.dirname(os.path.abspath(tada.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    parts = [list(range(i, len(jobs), n_workers)) for i in range(n_workers)]
    parts = [p for p in parts if p]
    results: dict[int, Any] = {}

    tmp = tempfile.TemporaryDirectory(prefix="tada-render-")

    def run(k: int) -> None:
        target = os.path.join(tmp.name, f"part{k}.pkl")
        try:
            proc = subprocess.run(
                [sys.executable, "-c", "from tada.world.dataset import _worker_main; _worker_main()", target],
                input=pickle.dumps(([jobs[i] for i in parts[k]], duration)), capture_output=True, env=env)
            if proc.returncode != 0 or not os.path.exists(target):
                log = (proc.stdout + proc.stderr).decode(errors="replace")[-2000:]
                results[k] = RuntimeError(f"render worker {k} failed (exit {proc.returncode}):\n{log}")
                return
            with open(target, "rb") as f:
                results[k] = pickle.load(f)
            bar(len(parts[k]))
        except Exception as e:  # reported in the caller's thread below
            results[k] = RuntimeError(f"render worker {k} failed: {e!r}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tmp.cleanup()
    out = np.zeros((len(jobs), n_frames(duration), N_MELS), dtype=np.float16)
    for k, idx in enumerate(parts):
        if isinstance(results.get(k), Exception) or k not in results:
            raise results.get(k, RuntimeError("render worker returned nothing"))
        out[idx] = results[k]
    return out


def render_mels(attributes: Sequence[ClipAttributes], seeds: Iterable[int], duration: float = 4.0,
                n_workers: int = 1, progress: bool = False, renderer=None) -> np.ndarray:
    """Log-mels ``(n, frames, n_mels)`` float16 of clips rendered from attributes and seeds.

    With ``n_workers > 1`` the clips are split over that many fresh Python processes; the
    result is identical to the single-process one.
    """
    seeds = [int(s) for s in seeds]
    n = len(attributes)
    out = np.zeros((n, n_frames(duration), N_MELS), dtype=np.float16)
    if n == 0:
        return out
    bar = _progress(n, progress)
    if n_workers <= 1 or n < 2 * n_workers:
        r = renderer or Renderer(SR)
        for i, (a, s) in enumerate(zip(attributes, seeds)):
            out[i] = log_mel(r.render(a, s, duration))
            bar(1)
        return out
    jobs = [(a.to_dict(), s) for a, s in zip(attributes, seeds)]
    return _render_in_subprocesses(jobs, duration, int(n_workers), bar)


def _progress(total: int, enabled: bool):
    if not enabled:
        return lambda k: None
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="rendering", unit="clip")
        return bar.update
    except ImportError:
        state = {"done": 0}

        def update(k: int) -> None:
            state["done"] += k
            if state["done"] == total or state["done"] % max(1, total // 10) < k:
                print(f"rendered {state['done']}/{total}", flush=True)

        return update


def make_dataset(n: int, seed: int, split: str = "train", duration: float = 4.0, n_workers: int = 1,
                 progress: bool = False) -> WorldDataset:
    """Render `n` clips with balanced random attributes and one caption each (in `split`'s phrasing)."""
    attrs, seeds = sample_clips(n, seed, split)
    rc = _stream(seed, split, _STREAM_CAPTIONS)
    caps = [caption(a, rc, split) for a in attrs]
    mels = render_mels(attrs, seeds, duration, n_workers=n_workers, progress=progress)
    return WorldDataset(mels=mels, attributes=attrs, captions=caps, seeds=np.asarray(seeds, dtype=np.int64),
                        split=split, duration=float(duration),
                        info={"seed": int(seed), "sample_rate": SR})


MUSICCAPS_COLUMNS = ("ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
                     "author_id", "is_balanced_subset", "is_audioset_eval")

_ASPECTS = {
    "lead": {"piano": "piano", "violin": "violin", "acoustic_guitar": "acoustic guitar",
             "electric_guitar": "electric guitar", "flute": "flute", "trumpet": "trumpet"},
    "tempo": {"slow": "slow tempo", "fast": "fast tempo"},
    "mood": {"happy": "happy", "sad": "sad"},
    "genre": {g: g for g in CONCEPT_VALUES["genre"]},
    "vocal": {"female": "female vocal", "male": "male vocal", "none": "instrumental"},
    "vocal_style": {"sung": "singing", "rap": "rap", "none": None},
}


def aspect_list(attrs: ClipAttributes) -> list[str]:
    """MusicCaps-style aspect tags of a clip."""
    tags = [_ASPECTS[k][getattr(attrs, k)] for k in ("lead", "tempo", "mood", "genre", "vocal", "vocal_style")]
    if attrs.drums:
        tags.append("drums")
    if attrs.maracas:
        tags.append("maracas")
    return [t for t in tags if t]


def write_musiccaps_csv(path: str | os.PathLike, n: int, seed: int, split: str = "train",
                        duration: float = 4.0) -> Path:
    """Write `n` world captions as a MusicCaps-format CSV (no audio is rendered).

    Columns are MusicCaps' own; ``ytid`` is a stable id ``w<seed>-<index>``, the clip spans
    ``[0, duration]``, ``audioset_positive_labels`` is AudioSet's "Music" label, ``aspect_list``
    holds the ground-truth tags as a Python-list string, and ``author_id`` is the template
    family (0 for the train phrasing, 1 for held-out).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    attrs, _ = sample_clips(n, seed, split)
    rc = _stream(seed, split, _STREAM_CAPTIONS)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MUSICCAPS_COLUMNS)
        for i, a in enumerate(attrs):
            w.writerow([f"w{seed}-{i:06d}", 0, int(round(duration)), "/m/04rlf",
                        repr(aspect_list(a)), caption(a, rc, split), _SPLIT_ID[split],
                        False, False])
    return path
