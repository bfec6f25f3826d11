"""Steered sweeps: evaluation prompts × α values through one method variant, batch by batch.

A sweep of variant V on concept c renders, for every evaluation prompt p (one seed each) and
every α of V's grid, the clip ``generate(V.prompts(p), seed)`` under ``V.interventions(p, α)``.
Rows go through the model ``batch_size`` at a time, one call per batch. α = 0 is not part of a
variant's sweep: it is the unsteered clip of the prompt, rendered once by the ``none`` sweep and
shared by every method and concept.

Layout of a sweep folder::

    sweep.json            provenance: variant, model (with its weights hash), rows, settings,
                          and a fingerprint of all of them
    audio/<id>.flac       one clip per row
    parts/batch-NNNN.npz  the model's features of each batch (world log-mels on the embedded
                          model; absent on backends without features)
    parts/batch-NNNN.csv  the rows of each finished batch (written last: a batch is done
                          exactly when its CSV exists)
    index.csv             every row (prompt_id, seed, alpha, direction, file, part, offset),
                          written when all batches are done

An interrupted sweep resumes at the first batch without a CSV; a folder made with another
fingerprint (other weights, vector, grid or prompts) is cleared first, never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from tada.io import atomic_path, write_audio, write_csv, write_json
from tada.methods import MethodVariant, SweepRow
from tada.prompts.concepts import SteeringConcept

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["prompt_id", "seed", "alpha", "direction", "file", "part", "offset"]


# ----- prompts and grids ------------------------------------------------------------------------
def prompt_table(prompts: Sequence[str], n_eval: int, n_calibration: int, seed: int = 0) -> pd.DataFrame:
    """The evaluation and calibration prompts: the first `n_eval` prompts of the list evaluate,
    the next `n_calibration` calibrate (disjoint). Columns prompt_id, prompt, seed, role; prompt
    i gets seed ``seed + i``."""
    need = int(n_eval) + int(n_calibration)
    if len(prompts) < need:
        raise ValueError(f"{n_eval} evaluation + {n_calibration} calibration prompts requested but the "
                         f"prompt list has only {len(prompts)}")
    rows = [{"prompt_id": f"p{i:03d}", "prompt": prompts[i], "seed": int(seed) + i,
             "role": "eval" if i < n_eval else "calibration"} for i in range(need)]
    return pd.DataFrame(rows)


def alpha_grid(max_alpha: float, count: int, spacing: str = "linear", integer: bool = False) -> list[float]:
    """`count` positive α values up to `max_alpha`: evenly spaced ("linear": max·k/count) or
    geometric ("geometric": max·2^(k−count), halving towards 0). Integer grids (PCI) round and
    drop repeats."""
    if count < 1 or max_alpha <= 0:
        raise ValueError(f"an α grid needs count >= 1 and max_alpha > 0 (got {count}, {max_alpha})")
    k = np.arange(1, int(count) + 1)
    if spacing == "linear":
        values = max_alpha * k / count
    elif spacing == "geometric":
        values = max_alpha * 2.0 ** (k - count)
    else:
        raise ValueError(f"unknown α spacing '{spacing}': use 'linear' or 'geometric'")
    if integer:
        values = np.unique(np.maximum(1, np.round(values)).astype(int))
    return [float(v) for v in values]


def signed_alphas(pos_max: float | None, neg_max: float | None, count: int, spacing: str = "linear",
                  integer: bool = False) -> list[float]:
    """Signed α values (α = 0 excluded): the positive grid up to `pos_max` and the negative one
    down to −`neg_max` (a None side is left out)."""
    out: list[float] = []
    if neg_max is not None:
        out += [-a for a in reversed(alpha_grid(neg_max, count, spacing, integer))]
    if pos_max is not None:
        out += alpha_grid(pos_max, count, spacing, integer)
    return out


def sweep_rows(prompts: pd.DataFrame, concept: SteeringConcept | None, alphas: Iterable[float]) -> list[SweepRow]:
    """Rows prompts × alphas (prompt-major); `concept` gives each prompt's rewrites (None: a
    multi-concept sweep, whose rows need only the neutral prompt)."""
    rows = []
    for rec in prompts.itertuples(index=False):
        neutral, pos, neg = concept.triple(rec.prompt) if concept is not None else (rec.prompt,) * 3
        for a in alphas:
            rows.append(SweepRow(str(rec.prompt_id), neutral, pos, neg, int(rec.seed), float(a)))
    return rows


def clip_id(row: SweepRow) -> str:
    return f"{row.prompt_id}_a{row.alpha:+.6g}".replace("+", "p").replace("-", "m").replace(".", "_")


# ----- running ------------------------------------------------------------------------------------
def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _prepare(out_dir: Path, meta: dict[str, Any]) -> None:
    """Clear a folder made with another fingerprint; write this sweep's provenance."""
    meta_path = out_dir / "sweep.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text()).get("fingerprint")
        except json.JSONDecodeError:
            old = None
        if old != meta["fingerprint"]:
            log.warning("%s was made with other settings (fingerprint %s, now %s): clearing it", out_dir,
                        old, meta["fingerprint"])
            for sub in ("audio", "parts"):
                shutil.rmtree(out_dir / sub, ignore_errors=True)
            (out_dir / "index.csv").unlink(missing_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)
    write_json(meta_path, meta)


