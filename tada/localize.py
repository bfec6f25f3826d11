"""Layer localization by activation patching (and by ablation).

For a counterfactual pair (target p+ has the concept, source p- does not) and a seed, with s(x)
the scorer's similarity of clip x to the concept's alignment text:

* ``mode="patch"``: run the target with a key/value :class:`~tada.models.interventions.Capture`,
  then the source with layer l's keys and values replaced by the target's (every step, both CFG
  branches); ``I(l) = (s(patched_l) - s(source)) / (s(target) - s(source))``.
* ``mode="ablate"``: zero layer l's output in the target run;
  ``I(l) = (s(target) - s(ablated_l)) / (s(target) - s(source))``.
* ``mode="attribution"``: the first-order estimate of patch mode's ``s(patched_l) - s(source)``
  for every layer from one backward pass (:mod:`tada.attribution`); same impact formula, the
  raw table's ``s_patched`` is ``s(source)`` plus the estimate.

The impact of a layer for a concept is the mean of I(l) over pairs and seeds; pairs whose
denominator ``s(target) - s(source)`` is below ``min_denominator`` are skipped and counted.
Besides one copy per layer, every (pair, seed) also gets a copy with *all* layers patched
(ablated), the check that patching everything reproduces the target (impact 1 when text enters
the model only through cross-attention).

Work is batched: the targets of several (pair, seed) units run in one batch, and the source
copies (one unpatched, one per layer, one with all layers) of all those units are packed into
batches of ``model.batch_size``, each copy with its own
:class:`~tada.models.interventions.PatchKV` restricted to its row.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MODES = ("patch", "ablate", "attribution")
RAW_COLUMNS = ("concept", "mode", "pair_id", "seed", "text_length", "layer", "layer_name", "s_target",
               "s_source", "s_patched", "denominator", "impact", "skipped")
IMPACT_COLUMNS = ("layer", "layer_name", "impact_mean", "impact_stderr", "n", "n_skipped")
#: `layer` value of the raw rows for the copy with every layer patched (ablated)
ALL_LAYERS = -1


@dataclass
class LocalizationResult:
    """Raw per-(pair, seed, layer) rows, the per-layer impact table and a summary."""

    concept: str
    raw: pd.DataFrame
    impact: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    #: attribution mode: per (pair, seed, layer, step, branch) first-order terms (raw_steps.csv)
    raw_steps: pd.DataFrame | None = None

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``impact.csv``, ``raw.csv`` and ``summary.json`` into `out_dir` (atomically); the
        summary records the model's description and ``weights_sha256``."""
        from tada.io import write_csv, write_json

        out = Path(out_dir)
        paths = {"impact": out / "impact.csv", "raw": out / "raw.csv", "summary": out / "summary.json"}
        write_csv(paths["raw"], self.raw)
        if self.raw_steps is not None:
            paths["raw_steps"] = out / "raw_steps.csv"
            write_csv(paths["raw_steps"], self.raw_steps)
        elif (out / "raw_steps.csv").exists():  # left by an attribution run into the same directory
            (out / "raw_steps.csv").unlink()
        write_json(paths["summary"], self.summary)
        write_csv(paths["impact"], self.impact)
        return paths


@dataclass
class _Unit:
    pair_id: str
    target: str
    source: str
    seed: int
    text_length: int


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def pair_text_length(model: Any, target: str, source: str) -> int:
    """Token count both prompts of a pair are padded to.

    The larger of the two prompts' counts, and at least the model's own padding length when it
    has one (``model.text_length``; the embedded model attends to padding tokens, so it must
    see the length it was trained with).
    """
    from tada.prompts import common_text_length

    n = common_text_length(model.token_count, target, source)
    default = getattr(model, "text_length", None)
    if isinstance(default, int) and not isinstance(default, bool):
        n = max(n, default)
    return n


