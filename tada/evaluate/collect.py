"""From per-clip scores to the tables' inputs.

* :func:`per_alpha`: one row per (method, concept, α) with the mean over evaluation prompts of
  the preservation distance and of every alignment score; the α = 0 row (preservation 0,
  alignment of the unsteered clips) is added to every method's curve.
* :func:`responds`: does the model do the concept at all? The alignment gain of global PCI at
  |α| = T (the prompt itself switched), g = mean over prompts and both directions of
  sign·(s(±T) − s(0)), with its standard error over those values; a concept responds when
  g > 2·SE.
* :func:`frechet_quality`: the Fréchet distance, in the CLAP audio-embedding space, between the
  clips of each method variant at each α bucket (the k-th α of its grid, both directions and
  all concepts pooled) and a reference set of real (rendered) clips. The plug-in estimate is
  biased upwards, and the bias depends on the set: its size (the sample covariance of n clips in
  a wide embedding space is far from the population one) and its diversity (a bucket pools the
  same few prompts and seeds over every concept and direction, so at small α it holds near
  copies of a few clips). Raw distances of sets built differently therefore do not compare. The
  reference is split once (fixed seed) into a yardstick half Y and a pool half P, and:

  - every set X is measured as FD(X, Y);
  - a steered bucket is compared with its *unsteered counterparts* X₀ (the α = 0 clip of each of
    its clips' prompt and seed, repeated as often): ``delta = FD(X, Y) − FD(X₀, Y)``, the change
    in distance that steering caused, at identical size and prompt make-up;
  - the unsteered clips are compared with as many reference clips: ``excess = FD(X, Y) − floor(n)``
    with floor(n) the mean of FD(S, Y) over ``draws`` random n-subsets S of P (n capped at |P|),
    near 0 when the model's clips are as close to the reference as real ones.

  With few prompts (the default run has 4) a bucket's distance mostly measures its spread, so
  a per-clip measure is reported beside it: ``knn`` = the mean over the bucket's clips of each
  clip's mean Euclidean distance to its k = 5 nearest reference clips, and ``knn_delta`` = that
  minus the same for the unsteered counterparts (0 = unchanged, higher = farther from real clips).

* :func:`descriptor_correlation`: Pearson r between each alignment score and each external
  descriptor over all clips of a concept (the paper's table 8).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tada.scorers.frechet import frechet_distance

DESCRIPTOR_COLUMNS = ("onset_rate", "spectral_centroid", "pitch_register")


def align_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("align_") and "__" not in c]


def baseline_for(baseline: pd.DataFrame, concept: str) -> pd.DataFrame:
    """The α = 0 scores with one concept's alignment columns renamed to ``align_<scorer>``."""
    suffix = f"__{concept}"
    cols = {c: c[: -len(suffix)] for c in baseline.columns if c.startswith("align_") and c.endswith(suffix)}
    if not cols:
        raise KeyError(f"the α = 0 scores have no alignment columns for concept '{concept}'")
    keep = ["prompt_id", "seed", "alpha", "preservation", *DESCRIPTOR_COLUMNS]
    return baseline[[c for c in keep if c in baseline.columns] + list(cols)].rename(columns=cols)