def run_sweep(model: Any, variant: MethodVariant, rows: Sequence[SweepRow], out_dir: str | Path, *,
              batch_size: int | None = None, steps: int | None = None, guidance: float | None = None,
              duration: float | None = None, text_length: int | None = None,
              provenance: dict[str, Any] | None = None, progress: bool = True) -> pd.DataFrame:
    """Render `rows` with `variant` into `out_dir` (layout in the module doc); return the index.

    Resumes an interrupted sweep with the same fingerprint; the index is written last."""
    out_dir = Path(out_dir)
    rows = list(rows)
    if not rows:
        raise ValueError(f"sweep {out_dir} has no rows")
    steps = int(steps or model.default_steps)
    batch_size = int(batch_size or model.batch_size)
    settings = {"steps": steps, "guidance": guidance, "duration": duration, "text_length": text_length,
                "batch_size": batch_size}
    meta = {"format": "tada.sweep", "version": 1, "variant": variant.describe(), "model": model.describe(),
            "settings": settings, "rows": [r.__dict__ for r in rows], "provenance": dict(provenance or {})}
    meta["fingerprint"] = fingerprint({k: meta[k] for k in ("variant", "model", "settings", "rows")})
    _prepare(out_dir, meta)
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    frames = []
    bar = _progress(len(batches), f"{variant.name}", progress)
    for k, batch in enumerate(batches):
        part = out_dir / "parts" / f"batch-{k:04d}.csv"
        if part.exists():
            frames.append(pd.read_csv(part))
            bar.update(1)
            continue
        frames.append(_render_batch(model, variant, batch, out_dir, k, steps=steps, guidance=guidance,
                                    duration=duration, text_length=text_length))
        bar.update(1)
    bar.close()
    index = pd.concat(frames, ignore_index=True)[INDEX_COLUMNS]
    write_csv(out_dir / "index.csv", index)
    return index


def _render_batch(model: Any, variant: MethodVariant, batch: list[SweepRow], out_dir: Path, k: int, *,
                  steps: int, guidance: float | None, duration: float | None,
                  text_length: int | None) -> pd.DataFrame:
    gen = model.generate(variant.prompts(batch), [r.seed for r in batch], steps=steps, guidance=guidance,
                         duration=duration, text_length=text_length,
                         interventions=variant.interventions(model, batch, steps))
    name = f"batch-{k:04d}"
    if gen.features is not None:
        with atomic_path(out_dir / "parts" / f"{name}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=np.asarray(gen.features, dtype=np.float32))
    records = []
    for i, row in enumerate(batch):
        rel = f"audio/{clip_id(row)}.flac"
        write_audio(out_dir / rel, gen.audio[i], gen.sample_rate)
        records.append({"prompt_id": row.prompt_id, "seed": row.seed, "alpha": row.alpha,
                        "direction": row.direction, "file": rel,
                        "part": f"parts/{name}.npz" if gen.features is not None else "", "offset": i})
    frame = pd.DataFrame(records, columns=INDEX_COLUMNS)
    write_csv(out_dir / "parts" / f"{name}.csv", frame)
    return frame


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled)


# ----- reading ------------------------------------------------------------------------------------
class SweepClips:
    """The clips of a finished sweep: its index, and features/audio in index order."""

    def __init__(self, sweep_dir: str | Path):
        self.dir = Path(sweep_dir)
        index_path = self.dir / "index.csv"
        if not index_path.exists():
            raise FileNotFoundError(f"{self.dir}: no index.csv (the sweep did not finish)")
        self.index = pd.read_csv(index_path, keep_default_na=False)
        self.meta = json.loads((self.dir / "sweep.json").read_text())
        self.sample_rate = int(self.meta["model"].get("sample_rate") or 0)

    def features(self, rows: Sequence[int] | None = None) -> np.ndarray | None:
        """Model features (n, ...) of the chosen index rows (None when the sweep has none)."""
        idx = self.index if rows is None else self.index.iloc[list(rows)]
        if idx.empty or not str(idx["part"].iloc[0]):
            return None
        cache: dict[str, np.ndarray] = {}
        out = []
        for part, offset in zip(idx["part"], idx["offset"]):
            if part not in cache:
                with np.load(self.dir / part) as data:
                    cache[part] = data["features"]
            out.append(cache[part][int(offset)])
        return np.stack(out)

    def audio(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Audio (n, samples), mono, of the chosen index rows (zero-padded to the longest)."""
        import soundfile as sf

        idx = self.index if rows is None else self.index.iloc[list(rows)]
        clips = []
        for rel in idx["file"]:
            data, sr = sf.read(self.dir / rel, dtype="float32", always_2d=True)
            clips.append(data.mean(axis=1))
            self.sample_rate = int(sr)
        n = max(len(c) for c in clips)
        return np.stack([np.pad(c, (0, n - len(c))) for c in clips])

    def clips(self, rows: Sequence[int] | None = None):
        """A scorer input (:class:`tada.scorers.Clips`) of the chosen rows: features when the sweep
        has them (the world scorers read log-mels), else audio."""
        from tada.scorers import Clips

        feats = self.features(rows)
        if feats is not None:
            return Clips(None, self.sample_rate, feats, source=_LazyAudio(self, rows))
        return Clips(self.audio(rows), self.sample_rate, None)


class _LazyAudio:
    def __init__(self, sweep: SweepClips, rows: Sequence[int] | None):
        self.sweep, self.rows = sweep, rows
        self.prompts = list(range(len(sweep.index) if rows is None else len(rows)))

    @property
    def audio(self) -> np.ndarray:
        return self.sweep.audio(self.rows)
