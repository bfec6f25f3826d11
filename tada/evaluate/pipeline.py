"""The evaluation stages as the workflow runs them, one function per rule.

Each function takes plain paths and config blocks, so a notebook can run one stage the way the
workflow does. The maths is elsewhere: sweeps in :mod:`.sweep`, scores in :mod:`.scores`,
calibration in :mod:`.calibrate`, aggregation in :mod:`.collect`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tada.io import atomic_path, write_json
from tada.methods import MethodVariant, Unsteered, build_variant, common_text_length, parse_variant_name
from tada.prompts.concepts import ConceptTable, SteeringConcept
from tada.scorers import load_scorer

from .calibrate import calibrate, pci_cutoffs
from .scores import read_scores, score_sweep, write_scores
from .sweep import SweepClips, prompt_table, run_sweep, signed_alphas, sweep_rows

log = logging.getLogger(__name__)


# ----- shared pieces ------------------------------------------------------------------------------
def read_prompt_table(path: str | Path, role: str | None = None) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table if role is None else table[table["role"] == role].reset_index(drop=True)


def write_prompt_table(prompts: Sequence[str], out: str | Path, *, n_eval: int, n_calibration: int,
                       seed: int) -> pd.DataFrame:
    from tada.io import write_csv

    table = prompt_table(prompts, n_eval, n_calibration, seed)
    write_csv(out, table)
    return table


def text_length(model: Any, prompts: pd.DataFrame, concepts: Sequence[SteeringConcept]) -> int | None:
    """One token count for every sweep of a study: it fits every prompt and rewrite."""
    texts = [p for c in concepts for base in prompts["prompt"] for p in c.triple(base)]
    return common_text_length(model, texts or list(prompts["prompt"]))


def generation_settings(mcfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"steps": mcfg.get("steps"), "guidance": mcfg.get("guidance"), "duration": mcfg.get("duration"),
            "batch_size": mcfg.get("batch_size")}


def alignment_scorers(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Scorer name -> Scorer from ``evaluation.alignment``; an optional scorer whose package is
    missing is left out with a warning (its column is absent, never zero)."""
    out = {}
    for name, block in cfg.items():
        try:
            out[name] = load_scorer(block, key=f"evaluation.alignment.{name}")
        except ImportError as exc:
            log.warning("alignment scorer '%s' is not available, its column is left out: %s", name, exc)
    if not out:
        raise ValueError("evaluation.alignment: no alignment scorer could be loaded")
    return out


def make_variants(names: Sequence[str], vectors: Mapping[str, str | Path], plan: Mapping[str, Any]
                  ) -> list[MethodVariant]:
    """Variants by name; `vectors` maps a variant name to its steering-vector file, `plan` is the
    layer-set plan (``vectors/layer_sets.json``) that gives PCI its layers."""
    out = []
    for name in names:
        family, layer_set = parse_variant_name(name)
        layers = plan["layer_sets"].get(layer_set)
        out.append(build_variant(name, vector=vectors.get(name), layers=layers))
    return out


def _sweep_and_score(model, variant, rows, sweep_dir, scores_path, baseline, *, alignment, texts, lpaps_scorer,
                     gen, text_len, provenance):
    run_sweep(model, variant, rows, sweep_dir, batch_size=gen["batch_size"], steps=gen["steps"],
              guidance=gen["guidance"], duration=gen["duration"], text_length=text_len, provenance=provenance)
    scores, emb = score_sweep(SweepClips(sweep_dir), baseline, alignment=alignment, texts=texts,
                              lpaps_scorer=lpaps_scorer)
    write_scores(scores, emb, scores_path)
    return scores


# ----- rules --------------------------------------------------------------------------------------
def baseline_stage(model: Any, prompts: pd.DataFrame, concepts: Sequence[SteeringConcept], sweep_dir: str | Path,
                   scores_path: str | Path, *, alignment: Mapping[str, Any], lpaps_scorer: Any,
                   gen: Mapping[str, Any]) -> pd.DataFrame:
    """The α = 0 clips of every evaluation and calibration prompt, scored against every concept."""
    rows = sweep_rows(prompts, None, [0.0])
    texts = {c.id: c.alignment_text for c in concepts}
    return _sweep_and_score(model, Unsteered(), rows, sweep_dir, scores_path, None, alignment=alignment,
                            texts=texts, lpaps_scorer=lpaps_scorer, gen=gen,
                            text_len=text_length(model, prompts, concepts), provenance={})


