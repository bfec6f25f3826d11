r"""The study bundle: trials, each study variant's α stops as seamless loops, and a manifest.

Trials. One trial per (concept, prompt): the ``study.concepts`` × the first ``study.prompts``
evaluation prompts (the paper's trials: piano, female vocal, tempo).

Variants. ``study.always`` (default ``sae_localized``) is in every trial; the other families are
those with both a standard (``<f>``) and a localized (``<f>_localized``) variant among
``evaluation.variants``. Each participant hears, per trial, the ``always`` samples plus
``study.families_per_trial`` families drawn at random (:mod:`.plan`), each in both variants:
1 + 2·3 = 7 samples by default.

Stops. With n = ``study.alphas_per_side`` a sample has S = 2n + 1 stops, α = 0 in the middle:

    α = [−a⁻·n/n, …, −a⁻·1/n, 0, a⁺·1/n, …, a⁺·n/n]

a± = the variant's calibrated α_max per direction (``calibration/<concept>.json``), or, for a
variant with a fixed range (PCI), its largest α (T steps), the grid rounded to integers. This is
the sweeps' linear grid, so with ``evaluation.alphas_per_side`` = n (or a multiple of it) every
stop is a clip the sweeps already rendered and scored. A side whose α_max is null (the
calibration skipped it) is *flat*: its stops repeat the α = 0 clip, so the slider keeps its
seven positions and that half of it changes nothing (``flat`` in the manifest); the analysis can
tell such samples apart.

Clips. A stop's clip is the sweep's clip of that (prompt, α) when the sweep has it (|Δα| ≤
1e-9·max(1, |α|)), with its scores; otherwise it is rendered by the sweep code itself
(:func:`tada.evaluate.sweep.run_sweep` of the variant, batched, with the baseline sweep's
settings and text length) and scored (:func:`tada.evaluate.scores.score_sweep`) when scorers
are given. α = 0 is the baseline sweep's clip of the prompt. Per sample the manifest keeps the
automatic metrics of its own stops (:func:`tada.evaluate.protocol.curve_metrics` on the S
points, cutoffs of the calibration) for the analysis.

Layout of a bundle::

    manifest.json   server side only: trials, samples (variant, α, files, scores, metrics),
                    settings, provenance
    public/         all the browser may fetch: index.html, study.js, crossfade.js, style.css,
                    audio/<id>.<ext>

Sample ids (and the salt of the participant plans) are SHA-256 hashes keyed by a random secret
drawn at build time: nothing the browser gets names or encodes a method. A rebuilt bundle has
new ids.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tada.evaluate.protocol import curve_metrics
from tada.evaluate.sweep import SweepClips, alpha_grid, fingerprint, run_sweep
from tada.io import write_json
from tada.methods import SweepRow, build_variant, parse_variant_name
from tada.prompts.concepts import ConceptTable

from .plan import FORMAT
from .loops import FORMATS, fade_length, read_mono, seamless_loop, write_loop

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGE_FILES = ("index.html", "study.js", "crossfade.js", "style.css")


# ----- variants and stops -------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyVariants:
    """The variants of a study: those in every trial and, per drawable family, (standard, localized)."""

    always: tuple[str, ...]
    pairs: dict[str, tuple[str, str]]

    @property
    def names(self) -> list[str]:
        return list(self.always) + [v for pair in self.pairs.values() for v in pair]


def study_variants(variants: Sequence[str], always: Sequence[str]) -> StudyVariants:
    """From ``evaluation.variants``: `always` (each must be swept) and every other family with
    both its standard and its localized variant."""
    names = list(variants)
    missing = [v for v in always if v not in names]
    if missing:
        raise ValueError(f"study.always: {missing} not among evaluation.variants {names}")
    fixed = {parse_variant_name(v)[0] for v in always}
    by_family: dict[str, dict[str, str]] = {}
    for v in names:
        family, layer_set = parse_variant_name(v)
        by_family.setdefault(family, {})[layer_set] = v
    pairs = {f: (sets["global"], sets["localized"]) for f, sets in by_family.items()
             if f not in fixed and "global" in sets and "localized" in sets}
    return StudyVariants(tuple(always), pairs)


def stop_alphas(variant: str, calibration: Mapping[str, Any], steps: int, per_side: int
                ) -> tuple[list[float], dict[str, bool], str]:
    """(the 2n + 1 α of the stops, which sides are flat, "calibrated" | "fixed") (module doc)."""
    cal = calibration.get("variants", {}).get(variant)
    if cal is not None:
        limits = {side: (cal.get(side) or {}).get("alpha_max") for side in ("pos", "neg")}
        integer, source = False, "calibrated"
    else:
        try:
            v = build_variant(variant)
        except ValueError:
            v = None
        limit = v.max_alpha(int(steps)) if v is not None else None
        if limit is None:
            raise KeyError(f"the calibration of '{calibration.get('concept')}' has no entry for {variant} "
                           f"and {variant} has no fixed α range; rerun calibrate")
        limits, integer, source = {"pos": limit, "neg": limit}, v.integer_alpha, "fixed"
    sides, flat = {}, {}
    for side, limit in limits.items():
        flat[side] = limit is None or not float(limit) > 0
        grid = [0.0] * per_side if flat[side] else alpha_grid(float(limit), per_side, "linear", integer)
        if len(grid) != per_side:
            raise ValueError(f"{variant}: {per_side} distinct integer α up to {limit} do not exist; "
                             f"lower study.alphas_per_side")
        sides[side] = grid
    return [-a for a in reversed(sides["neg"])] + [0.0] + sides["pos"], flat, source


# ----- clips of the sweeps --------------------------------------------------------------------------
class SweepLookup:
    """The clips (and scores) of one finished sweep, found by (prompt id, α)."""

    def __init__(self, sweep_dir: str | Path, scores_path: str | Path | None, concept: str | None = None):
        self.dir = Path(sweep_dir)
        self.fingerprint = None
        if not (self.dir / "index.csv").exists():
            self.rows: dict[str, list[tuple[float, dict[str, Any]]]] = {}
            return
        sweep = SweepClips(self.dir)
        self.fingerprint = sweep.meta.get("fingerprint")
        self.settings = dict(sweep.meta.get("settings", {}))
        self.model = sweep.meta.get("model", {})
        frame = sweep.index[["prompt_id", "alpha", "file"]].copy()
        if scores_path is not None and Path(scores_path).exists():
            scores = pd.read_csv(scores_path)
            keep = _score_columns(scores, concept)
            frame = frame.merge(scores[["file", *keep]].rename(columns=keep), on="file", how="left")
        self.rows = {}
        for rec in frame.to_dict("records"):
            rec["path"] = str(self.dir / rec.pop("file"))
            self.rows.setdefault(str(rec.pop("prompt_id")), []).append((float(rec.pop("alpha")), rec))

    def find(self, prompt_id: str, alpha: float) -> dict[str, Any] | None:
        for a, rec in self.rows.get(str(prompt_id), []):
            if abs(a - alpha) <= 1e-9 * max(1.0, abs(alpha)):
                return rec
        return None


def _score_columns(scores: pd.DataFrame, concept: str | None) -> dict[str, str]:
    """Score column -> its name in the manifest: align_<s> (the baseline's align_<s>__<concept>)
    and preservation."""
    out = {}
    for col in scores.columns:
        if col == "preservation":
            out[col] = col
        elif col.startswith("align_") and "__" not in col and concept is None:
            out[col] = col
        elif concept is not None and col.startswith("align_") and col.endswith(f"__{concept}"):
            out[col] = col[: -len(f"__{concept}")]
    return out


class SweepRenderer:
    """Renders stops the sweeps lack with the sweep code, and scores them when scorers are given.

    `load_model()` -> the model; `make_variant(name, concept)` -> its MethodVariant;
    `load_scorers()` -> (alignment scorers by name, LPAPS scorer) or None to leave the scores
    out; `alignment_text(concept)` -> the concept's alignment text. Loaded on first use."""

    def __init__(self, *, load_model: Callable[[], Any], make_variant: Callable[[str, str], Any],
                 settings: Mapping[str, Any], baseline_dir: str | Path,
                 load_scorers: Callable[[], tuple[Mapping[str, Any], Any]] | None = None,
                 alignment_text: Callable[[str], str] | None = None):
        self._load_model, self._load_scorers = load_model, load_scorers
        self.make_variant, self.alignment_text = make_variant, alignment_text
        self.settings, self.baseline_dir = dict(settings), Path(baseline_dir)
        self._model, self._scorers = None, None

    def render(self, concept: str, variant: str, rows: Sequence[SweepRow], work: Path) -> list[dict[str, Any]]:
        from tada.evaluate.scores import score_sweep

        if self._model is None:
            self._model = self._load_model()
        s = self.settings
        out = work / concept / variant
        index = run_sweep(self._model, self.make_variant(variant, concept), rows, out, batch_size=s.get("batch_size"),
                          steps=s.get("steps"), guidance=s.get("guidance"), duration=s.get("duration"),
                          text_length=s.get("text_length"), provenance={"concept": concept, "study": True})
        frame = index[["prompt_id", "alpha", "file"]].copy()
        if self._load_scorers is not None:
            if self._scorers is None:
                self._scorers = self._load_scorers()
            alignment, lpaps_scorer = self._scorers
            scores, _ = score_sweep(SweepClips(out), SweepClips(self.baseline_dir), alignment=alignment,
                                    texts={"": self.alignment_text(concept)}, lpaps_scorer=lpaps_scorer,
                                    descriptors=False)
            keep = _score_columns(scores, None)
            frame = frame.merge(scores[["file", *keep]], on="file", how="left")
        records = frame.to_dict("records")
        for rec in records:
            rec["path"] = str(out / rec.pop("file"))
        return records


# ----- the bundle ---------------------------------------------------------------------------------------
def _anon(secret: str, *parts: str) -> str:
    return hashlib.sha256(":".join(["tada.study", secret, *parts]).encode()).hexdigest()[:12]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def sample_metrics(stops: Sequence[Mapping[str, Any]], cutoff: Mapping[str, float]) -> dict[str, float | None]:
    """Automatic metrics of one sample's own stops: per alignment scorer its AUC and smoothness
    (protocol definitions on these points, the calibration's cutoffs), and the mean preservation
    distance of the steered stops. None where a stop lacks a score."""
    points = {}
    for st in stops:
        points.setdefault(float(st["alpha"]), st)
    frame = pd.DataFrame([{"alpha": a, **{k: v for k, v in st.items() if k.startswith("align_") or k == "preservation"}}
                          for a, st in sorted(points.items())])
    scorers = [c[len("align_"):] for c in frame.columns if c.startswith("align_")]
    if "preservation" not in frame or not scorers or frame.drop(columns="alpha").isna().to_numpy().any():
        return {}
    cut = {k: float(v) if v is not None else float("nan") for k, v in dict(cutoff).items()}
    m = curve_metrics(frame, cut, scorers, what="study sample")
    out = {f"{kind}_{s}": m[f"{kind}_{s}"] for s in scorers for kind in ("auc", "smooth")}
    steered = frame.loc[frame["alpha"] != 0, "preservation"]
    out["preservation"] = float(steered.mean()) if len(steered) else float("nan")
    return out


def build_bundle(out_dir: str | Path, *, results_dir: str | Path, prompts: pd.DataFrame, concepts: ConceptTable,
                 variants: Sequence[str], study: Mapping[str, Any], renderer: SweepRenderer | None = None,
                 provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the bundle (layout in the module doc) into `out_dir`, replacing it in one step;
    returns the manifest. `results_dir` is results/<model> of a finished run (sweeps, scores,
    calibration); `prompts` the evaluation prompt table; `study` the config's ``study`` block."""
    from tada.evaluate.pipeline import read_calibration

    results, out_dir = Path(results_dir), Path(out_dir)
    fmt = str(study.get("audio_format", "ogg"))
    if fmt not in FORMATS:
        raise ValueError(f"study.audio_format: unknown format '{fmt}'; choose one of {sorted(FORMATS)}")
    per_side = int(study.get("alphas_per_side", 3))
    secret = secrets.token_hex(16)  # sample ids and plans: not derivable from the variant names
    chosen = study_variants(variants, study.get("always", ["sae_localized"]))
    eval_prompts = prompts[prompts["role"] == "eval"] if "role" in prompts else prompts
    n_prompts = int(study.get("prompts", 1))
    if len(eval_prompts) < n_prompts:
        raise ValueError(f"study.prompts = {n_prompts} but only {len(eval_prompts)} evaluation prompts exist")
    trial_prompts = eval_prompts.head(n_prompts).to_dict("records")
    baseline = SweepLookup(results / "sweeps" / "none", None)
    if baseline.fingerprint is None:
        raise FileNotFoundError(f"{results / 'sweeps' / 'none'}: no finished baseline sweep (index.csv)")
    steps = int(baseline.settings.get("steps") or 30)

    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        public = work / "bundle" / "public"
        (public / "audio").mkdir(parents=True)
        trials, sources = [], {}
        plans = []  # (trial dict, {variant: (alphas, flat, source)}, calibration)
        missing: dict[tuple[str, str], list[SweepRow]] = {}
        lookups: dict[tuple[str, str], SweepLookup] = {}
        for concept_id in study.get("concepts", []):
            concept = concepts.steering(concept_id)
            cal_path = results / "calibration" / f"{concept_id}.json"
            if not cal_path.exists():
                raise FileNotFoundError(f"study.concepts: no calibration for '{concept_id}' at {cal_path} "
                                        f"(is it in concepts.steering?)")
            calibration = read_calibration(cal_path)
            base_scores = SweepLookup(results / "sweeps" / "none", results / "scores" / "none" / "scores.csv",
                                      concept=concept_id)
            for v in chosen.names:
                key = (concept_id, v)
                lookups[key] = SweepLookup(results / "sweeps" / concept_id / v,
                                           results / "scores" / concept_id / v / "scores.csv")
                sources[f"{concept_id}/{v}"] = lookups[key].fingerprint
            grids = {v: stop_alphas(v, calibration, steps, per_side) for v in chosen.names}
            for rec in trial_prompts:
                pid = str(rec["prompt_id"])
                center = base_scores.find(pid, 0.0)
                if center is None:
                    raise KeyError(f"the baseline sweep has no α = 0 clip of prompt {pid}")
                trial = {"id": f"{concept_id}-{pid}", "concept": concept_id, "concept_name": concept.name,
                         "hint_pos": concept.positive_label, "hint_neg": concept.negative_label,
                         "prompt_id": pid, "prompt": str(rec["prompt"]), "seed": int(rec["seed"]),
                         "_center": {**center, "alpha": 0.0, "source": "baseline"}}
                neutral, pos, neg = concept.triple(str(rec["prompt"]))
                for v, (alphas, _flat, _src) in grids.items():
                    for a in sorted({a for a in alphas if a != 0}):
                        if lookups[(concept_id, v)].find(pid, a) is None:
                            missing.setdefault((concept_id, v), []).append(
                                SweepRow(pid, neutral, pos, neg, int(rec["seed"]), float(a)))
                plans.append((trial, grids, calibration))
        rendered = _render_missing(missing, renderer, work / "render")
        for trial, grids, calibration in plans:
            trials.append(_trial_audio(trial, grids, calibration, lookups, rendered, chosen, public, fmt=fmt,
                                       crossfade=float(study.get("loop_crossfade", 0.25)), secret=secret))
        for name in PAGE_FILES:
            shutil.copyfile(STATIC / name, public / name)
        settings = {"alphas_per_side": per_side, "stops": 2 * per_side + 1, "audio_format": fmt,
                    "loop_crossfade": float(study.get("loop_crossfade", 0.25)),
                    "families_per_trial": int(study.get("families_per_trial", 3)), "always": list(chosen.always),
                    "pairs": {f: list(p) for f, p in chosen.pairs.items()}}
        manifest = {"format": FORMAT, "version": 1, "settings": settings, "trials": trials,
                    "salt": _anon(secret, "salt"),
                    "provenance": {**dict(provenance or {}), "model": baseline.model, "sweeps": sources,
                                   "baseline": baseline.fingerprint, "rendered": sorted(f"{c}/{v}" for c, v in missing)}}
        manifest["id"] = fingerprint({k: manifest[k] for k in ("settings", "trials", "salt")})
        manifest = _clean(manifest)
        write_json(work / "bundle" / "manifest.json", manifest)
        _replace_dir(work / "bundle", out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("study bundle %s: %d trials, %d clips rendered", out_dir, len(trials),
             sum(len(r) for r in missing.values()))
    return manifest


def _render_missing(missing: Mapping[tuple[str, str], list[SweepRow]], renderer: SweepRenderer | None,
                    work: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out = {}
    for (concept, variant), rows in missing.items():
        if renderer is None:
            listed = ", ".join(f"{r.prompt_id} α={r.alpha:g}" for r in rows[:4])
            raise FileNotFoundError(f"the sweep of {concept}/{variant} lacks the study's stops ({listed}...) "
                                    f"and no renderer was given")
        log.info("rendering %d stops of %s/%s the sweep does not have", len(rows), concept, variant)
        out[(concept, variant)] = renderer.render(concept, variant, rows, work)
    return out


def _trial_audio(trial: dict[str, Any], grids: Mapping[str, tuple[list[float], dict[str, bool], str]],
                 calibration: Mapping[str, Any], lookups: Mapping[tuple[str, str], SweepLookup],
                 rendered: Mapping[tuple[str, str], list[dict[str, Any]]], chosen: StudyVariants, public: Path, *,
                 fmt: str, crossfade: float, secret: str) -> dict[str, Any]:
    """Encode one trial's loops; returns its manifest entry."""
    center = trial.pop("_center")
    concept, pid = trial["concept"], trial["prompt_id"]
    stops_of: dict[str, list[dict[str, Any]]] = {}
    for v, (alphas, _flat, _src) in grids.items():
        extra = [r for r in rendered.get((concept, v), []) if str(r["prompt_id"]) == pid]
        stops = []
        for a in alphas:
            if a == 0:
                stops.append(center)
                continue
            rec = lookups[(concept, v)].find(pid, a)
            source = "sweep"
            if rec is None:
                rec = next(r for r in extra if abs(float(r["alpha"]) - a) <= 1e-9 * max(1.0, abs(a)))
                source = "rendered"
            stops.append({**rec, "alpha": a, "source": source})
        stops_of[v] = stops
    clips = {st["path"]: read_mono(st["path"]) for stops in stops_of.values() for st in stops}
    rates = {sr for _x, sr in clips.values()}
    if len(rates) != 1:
        raise ValueError(f"trial {trial['id']}: clips at different sample rates {sorted(rates)}")
    sr = rates.pop()
    n = min(len(x) for x, _sr in clips.values())
    fade = fade_length(n, crossfade, sr)
    ext = FORMATS[fmt][2]
    names: dict[str, str] = {}

    def encode(path: str, name: str) -> str:
        if path not in names:
            rel = f"audio/{name}{ext}"
            write_loop(public / rel, seamless_loop(clips[path][0][:n], fade), sr, fmt)
            names[path] = rel
        return names[path]

    encode(center["path"], _anon(secret, trial["id"], "center"))
    samples = {}
    for v in chosen.names:
        sid = _anon(secret, trial["id"], v)
        stops = stops_of[v]
        files = [encode(st["path"], f"{sid}-{k}") for k, st in enumerate(stops)]
        family, layer_set = parse_variant_name(v)
        alphas, flat, source = grids[v]
        samples[sid] = {"variant": v, "family": family, "layer_set": layer_set, "alphas": alphas, "flat": flat,
                        "alpha_source": source, "files": files,
                        "stops": [{k: val for k, val in st.items() if k != "path"} for st in stops],
                        "metrics": sample_metrics(stops, calibration.get("cutoff", {}))}
    by_variant = {s["variant"]: sid for sid, s in samples.items()}
    return {**trial, "sample_rate": sr, "loop_seconds": (n - fade) / sr, "center": names[center["path"]],
            "always": [by_variant[v] for v in chosen.always],
            "families": {f: [by_variant[a], by_variant[b]] for f, (a, b) in chosen.pairs.items()},
            "samples": samples}


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished bundle into place: the old one (if any) goes only once the new one is ready."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
    shutil.move(str(src), str(dst))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