def _split_capture(cap: Any, n_units: int) -> list[Any]:
    """One single-prompt key/value Capture per prompt of a batched Capture."""
    from tada.models.interventions import Capture

    out = []
    nb = len(cap.branches) if cap.branches else None
    for u in range(n_units):
        sub = Capture(layers=cap.layers, means=False, keys_values=True)
        sub.branches = cap.branches
        for key, (k, v) in cap.kv.items():
            nb_ = nb or k.shape[0] // n_units
            sub.kv[key] = [_rows_of(k, u, n_units, nb_), _rows_of(v, u, n_units, nb_)]
        for key, mask in cap.masks.items():
            if mask is not None and mask.shape[0] % n_units == 0 and mask.shape[0] > 1:
                mask = _rows_of(mask, u, n_units, mask.shape[0] // n_units)
            sub.masks[key] = mask
        out.append(sub)
    return out


def _rows_of(t: Any, unit: int, n_units: int, nb: int) -> Any:
    return t.reshape(nb, n_units, *t.shape[1:])[:, unit : unit + 1].reshape(nb, *t.shape[1:])


def _units(pairs: pd.DataFrame, model: Any, seeds: Sequence[int]) -> list[_Unit]:
    units = []
    for row in pairs.itertuples(index=False):
        tl = pair_text_length(model, str(row.target), str(row.source))
        for seed in seeds:
            units.append(_Unit(str(row.pair_id), str(row.target), str(row.source), int(seed), tl))
    return units


def _rounds(units: list[_Unit], size: int) -> list[list[int]]:
    """Indices of units sharing a text length, in rounds of at most `size` (stable order)."""
    by_length: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        by_length.setdefault(u.text_length, []).append(i)
    out = []
    for group in by_length.values():
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


# --------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------
def localize_concept(model: Any, scorer: Any, pairs: pd.DataFrame, alignment_text: str, *,
                     concept: str | None = None, seeds: Sequence[int] = (0,), mode: str = "patch",
                     min_denominator: float = 0.01, max_pairs: int | None = None,
                     layers: Sequence[int] | None = None, steps: int | None = None,
                     guidance: float | None = None, duration: float | None = None,
                     units_per_round: int | None = None, progress: bool = False,
                     qk_fix: bool = True, checkpoint: bool = True) -> LocalizationResult:
    """Impact of each cross-attention layer on one concept.

    `pairs` has columns pair_id, target, source (as written by
    :func:`tada.prompts.write_pairs`); the first `max_pairs` are used. `layers` restricts the
    layers tried one at a time (default: all); the all-layers copy always covers every layer.
    `units_per_round` (default ``model.batch_size``) is how many (pair, seed) targets run in
    one batch, and so how many cached key/value sets are held at once. `qk_fix` (default on)
    and `checkpoint` (recompute each sampler step's activations in the backward pass) apply to
    ``mode="attribution"`` only (see :mod:`tada.attribution`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    missing = [c for c in ("pair_id", "target", "source") if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs table lacks column(s) {missing}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("localize_concept needs at least one seed")
    if concept is None:
        concept = str(pairs["concept"].iloc[0]) if "concept" in pairs.columns and len(pairs) else "concept"
    if max_pairs is not None:
        pairs = pairs.iloc[: int(max_pairs)]
    layer_ids = model.resolve_layers(layers)
    names = model.layer_names()
    gen_kw = dict(steps=steps, guidance=guidance, duration=duration)
    units = _units(pairs, model, seeds)
    size = int(units_per_round or model.batch_size)
    t0 = time.perf_counter()
    counts = {"generations": 0, "patched": 0}
    scores: dict[int, dict[str, Any]] = {}
    rounds = _rounds(units, max(1, size))
    run = {"patch": _run_patch, "ablate": _run_ablate}.get(mode)
    if mode == "attribution":
        from functools import partial

        from tada.attribution import run_units

        run = partial(run_units, qk_fix=qk_fix, checkpoint=checkpoint)
    for r, idx in enumerate(rounds):
        group = [units[i] for i in idx]
        scores.update(zip(idx, run(model, scorer, group, alignment_text, layer_ids, gen_kw, counts)))
        if progress:
            log.info("%s: round %d/%d done (%d units, %.1f s)", concept, r + 1, len(rounds),
                     sum(len(g) for g in rounds[: r + 1]), time.perf_counter() - t0)
    elapsed = time.perf_counter() - t0
    raw = _raw_rows(concept, mode, units, scores, layer_ids, names, min_denominator)
    impact = impact_table(raw, names, layer_ids)
    summary = _summary(concept, mode, alignment_text, raw, impact, pairs, seeds, min_denominator,
                       elapsed, counts)
    raw_steps = None
    if mode == "attribution":
        summary.update(backward_passes=int(counts.get("backward", 0)), qk_fix=bool(qk_fix),
                       checkpoint=bool(checkpoint), first_order=True)
        raw_steps = _step_table(concept, units, scores, names)
    if hasattr(model, "describe"):  # the weights the impacts were measured on
        summary["model"] = model.describe()
        summary["weights_sha256"] = summary["model"].get("weights_sha256")
    return LocalizationResult(concept=concept, raw=raw, impact=impact, summary=summary, raw_steps=raw_steps)


def _step_table(concept, units, scores, names) -> pd.DataFrame:
    cols = ["concept", "pair_id", "seed", "layer", "layer_name", "step", "branch", "d_keys", "d_values"]
    rows = [{"concept": concept, "pair_id": u.pair_id, "seed": u.seed, "layer_name": names[r["layer"]], **r}
            for i, u in enumerate(units) for r in scores[i]["steps"]]
    return pd.DataFrame(rows, columns=cols)


def _generate_scored(model, scorer, prompts, seeds, text_length, interventions, alignment_text, gen_kw,
                     counts) -> np.ndarray:
    gen = model.generate(prompts, seeds, interventions=interventions, text_length=text_length, **gen_kw)
    counts["generations"] += len(prompts)
    return np.asarray(scorer.score(gen, alignment_text), dtype=np.float64)


def _copies(group: list[_Unit], layer_ids: list[int], first: tuple[str, ...]) -> list[tuple[int, str, int | None]]:
    """(unit index, kind, layer) for every copy: the `first` plain runs, one per layer, all."""
    out = []
    for u in range(len(group)):
        out += [(u, kind, None) for kind in first]
        out += [(u, "layer", l) for l in layer_ids]
        out.append((u, "all", None))
    return out


def _run_copies(model, scorer, group, copies, prompt_of, make_iv, alignment_text, gen_kw, counts):
    results: dict[tuple[int, str, int | None], float] = {}
    bs = model.batch_size
    tl = group[0].text_length
    for start in range(0, len(copies), bs):
        chunk = copies[start:start + bs]
        prompts = [prompt_of(group[u], kind) for u, kind, _ in chunk]
        seeds = [group[u].seed for u, _, _ in chunk]
        ivs = [iv for i, c in enumerate(chunk) if (iv := make_iv(i, *c)) is not None]
        s = _generate_scored(model, scorer, prompts, seeds, tl, ivs, alignment_text, gen_kw, counts)
        counts["patched"] += sum(1 for _, kind, _ in chunk if kind in ("layer", "all"))
        for c, value in zip(chunk, s):
            results[c] = float(value)
    return results


def _run_patch(model, scorer, group, alignment_text, layer_ids, gen_kw, counts) -> list[dict[str, Any]]:
    from tada.models.interventions import Capture, PatchKV

    s_target, subs = [], []
    for start in range(0, len(group), model.batch_size):
        part = group[start:start + model.batch_size]
        cap = Capture(means=False, keys_values=True)
        s_target += list(_generate_scored(model, scorer, [u.target for u in part], [u.seed for u in part],
                                          part[0].text_length, [cap], alignment_text, gen_kw, counts))
        subs += _split_capture(cap, len(part))
        del cap

    def make_iv(i, u, kind, layer):
        if kind == "layer":
            return PatchKV(subs[u], layers=[layer], samples=[i])
        if kind == "all":
            return PatchKV(subs[u], layers=None, samples=[i])
        return None

    res = _run_copies(model, scorer, group, _copies(group, layer_ids, ("source",)),
                      lambda unit, kind: unit.source, make_iv, alignment_text, gen_kw, counts)
    return [{"s_target": float(s_target[u]), "s_source": res[(u, "source", None)],
             "layers": {l: res[(u, "layer", l)] for l in layer_ids}, "all": res[(u, "all", None)]}
            for u in range(len(group))]


def _run_ablate(model, scorer, group, alignment_text, layer_ids, gen_kw, counts) -> list[dict[str, Any]]:
    from tada.models.interventions import Ablate

    all_layers = list(range(len(model.layers)))

    def make_iv(i, u, kind, layer):
        if kind == "layer":
            return Ablate(layers=[layer], samples=[i])
        if kind == "all":
            return Ablate(layers=all_layers, samples=[i])
        return None

    res = _run_copies(model, scorer, group, _copies(group, layer_ids, ("target", "source")),
                      lambda unit, kind: unit.source if kind == "source" else unit.target,
                      make_iv, alignment_text, gen_kw, counts)
    return [{"s_target": res[(u, "target", None)], "s_source": res[(u, "source", None)],
             "layers": {l: res[(u, "layer", l)] for l in layer_ids}, "all": res[(u, "all", None)]}
            for u in range(len(group))]


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def impact_value(mode: str, s_target: float, s_source: float, s_patched: float) -> float:
    """The impact of one intervened run (not guarded)."""
    den = s_target - s_source
    return (s_target - s_patched) / den if mode == "ablate" else (s_patched - s_source) / den


def _raw_rows(concept, mode, units, scores, layer_ids, names, min_denominator) -> pd.DataFrame:
    rows = []
    for i, unit in enumerate(units):
        sc = scores[i]
        den = sc["s_target"] - sc["s_source"]
        skipped = not (math.isfinite(den) and den >= min_denominator)
        entries = [(l, names[l], sc["layers"][l]) for l in layer_ids] + [(ALL_LAYERS, "all", sc["all"])]
        for layer, name, s_p in entries:
            rows.append({"concept": concept, "mode": mode, "pair_id": unit.pair_id, "seed": unit.seed,
                         "text_length": unit.text_length, "layer": layer, "layer_name": name,
                         "s_target": sc["s_target"], "s_source": sc["s_source"], "s_patched": s_p,
                         "denominator": den,
                         "impact": np.nan if skipped else impact_value(mode, sc["s_target"], sc["s_source"], s_p),
                         "skipped": skipped})
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS))


def impact_table(raw: pd.DataFrame, layer_names: Sequence[str],
                 layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Per-layer impact (columns :data:`IMPACT_COLUMNS`) from raw rows: mean and standard error
    over the (pair, seed) units that were not skipped; n_skipped counts the skipped units."""
    layers = list(range(len(layer_names))) if layers is None else list(layers)
    out = []
    for l in layers:
        rows = raw[raw["layer"] == l]
        used = rows.loc[~rows["skipped"].astype(bool), "impact"].astype(float)
        n = int(len(used))
        out.append({"layer": int(l), "layer_name": layer_names[l],
                    "impact_mean": float(used.mean()) if n else np.nan,
                    "impact_stderr": float(used.std(ddof=1) / math.sqrt(n)) if n > 1 else np.nan,
                    "n": n, "n_skipped": int(rows["skipped"].astype(bool).sum())})
    return pd.DataFrame(out, columns=list(IMPACT_COLUMNS))


def top_share(scores: Sequence[float], k: int = 2) -> float:
    """Share of the total (positive) impact held by the k highest layers: negative impacts count
    as 0 in both sums; NaN when no layer has a positive impact."""
    v = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0).clip(min=0.0)
    total = v.sum()
    return float(np.sort(v)[::-1][:k].sum() / total) if total > 0 else float("nan")


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _summary(concept, mode, alignment_text, raw, impact, pairs, seeds, min_denominator, elapsed,
             counts) -> dict[str, Any]:
    all_rows = raw[(raw["layer"] == ALL_LAYERS) & ~raw["skipped"].astype(bool)]["impact"].astype(float)
    n_units = int((raw["layer"] == ALL_LAYERS).sum())
    means = impact["impact_mean"].to_numpy(dtype=float)
    finite = np.isfinite(means)
    return {
        "concept": concept,
        "mode": mode,
        "alignment_text": alignment_text,
        "n_pairs": int(len(pairs)),
        "seeds": list(seeds),
        "n_units": n_units,
        "n_used": int(len(all_rows)),
        "n_skipped": int(raw[raw["layer"] == ALL_LAYERS]["skipped"].astype(bool).sum()),
        "min_denominator": float(min_denominator),
        "all_layers_impact": float(all_rows.mean()) if len(all_rows) else None,
        "all_layers_stderr": float(all_rows.std(ddof=1) / math.sqrt(len(all_rows))) if len(all_rows) > 1 else None,
        "min_layer_impact": float(means[finite].min()) if finite.any() else None,
        "max_layer_impact": float(means[finite].max()) if finite.any() else None,
        "top_layers": [int(impact["layer"].iloc[i]) for i in np.argsort(-np.nan_to_num(means, nan=-np.inf),
                                                                         kind="stable")[:2] if finite[i]],
        "top2_share": _finite_or_none(top_share(means, 2)),
        "generations": int(counts["generations"]),
        "patched_generations": int(counts["patched"]),
        "elapsed_s": round(float(elapsed), 3),
    }