def fixed_grid_stage(model: Any, concept: SteeringConcept, variants: Sequence[MethodVariant], prompts: pd.DataFrame,
                     baseline_dir: str | Path, out: Mapping[str, tuple[str, str]], *, count: int, spacing: str,
                     alignment, lpaps_scorer, gen, text_len) -> None:
    """Sweeps whose α grid does not need calibration (PCI: integers up to T per side)."""
    baseline = SweepClips(baseline_dir)
    steps = int(gen["steps"] or model.default_steps)
    for v in variants:
        limit = v.max_alpha(steps)
        if limit is None:
            raise ValueError(f"{v.name} has no fixed α range; it is calibrated against the cutoff instead")
        alphas = signed_alphas(limit, limit, count, spacing, integer=v.integer_alpha)
        _sweep_and_score(model, v, sweep_rows(prompts, concept, alphas), *out[v.name], baseline,
                         alignment=alignment, texts={"": concept.alignment_text}, lpaps_scorer=lpaps_scorer,
                         gen=gen, text_len=text_len, provenance={"concept": concept.id, "alphas": alphas})


def calibration_stage(model: Any, concept: SteeringConcept, variants: Sequence[MethodVariant],
                      calibration_prompts: pd.DataFrame, baseline_dir: str | Path,
                      pci_scores: Mapping[str, str | Path], out: str | Path, *, lpaps_scorer, gen, text_len,
                      search: Mapping[str, Any]) -> dict[str, Any]:
    """calibration.json: the cutoff (from the PCI scores) and every variant's α_max per direction."""
    scores = {name: read_scores(path)[0] for name, path in pci_scores.items()}
    cutoffs = pci_cutoffs(scores)
    log.info("%s: cutoff %s from %s", concept.id, cutoffs, sorted(scores))
    result = calibrate(model, variants, calibration_prompts, SweepClips(baseline_dir), lpaps_scorer, cutoffs,
                       rows_for=lambda p, a: sweep_rows(p, concept, [a]), steps=gen["steps"],
                       guidance=gen["guidance"], duration=gen["duration"], text_length=text_len,
                       batch_size=gen["batch_size"], **dict(search))
    doc = {"concept": concept.id, "cutoff": cutoffs, "cutoff_from": sorted(scores), "variants": result,
           "search": dict(search), "calibration_prompts": list(calibration_prompts["prompt_id"]),
           "model": model.describe()}
    write_json(out, doc)
    return doc


