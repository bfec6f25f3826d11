"""Per-clip scores of a sweep: alignment, preservation, descriptors and the quality embedding.

For every clip x of a sweep (one row of its index):

* ``align_<scorer>``: s(x) = the scorer's similarity of x to the concept's alignment text
  (``align_<scorer>__<concept>`` per constituent for a multi-concept sweep, and for the α = 0
  clips, which every concept shares);
* ``preservation``: d = LPAPS(x, x₀) with x₀ the α = 0 clip of the same prompt and seed
  (:mod:`tada.scorers.lpaps`);
* ``onset_rate``, ``spectral_centroid``, ``pitch_register``: the external descriptors of
  :mod:`tada.scorers.descriptors` (on the world log-mels where the sweep has them);
* the CLAP audio embedding of x, kept beside the table for the Fréchet distance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from tada.io import atomic_path, write_csv
from tada.scorers.descriptors import onset_rate, pitch_register, spectral_centroid
from tada.scorers.lpaps import lpaps

from .sweep import SweepClips

log = logging.getLogger(__name__)

DESCRIPTORS = {"onset_rate": onset_rate, "spectral_centroid": spectral_centroid,
               "pitch_register": pitch_register}


def align_column(scorer: str, concept: str = "") -> str:
    return f"align_{scorer}" + (f"__{concept}" if concept else "")


def _baseline_rows(sweep: SweepClips, baseline: SweepClips) -> list[int]:
    """For every row of `sweep`, the row of `baseline` with the same prompt and seed."""
    where = {(str(p), int(s)): i for i, (p, s) in enumerate(zip(baseline.index["prompt_id"], baseline.index["seed"]))}
    out = []
    for p, s in zip(sweep.index["prompt_id"], sweep.index["seed"]):
        key = (str(p), int(s))
        if key not in where:
            raise KeyError(f"{baseline.dir}: no α = 0 clip for prompt {key[0]} seed {key[1]} "
                           f"(needed by {sweep.dir})")
        out.append(where[key])
    return out


def score_sweep(sweep: SweepClips, baseline: SweepClips | None, *, alignment: Mapping[str, Any],
                texts: Mapping[str, str], lpaps_scorer: Any, batch: int = 32,
                descriptors: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Scores of every clip of `sweep` (one row per index row) and their CLAP embeddings.

    `alignment` maps a scorer name to a :class:`~tada.scorers.Scorer`; `texts` maps a column
    suffix ("" for a single concept, the concept id otherwise) to its alignment text.
    `baseline` None scores the α = 0 clips themselves (preservation 0)."""
    index = sweep.index
    n = len(index)
    base_rows = None if baseline is None else _baseline_rows(sweep, baseline)
    columns: dict[str, list[float]] = {}
    embeddings = []
    for start in range(0, n, batch):
        rows = list(range(start, min(n, start + batch)))
        clips = sweep.clips(rows)
        for name, scorer in alignment.items():
            sims = scorer.similarity(clips, list(texts.values()))
            for j, suffix in enumerate(texts):
                columns.setdefault(align_column(name, suffix), []).extend(sims[:, j].tolist())
        if base_rows is None:
            columns.setdefault("preservation", []).extend([0.0] * len(rows))
        else:
            ref = baseline.clips([base_rows[i] for i in rows])
            columns.setdefault("preservation", []).extend(lpaps(lpaps_scorer, clips, ref).tolist())
        embeddings.append(lpaps_scorer.embed_audio(clips).cpu().numpy())
        if descriptors:
            feats = clips.features
            for name, fn in DESCRIPTORS.items():
                values = fn(feats, from_mel=True) if feats is not None else fn(clips.audio, sr=clips.sample_rate)
                columns.setdefault(name, []).extend(np.atleast_1d(values).astype(float).tolist())
    out = index[["prompt_id", "seed", "alpha", "direction", "file"]].copy()
    for col, values in columns.items():
        out[col] = values
    return out, np.concatenate(embeddings).astype(np.float32)


def write_scores(scores: pd.DataFrame, embeddings: np.ndarray, path: str | Path) -> None:
    """`scores.csv` and, beside it, `embeddings.npy` (same row order), both atomically."""
    path = Path(path)
    with atomic_path(path.with_name("embeddings.npy")) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, embeddings)
    write_csv(path, scores)


def read_scores(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no scores at {path}")
    return pd.read_csv(path), np.load(path.with_name("embeddings.npy"))
