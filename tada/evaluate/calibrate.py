"""Per-method α ranges that reach the PCI distortion cutoff.

Cutoff. For a concept and a direction, each PCI variant's largest mean preservation distance
over its α grid (mean over the evaluation prompts) is measured; the cutoff d* is the smallest
of these over the PCI variants (global and localized PCI).

Search. For every other variant and direction, α_max is chosen so that the mean distance over a
few calibration prompts (disjoint from the evaluation prompts), d(α_max), is about d*:

1. a geometric grid ``start · factor^k`` (k centred on 0, ``grid_points`` values);
2. ``rounds`` refinements: with a bracket (largest α with d ≤ d*, smallest α with d > d*) the
   next α is the log-linear interpolation of the bracket at d*; without one the range is
   extended by factor² past the last point;
3. α_max = the interpolation of the final bracket at d* (or the largest α below d* when the
   cutoff was never crossed, or the smallest α when even that exceeds it; ``reached`` says which).

A direction whose cutoff is 0 (the PCI variants do not change the audio on that side, e.g. a
negative prompt equal to the neutral one) has no range to reach: it is not searched, its
``alpha_max`` is None (the sweeps leave that side out) and ``skipped`` says why.

Every evaluation of every variant and direction of one round goes through the model in shared
batches: each variant's α is 0 on the other variants' rows, which leaves them untouched.
The trace of (α, d) pairs is saved with the result.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tada.methods import MethodVariant, SweepRow
from tada.scorers.lpaps import lpaps

from .sweep import SweepClips

log = logging.getLogger(__name__)
DIRECTIONS = {"pos": 1.0, "neg": -1.0}


def pci_cutoffs(pci_scores: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """{"pos": d*, "neg": d*}: per direction, the smallest over the PCI variants of their
    largest mean preservation distance (means over prompts, per α)."""
    if not pci_scores:
        raise ValueError("the cutoff needs the scores of at least one PCI variant")
    out = {}
    for direction, sign in DIRECTIONS.items():
        maxima = []
        for name, frame in pci_scores.items():
            side = frame[np.sign(frame["alpha"]) == sign]
            if side.empty:
                raise ValueError(f"PCI variant '{name}' has no {direction} α values")
            maxima.append(float(side.groupby("alpha")["preservation"].mean().max()))
        out[direction] = min(maxima)
    return out


def _next_alpha(trace: list[tuple[float, float]], cutoff: float, factor: float) -> tuple[float, bool]:
    """The next α to try (or the final estimate) and whether the cutoff lies inside the trace."""
    below = [(a, d) for a, d in trace if d <= cutoff]
    above = [(a, d) for a, d in trace if d > cutoff]
    if below and above:
        lo = max(below)
        hi = min((p for p in above if p[0] > lo[0]), default=None)
        if hi is None:  # d is not monotone here: take the largest α that stays inside
            return lo[0], True
        if hi[1] == lo[1]:
            return lo[0], True
        t = (cutoff - lo[1]) / (hi[1] - lo[1])
        return float(math.exp(math.log(lo[0]) + t * (math.log(hi[0]) - math.log(lo[0])))), True
    if below:
        return max(a for a, _ in below) * factor ** 2, False
    return min(a for a, _ in above) / factor ** 2, False


def calibrate(model: Any, variants: Sequence[MethodVariant], prompts: pd.DataFrame, baseline: SweepClips,
              lpaps_scorer: Any, cutoffs: Mapping[str, float], *, rows_for, start: float = 1.0,
              factor: float = 4.0, grid_points: int = 3, rounds: int = 2, steps: int | None = None,
              guidance: float | None = None, duration: float | None = None, text_length: int | None = None,
              batch_size: int | None = None, progress: bool = True) -> dict[str, Any]:
    """α_max per (variant, direction) so that the mean preservation distance on `prompts` reaches
    about `cutoffs[direction]`; `rows_for(prompts, alpha)` makes the rows of one α.

    Returns ``{variant: {direction: {"alpha_max", "reached", "trace": [[α, d], ...]}}}`` (plus
    ``skipped`` with α_max None for a direction whose cutoff is 0)."""
    steps = int(steps or model.default_steps)
    batch_size = int(batch_size or model.batch_size)
    sides = [d for d in DIRECTIONS if cutoffs[d] > 0]
    out: dict[str, Any] = {}
    for d in DIRECTIONS:
        if d not in sides:
            log.warning("%s side: the cutoff is %.4g (PCI leaves the audio unchanged); not calibrated", d, cutoffs[d])
            for v in variants:
                out.setdefault(v.name, {})[d] = {
                    "alpha_max": None, "reached": False, "trace": [],
                    "skipped": f"cutoff {cutoffs[d]:.4g}: the PCI variants do not change the audio on this side"}
    traces: dict[tuple[str, str], list[tuple[float, float]]] = {
        (v.name, d): [] for v in variants for d in sides}
    k = np.arange(grid_points) - (grid_points - 1) / 2
    pending = {key: [float(start * factor ** e) for e in k] for key in traces}
    by_name = {v.name: v for v in variants}
    for round_ in range(rounds + 1 if traces else 0):
        jobs = [(name, d, a) for (name, d), alphas in pending.items() for a in alphas]
        results = _evaluate(model, by_name, jobs, prompts, baseline, lpaps_scorer, rows_for, steps=steps,
                            guidance=guidance, duration=duration, text_length=text_length,
                            batch_size=batch_size)
        for (name, d, a), dist in zip(jobs, results):
            traces[(name, d)].append((a, dist))
        log.info("calibration round %d: %d evaluations", round_, len(jobs))
        if round_ == rounds:
            break
        pending = {key: [_next_alpha(trace, cutoffs[key[1]], factor)[0]] for key, trace in traces.items()}
    for (name, d), trace in traces.items():
        alpha, reached = _next_alpha(trace, cutoffs[d], factor)
        if not reached:  # never crossed: the nearest evaluated α on the inside (or the smallest)
            below = [a for a, dist in trace if dist <= cutoffs[d]]
            alpha = max(below) if below else min(a for a, _ in trace)
        out.setdefault(name, {})[d] = {"alpha_max": float(alpha), "reached": bool(reached),
                                       "trace": [[float(a), float(x)] for a, x in sorted(trace)]}
        if not reached:
            log.warning("%s %s: the search did not bracket the cutoff %.4f; α_max = %.4g", name, d,
                        cutoffs[d], alpha)
    return out


def _evaluate(model: Any, variants: Mapping[str, MethodVariant], jobs: list[tuple[str, str, float]],
              prompts: pd.DataFrame, baseline: SweepClips, lpaps_scorer: Any, rows_for, *, steps: int,
              guidance, duration, text_length, batch_size: int) -> list[float]:
    """Mean preservation distance over `prompts` of every (variant, direction, |α|) job."""
    tagged: list[tuple[int, SweepRow]] = []
    for j, (_, d, a) in enumerate(jobs):
        tagged += [(j, row) for row in rows_for(prompts, DIRECTIONS[d] * a)]
    base_index = {(str(p), int(s)): i for i, (p, s) in enumerate(zip(baseline.index["prompt_id"],
                                                                      baseline.index["seed"]))}
    dists = np.zeros(len(tagged))
    for start in range(0, len(tagged), batch_size):
        chunk = tagged[start:start + batch_size]
        rows = [row for _, row in chunk]
        ivs = []
        for name in dict.fromkeys(jobs[j][0] for j, _ in chunk):
            own = [row if jobs[j][0] == name else row.with_alpha(0.0) for j, row in chunk]
            ivs += variants[name].interventions(model, own, steps)
        gen = model.generate([r.neutral for r in rows], [r.seed for r in rows], steps=steps, guidance=guidance,
                             duration=duration, text_length=text_length, interventions=ivs)
        ref = baseline.clips([base_index[(r.prompt_id, r.seed)] for r in rows])
        dists[start:start + len(chunk)] = lpaps(lpaps_scorer, gen, ref)
    job_of = np.array([j for j, _ in tagged])
    return [float(dists[job_of == j].mean()) for j in range(len(jobs))]