def read_calibration(path: str | Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if "variants" not in doc or "cutoff" not in doc:
        raise ValueError(f"{path}: not a calibration file (needs 'cutoff' and 'variants')")
    return doc


def calibrated_stage(model: Any, concept: SteeringConcept, variants: Sequence[MethodVariant], prompts: pd.DataFrame,
                     baseline_dir: str | Path, calibration: Mapping[str, Any], out: Mapping[str, tuple[str, str]], *,
                     count: int, spacing: str, alignment, lpaps_scorer, gen, text_len) -> None:
    """Sweeps of the calibrated variants: `count` α per side up to each side's α_max."""
    baseline = SweepClips(baseline_dir)
    for v in variants:
        cal = calibration["variants"].get(v.name)
        if cal is None:
            raise KeyError(f"the calibration of '{concept.id}' has no entry for {v.name}; rerun calibrate")
        alphas = signed_alphas(cal["pos"]["alpha_max"], cal["neg"]["alpha_max"], count, spacing)
        _sweep_and_score(model, v, sweep_rows(prompts, concept, alphas), *out[v.name], baseline,
                         alignment=alignment, texts={"": concept.alignment_text}, lpaps_scorer=lpaps_scorer,
                         gen=gen, text_len=text_len,
                         provenance={"concept": concept.id, "alphas": alphas, "calibration": cal})


def combination_alpha_max(terms: Sequence[tuple[str, int]], calibrations: Mapping[str, Mapping[str, Any]],
                          variant: str) -> float:
    """A combination's α range: the smallest of its constituents' calibrated α_max, each taken in
    the direction of its term's sign (the multi-concept vector already carries the signs)."""
    values = []
    for concept, sign in terms:
        side = "pos" if sign > 0 else "neg"
        alpha_max = calibrations[concept]["variants"][variant][side]["alpha_max"]
        if alpha_max is None:
            raise ValueError(f"the combination term {concept} ({side}) has no calibrated α range for {variant}: "
                             f"{calibrations[concept]['variants'][variant][side].get('skipped', 'not calibrated')}")
        values.append(float(alpha_max))
    return min(values)


def combination_stage(model: Any, combination: str, terms: Sequence[tuple[str, int]], table: ConceptTable,
                      variants: Sequence[MethodVariant], prompts: pd.DataFrame, baseline_dir: str | Path,
                      calibrations: Mapping[str, Mapping[str, Any]], out: Mapping[str, tuple[str, str]], *,
                      count: int, spacing: str, alignment, lpaps_scorer, gen, text_len) -> None:
    """Multi-concept sweeps: α ≥ 0 only, alignment scored per constituent concept."""
    baseline = SweepClips(baseline_dir)
    texts = {c: table.steering(c).alignment_text for c, _ in terms}
    for v in variants:
        alphas = signed_alphas(combination_alpha_max(terms, calibrations, v.name), None, count, spacing)
        _sweep_and_score(model, v, sweep_rows(prompts, None, alphas), *out[v.name], baseline,
                         alignment=alignment, texts=texts, lpaps_scorer=lpaps_scorer, gen=gen, text_len=text_len,
                         provenance={"combination": combination, "terms": list(terms), "alphas": alphas})


def reference_stage(lpaps_scorer: Any, out: str | Path, *, world_clips: int = 0, seed: int = 7,
                    audio_dir: str | Path | None = None, duration: float = 4.0) -> np.ndarray:
    """Embeddings of the quality reference set: rendered world clips (held-out split) or the audio
    files of a folder (real models)."""
    from tada.scorers import Clips
    from tada.scorers.frechet import audio_embeddings

    if audio_dir:
        import soundfile as sf

        files = sorted(p for p in Path(audio_dir).rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))
        if len(files) < 2:
            raise FileNotFoundError(f"evaluation.quality_reference.audio_dir: '{audio_dir}' has fewer than 2 audio files")
        embs = []
        for f in files:
            data, sr = sf.read(f, dtype="float32", always_2d=True)
            embs.append(audio_embeddings(lpaps_scorer, data.mean(axis=1)[None], sample_rate=sr))
        emb = np.concatenate(embs)
    else:
        from tada.world.dataset import render_mels, sample_clips
        from tada.world.features import SR

        attrs, seeds = sample_clips(int(world_clips), int(seed), split="heldout")
        mels = render_mels(attrs, seeds, duration, progress=True).astype(np.float32)
        emb = audio_embeddings(lpaps_scorer, Clips(None, SR, mels))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, emb.astype(np.float32))
    return emb


class StageContext:
    """What every sweep rule loads: the model, the concept table, the prompt table, the scorers,
    the generation settings and the study-wide text length."""

    def __init__(self, *, model_cfg: Mapping[str, Any], model_key: str, evaluation: Mapping[str, Any],
                 concepts_path: str | Path, prompts_path: str | Path, studied: Sequence[str]):
        from tada.models import load_model
        from tada.prompts import load_concepts

        self.model = load_model(model_cfg, key=model_key)
        self.table = load_concepts(concepts_path)
        self.prompts = read_prompt_table(prompts_path)
        self.eval_prompts = self.prompts[self.prompts["role"] == "eval"].reset_index(drop=True)
        self.calibration_prompts = self.prompts[self.prompts["role"] == "calibration"].reset_index(drop=True)
        self.studied = [self.table.steering(c) for c in studied]
        self.evaluation = evaluation
        self.alignment = alignment_scorers(evaluation["alignment"])
        self.lpaps = load_scorer(evaluation["lpaps"], key="evaluation.lpaps")
        self.gen = generation_settings(model_cfg)
        self.text_len = text_length(self.model, self.prompts, self.studied)

    def common(self) -> dict[str, Any]:
        """Keyword arguments shared by the sweep stages."""
        return {"alignment": self.alignment, "lpaps_scorer": self.lpaps, "gen": self.gen,
                "text_len": self.text_len, "count": int(self.evaluation["alphas_per_side"]),
                "spacing": self.evaluation["spacing"]}

    @classmethod
    def from_job(cls, job: Any) -> "StageContext":
        """From a Snakemake job object (``snakemake`` in a workflow script)."""
        return cls(model_cfg=job.params.model, model_key=f"models.{job.config['model']}",
                   evaluation=job.params.evaluation, concepts_path=job.input.concepts,
                   prompts_path=job.input.prompts, studied=job.params.studied)


def outputs_by_variant(output: Any, variants: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{variant: (sweep folder, scores.csv)} from a rule's named outputs index_<v> / scores_<v>."""
    return {v: (str(Path(output[f"index_{v}"]).parent), output[f"scores_{v}"]) for v in variants}