def per_alpha(scores: Mapping[tuple[str, str], pd.DataFrame], baseline: pd.DataFrame,
              prompt_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean over prompts per (method, concept, α) of preservation and alignment; `scores` maps
    (method, concept) to that sweep's per-clip scores. `prompt_ids` restricts the prompts."""
    out = []
    for (method, concept), frame in scores.items():
        base = baseline_for(baseline, concept)
        both = pd.concat([base.assign(alpha=0.0), frame], ignore_index=True)
        if prompt_ids is not None:
            both = both[both["prompt_id"].isin(list(prompt_ids))]
        cols = ["preservation", *align_columns(frame)]
        mean = both.groupby("alpha", as_index=False)[cols].mean()
        mean.insert(0, "concept", concept)
        mean.insert(0, "method", method)
        mean["n_prompts"] = both.groupby("alpha")["prompt_id"].nunique().to_numpy()
        out.append(mean)
    frame = pd.concat(out, ignore_index=True)
    return frame.sort_values(["method", "concept", "alpha"], kind="stable").reset_index(drop=True)


def responds(pci_scores: Mapping[str, pd.DataFrame], baseline: pd.DataFrame, steps: int,
             scorer: str) -> pd.DataFrame:
    """Per concept: PCI's alignment gain at |α| = T (`scorer`'s column), its SE and the flag."""
    rows = []
    for concept, frame in pci_scores.items():
        base = baseline_for(baseline, concept).set_index(["prompt_id", "seed"])[f"align_{scorer}"]
        gains = []
        for sign in (1, -1):
            full = frame[frame["alpha"] == sign * steps]
            for rec in full.itertuples(index=False):
                gains.append(sign * (getattr(rec, f"align_{scorer}") - base[(rec.prompt_id, rec.seed)]))
        g = np.asarray(gains, dtype=float)
        mean = float(g.mean()) if g.size else float("nan")
        se = float(g.std(ddof=1) / np.sqrt(g.size)) if g.size > 1 else float("nan")
        rows.append({"concept": concept, "scorer": scorer, "pci_gain": mean, "pci_gain_se": se, "n": int(g.size),
                     "responds": bool(g.size > 1 and mean > 2 * se)})
    return pd.DataFrame(rows)


def alpha_buckets(frame: pd.DataFrame) -> pd.Series:
    """1-based rank of |α| within its direction's grid (the k-th α of each side share bucket k;
    α = 0 is bucket 0)."""
    out = pd.Series(0, index=frame.index)
    for sign in (1, -1):
        side = frame["alpha"][np.sign(frame["alpha"]) == sign].abs()
        order = {a: i + 1 for i, a in enumerate(sorted(set(side)))}
        out[side.index] = side.map(order)
    return out


class FrechetYardstick:
    """The reference split into a yardstick half and a pool half (module docstring)."""

    def __init__(self, reference: np.ndarray, *, draws: int = 16, seed: int = 0):
        reference = np.asarray(reference, dtype=np.float64)
        if len(reference) < 4:
            raise ValueError(f"the Fréchet reference set needs at least 4 clips, got {len(reference)}")
        order = np.random.default_rng(seed).permutation(len(reference))
        half = len(reference) // 2
        self.yardstick, self.pool = reference[order[:half]], reference[order[half:]]
        self.draws, self.seed = int(draws), int(seed)
        self._floors: dict[int, float] = {}

    def floor(self, n: int) -> float:
        """Mean FD(S, yardstick) over random n-subsets S of the pool (n capped at the pool size)."""
        n = max(2, min(int(n), len(self.pool)))
        if n not in self._floors:
            rng = np.random.default_rng([self.seed, n])
            draws = 1 if n == len(self.pool) else self.draws
            self._floors[n] = float(np.mean([
                frechet_distance(self.pool[rng.choice(len(self.pool), n, replace=False)], self.yardstick)
                for _ in range(draws)]))
        return self._floors[n]

    def row(self, emb: np.ndarray) -> dict[str, float]:
        fd, floor = frechet_distance(emb, self.yardstick), self.floor(len(emb))
        return {"n": len(emb), "frechet": fd, "floor": floor, "excess": fd - floor}


def knn_distance(emb: np.ndarray, reference: np.ndarray, k: int = 5) -> np.ndarray:
    """Per row of `emb`: the mean Euclidean distance to its `k` nearest rows of `reference`."""
    emb, reference = np.asarray(emb, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    d2 = (emb ** 2).sum(1)[:, None] + (reference ** 2).sum(1)[None, :] - 2.0 * emb @ reference.T
    d = np.sqrt(np.clip(d2, 0.0, None))
    k = min(int(k), reference.shape[0])
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


def frechet_quality(embeddings: Mapping[tuple[str, str], tuple[pd.DataFrame, np.ndarray]],
                    baseline: tuple[pd.DataFrame, np.ndarray], reference: np.ndarray, *,
                    draws: int = 16, seed: int = 0) -> pd.DataFrame:
    """Fréchet distance to the reference per method variant and α bucket (bucket 0 = the α = 0
    clips, shared by every method), concepts and directions pooled: FD, the n-matched floor and
    the excess over it, and for steered buckets the FD of their unsteered counterparts and the
    delta (module docstring)."""
    yard = FrechetYardstick(reference, draws=draws, seed=seed)
    base_frame, base_emb = baseline
    base_row = {(str(p), int(s)): i for i, (p, s) in enumerate(zip(base_frame["prompt_id"], base_frame["seed"]))}
    pooled: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for (method, concept), (frame, emb) in embeddings.items():
        buckets = alpha_buckets(frame).to_numpy()
        keys = list(zip(frame["prompt_id"].astype(str), frame["seed"].astype(int)))
        missing = sorted({k for k in keys if k not in base_row})
        if missing:
            raise KeyError(f"{method} / {concept}: no α = 0 clip for prompt and seed {missing[:3]}")
        counterpart = base_emb[[base_row[k] for k in keys]]
        for b in np.unique(buckets):
            pooled.setdefault((method, int(b)), []).append((emb[buckets == b], counterpart[buckets == b]))
    ref = np.asarray(reference, dtype=np.float64)
    rows = [{"method": "none", "bucket": 0, **yard.row(base_emb), "unsteered_frechet": float("nan"),
             "delta": float("nan"), "knn": float(knn_distance(base_emb, ref).mean()), "knn_delta": float("nan")}]
    for (method, b), parts in sorted(pooled.items()):
        steered = np.concatenate([p for p, _ in parts])
        unsteered = frechet_distance(np.concatenate([c for _, c in parts]), yard.yardstick)
        row = yard.row(steered)
        knn = float(knn_distance(steered, ref).mean())
        knn0 = float(knn_distance(np.concatenate([c for _, c in parts]), ref).mean())
        rows.append({"method": method, "bucket": b, **row, "unsteered_frechet": unsteered,
                     "delta": row["frechet"] - unsteered, "knn": knn, "knn_delta": knn - knn0})
    return pd.DataFrame(rows)


def descriptor_correlation(clips: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Pearson r between every alignment column and every descriptor, per concept (`clips` maps
    a concept to all its per-clip scores, every method and the α = 0 clips together)."""
    rows = []
    for concept, frame in clips.items():
        for col in align_columns(frame):
            for desc in DESCRIPTOR_COLUMNS:
                if desc not in frame:
                    continue
                x, y = frame[col].to_numpy(float), frame[desc].to_numpy(float)
                ok = np.isfinite(x) & np.isfinite(y)
                r = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 and np.std(y[ok]) > 0 else float("nan")
                rows.append({"concept": concept, "scorer": col[len("align_"):], "descriptor": desc,
                             "pearson_r": r, "n": int(ok.sum())})
    return pd.DataFrame(rows)