# --------------------------------------------------------------------------------------------
# across concepts
# --------------------------------------------------------------------------------------------
def impact_matrix(impacts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Concepts × layers matrix of ``impact_mean`` (rows in the given order, columns = layers)."""
    if not impacts:
        raise ValueError("no impact tables given")
    rows = {c: t.set_index("layer")["impact_mean"].astype(float) for c, t in impacts.items()}
    mat = pd.DataFrame(rows).T
    mat.columns = [int(c) for c in mat.columns]
    return mat.sort_index(axis=1)


def choose_layers(impacts: Mapping[str, pd.DataFrame], *, top_k: int = 2,
                  override: Sequence[int] | None = None,
                  summaries: Mapping[str, Mapping[str, Any]] | None = None,
                  all_layers_tolerance: float = 0.1) -> dict[str, Any]:
    """Functional layers: the `top_k` layers by mean impact across concepts (ties: lower index),
    or `override` when given. Returns the content of ``layers.json``.

    Besides the chosen layers it records each layer's mean impact (NaN concepts skipped), the
    share of the total positive impact in the top-2 layers, the lowest layer impact and, from
    the concepts' summaries, the mean all-layers impact and whether it is within
    `all_layers_tolerance` of 1.
    """
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    mat = impact_matrix(impacts)
    first = next(iter(impacts.values()))
    names = dict(zip(first["layer"].astype(int), first["layer_name"].astype(str)))
    score = mat.mean(axis=0, skipna=True)
    order = sorted(score.index, key=lambda l: (-(score[l] if np.isfinite(score[l]) else -np.inf), l))
    top = [int(l) for l in order[:top_k]]
    chosen = sorted(int(l) for l in override) if override else sorted(top)
    unknown = [l for l in chosen if l not in names]
    if unknown:
        raise ValueError(f"layers {unknown} are not among the localized layers {sorted(names)}")
    finite = score[np.isfinite(score)]
    out: dict[str, Any] = {
        "layers": chosen,
        "layer_names": [names[l] for l in chosen],
        "source": "override" if override else "top_k",
        "top_k": int(top_k),
        "ranking": [int(l) for l in order],
        "scores": [{"layer": int(l), "layer_name": names[int(l)],
                    "mean_impact": None if not np.isfinite(score[l]) else float(score[l])}
                   for l in score.index],
        "concepts": list(impacts),
        "top2_share": _finite_or_none(top_share(score.to_numpy(), 2)),
        "min_layer_impact": float(finite.min()) if len(finite) else None,
        "per_concept": {c: {"top_layers": [int(l) for l in mat.loc[c].dropna()
                                           .sort_values(ascending=False, kind="stable").index[:2]],
                            "top2_share": _finite_or_none(top_share(mat.loc[c].to_numpy(), 2))}
                        for c in mat.index},
    }
    if summaries:
        out["weights_sha256"] = _common_weights(summaries)
        vals = [s.get("all_layers_impact") for s in summaries.values()]
        vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
        out["all_layers_impact"] = float(np.mean(vals)) if vals else None
        out["all_layers_close_to_one"] = bool(vals) and bool(abs(np.mean(vals) - 1.0) <= all_layers_tolerance)
        out["n_skipped"] = {c: int(s.get("n_skipped", 0)) for c, s in summaries.items()}
        for c, s in summaries.items():
            if c in out["per_concept"]:
                out["per_concept"][c].update(all_layers_impact=s.get("all_layers_impact"),
                                             min_layer_impact=s.get("min_layer_impact"),
                                             n_used=s.get("n_used"), n_skipped=s.get("n_skipped"))
    return out


def _common_weights(summaries: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The one ``weights_sha256`` the concepts' summaries record (None if none records one);
    impacts measured on different weights are not combined."""
    hashes = {c: s.get("weights_sha256") for c, s in summaries.items() if s.get("weights_sha256")}
    if len(set(hashes.values())) > 1:
        raise ValueError("the impact tables were measured on different weights: "
                         + ", ".join(f"{c}: {h}" for c, h in hashes.items()))
    return next(iter(hashes.values()), None)


def read_impact(path: str | Path) -> pd.DataFrame:
    """Read an ``impact.csv``."""
    df = pd.read_csv(path)
    missing = [c for c in IMPACT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not an impact table (missing {missing})")
    return df
