"""The whole quality bar of the embedded model (:func:`run_quality`) and its figure.

Measures, on generations from held-out caption phrasings:

* per concept, how well the world's :class:`~tada.world.classifiers.ConceptClassifiers`
  (trained on rendered ground truth) tell generations prompted with the concept from those
  prompted without it (target >= 85 % each);
* frame-to-frame spectral flux of generations relative to rendered clips (target <= 1.5x);
* flux across token boundaries relative to flux inside tokens (target <= 1.2x);
* onset rate of slow- and fast-prompted generations;
* the contrastive scorer's concept ranking on held-out rendered clips (target >= 80 %);
* cost: seconds per 4 s clip at batch 1 (30 steps, CFG).

``run_quality(model_dir, out_dir)`` writes ``quality.json`` and the figure
``generated_vs_rendered.png``; ``bench/bench_embedded.py`` prints it and updates BENCHMARKS.md.
Command line: ``python -m tada.embedded_quality [--fit-classifiers]``.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..embedded.metrics import boundary_flux_ratio, fit_world_classifiers, onset_rates, spectral_flux
from ..io import write_text
from ..models.embedded import EmbeddedModel
from ..scorers.clap import ClapScorer, ranking_accuracy
from ..scorers.world import WorldScorer, check_classifiers
from ..world.attributes import ClipAttributes
from ..world.captions import caption
from ..world.classifiers import ConceptClassifiers
from ..world.dataset import make_dataset, render_mels
from .concepts import (BOUNDARY_TARGET, CLASSIFIER_TARGET, FLUX_TARGET, QUALITY_CONCEPTS, SCORER_TARGET,
                       _separation, calibrated_threshold, concept_prompts)
from .text import text_readout, text_separability

ROOT = Path(__file__).resolve().parents[2]


def generate_mels(model: Any, prompts: Sequence[str], seeds: Sequence[int], guidance: float | None = None,
                  steps: int | None = None, batch: int = 16) -> np.ndarray:
    """Generated log-mels (n, frames, n_mels), in batches of `batch` prompts."""
    out = []
    for i in range(0, len(prompts), batch):
        g = model.generate(list(prompts[i:i + batch]), seeds=list(seeds[i:i + batch]), guidance=guidance,
                           steps=steps)
        out.append(g.features)
    return np.concatenate(out)


def time_generation(model: Any, repeats: int = 7, steps: int = 30, guidance: float | None = None) -> dict[str, float]:
    """Seconds for one 4 s clip at batch 1 (no vocoding): the median of `repeats` runs (the
    target is judged on it), their best and their count."""
    model.generate(["a warm-up prompt"], seeds=0, steps=2, duration=4.0)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        model.generate(["A fast jazz song with piano and drums."], seeds=r, steps=steps, duration=4.0,
                       guidance=guidance)
        times.append(time.perf_counter() - t0)
    return {"median": float(np.median(times)), "min": float(np.min(times)), "repeats": repeats}


def run_quality(model_dir: str | Path, out_dir: str | Path, *, classifiers_dir: str | Path | None = None,
                clap_dir: str | Path | None = None, n_pairs: int = 12, guidance: float | None = None,
                seed: int = 2024, rendered_clips: int = 96, figure: str | Path | None = None,
                concepts: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
                training_dataset: str | Path | None = None, train_words: bool = True,
                calibrate: bool = True, encoder_words: bool = True) -> dict[str, Any]:
    """Measure the quality bar of the model in `model_dir`; writes ``quality.json`` to `out_dir`.

    Diagnostics beside the bar: with `train_words` every concept is measured a second time on the
    same held-out templates filled with training words (``accuracy_train_words`` ...); with
    `calibrate` the accuracies are also given at a threshold fitted on generations from training
    captions (:func:`calibrated_threshold`, ``accuracy_calibrated`` ...); with `encoder_words`
    the text encoder's own grasp of the held-out words (:func:`text_separability`,
    ``result["text_encoder"]`` and ``encoder_recognises`` per concept; :func:`text_readout`,
    ``result["text_readout"]`` and ``encoder_readout`` per concept).

    `training_dataset` (the run's ``dataset.npz``) adds the flux ratio against clips of the
    world version the model was trained on (the renderer may have changed since).
    """
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = EmbeddedModel.from_pretrained(model_dir)
    guidance = float(model.default_guidance if guidance is None else guidance)
    cls_dir = Path(classifiers_dir or ROOT / "data" / "embedded_classifiers")
    classifiers = ConceptClassifiers.load(cls_dir)
    check_classifiers(classifiers, cls_dir)
    meta = json.loads((Path(model_dir) / "config.json").read_text())
    result: dict[str, Any] = {
        "model_dir": str(model_dir), "guidance": guidance, "steps": model.default_steps, "n_pairs": n_pairs,
        "train_steps": meta.get("step"), "train_seconds": meta.get("train_seconds"),
        "parameters": int(sum(p.numel() for p in model.network.parameters())),
        "targets": {"classifier": CLASSIFIER_TARGET, "flux": FLUX_TARGET, "boundary": BOUNDARY_TARGET,
                    "scorer": SCORER_TARGET},
    }
    say("timing generation")
    timing = time_generation(model, guidance=guidance)
    result["seconds_per_clip"] = timing["median"]
    result["timing_repeats"] = timing["repeats"]
    # rendered reference clips (held-out split)
    ref = make_dataset(rendered_clips, seed=seed, split="heldout")
    ref_mels = np.asarray(ref.mels, dtype=np.float32)
    all_gen = []
    per_concept: dict[str, Any] = {}
    text = None
    if encoder_words:
        say("text encoder on held-out words")
        text = result["text_encoder"] = text_separability(model.text_encoder)
        say("text readout on held-out captions")
        readout = result["text_readout"] = text_readout(model.text_encoder)
    for k, concept in enumerate(QUALITY_CONCEPTS):
        if concepts is not None and concept.name not in concepts:
            continue
        say(f"concept {concept.name}")
        pos_p, neg_p, _, _ = concept_prompts(concept, n_pairs, seed + 100 * k)
        pair_seeds = [seed + 1000 * k + i for i in range(len(pos_p))]  # pair members share noise
        mels = generate_mels(model, pos_p + neg_p, pair_seeds * 2, guidance=guidance)
        acc, paired, auc = _separation(classifiers, mels, concept, len(pos_p))
        entry = {"accuracy": acc, "paired_accuracy": paired, "auc": auc, "meets_bar": acc >= CLASSIFIER_TARGET,
                 "example_positive": pos_p[0], "example_negative": neg_p[0]}
        if calibrate:
            # threshold from generations of training captions (other prompts, other seeds)
            cp, cn, _, _ = concept_prompts(concept, n_pairs, seed + 100 * k + 50, split="train")
            cal_seeds = [seed + 1000 * k + 500 + i for i in range(len(cp))]
            cal = generate_mels(model, cp + cn, cal_seeds * 2, guidance=guidance)
            thr = calibrated_threshold(classifiers, cal, concept, len(cp))
            entry["calibrated_threshold"] = thr
            entry["accuracy_calibrated"] = _separation(classifiers, mels, concept, len(pos_p), thr)[0]
        if train_words:
            # the same held-out templates with the training words: which novelty costs accuracy
            tp, tn, _, _ = concept_prompts(concept, n_pairs, seed + 100 * k, words="train")
            tm = generate_mels(model, tp + tn, pair_seeds * 2, guidance=guidance)
            entry["accuracy_train_words"], entry["paired_train_words"], entry["auc_train_words"] = \
                _separation(classifiers, tm, concept, len(tp))
            if calibrate:
                entry["accuracy_train_words_calibrated"] = _separation(classifiers, tm, concept, len(tp), thr)[0]
        if text is not None:
            entry["encoder_recognises"] = text[concept.name]["recognised"]
            entry["encoder_readout"] = readout[concept.name]["heldout"]
            entry["encoder_readout_train_words"] = readout[concept.name]["train_words"]
        if concept.name == "tempo":
            rates = onset_rates(mels)
            entry["onsets_per_s_fast"] = float(rates[:len(pos_p)].mean())
            entry["onsets_per_s_slow"] = float(rates[len(pos_p):].mean())
            ref_rates = onset_rates(ref_mels)
            fast = np.array([a.tempo == "fast" for a in ref.attributes])
            entry["rendered_onsets_per_s_fast"] = float(ref_rates[fast].mean())
            entry["rendered_onsets_per_s_slow"] = float(ref_rates[~fast].mean())
        per_concept[concept.name] = entry
        all_gen.append(mels)
    result["concepts"] = per_concept
    result["below_bar"] = [n for n, e in per_concept.items() if not e["meets_bar"]]
    gen = np.concatenate(all_gen)
    result["flux_generated"] = spectral_flux(gen)
    result["flux_rendered"] = spectral_flux(ref_mels)
    result["flux_ratio"] = result["flux_generated"] / result["flux_rendered"]
    if training_dataset is not None and Path(training_dataset).exists():
        train_mels = np.load(training_dataset)["mels"][-rendered_clips:].astype(np.float32)
        result["flux_training_clips"] = spectral_flux(train_mels)
        result["flux_ratio_training_clips"] = result["flux_generated"] / result["flux_training_clips"]
    result["boundary_flux_ratio"] = boundary_flux_ratio(gen, model.config.frames_per_token)
    result["output_median"] = int(model.config.output_median)
    if model.config.output_median > 1:
        # the same generations of the first concept without the decoder's median smoothing
        say("unsmoothed reference")
        window, model.config.output_median = model.config.output_median, 1
        try:
            pos_p, neg_p, _, _ = concept_prompts(QUALITY_CONCEPTS[0], n_pairs, seed)
            seeds0 = [seed + i for i in range(len(pos_p))] * 2
            raw = generate_mels(model, pos_p + neg_p, seeds0, guidance=guidance)
        finally:
            model.config.output_median = window
        result["flux_ratio_unsmoothed"] = spectral_flux(raw) / result["flux_rendered"]
        result["boundary_flux_ratio_unsmoothed"] = boundary_flux_ratio(raw, model.config.frames_per_token)
    result["frames_per_token"] = model.config.frames_per_token
    # the scorers on held-out rendered clips
    clap_path = Path(clap_dir or ROOT / "data" / "embedded_clap")
    if (clap_path / "config.json").exists():
        say("clap ranking")
        result["clap"] = ranking_accuracy(ClapScorer(clap_path), clips=(ref_mels, list(ref.attributes)))
    result["world_scorer"] = ranking_accuracy(WorldScorer(classifiers=classifiers),
                                              clips=(ref_mels, list(ref.attributes)))
    if figure is not None:
        say("figure")
        plot_generated_vs_rendered(model, figure, seed=seed, guidance=guidance)
        result["figure"] = str(figure)
    write_text(out / "quality.json", json.dumps(result, indent=2, default=float))
    return result


def plot_generated_vs_rendered(model: Any, path: str | Path, seed: int = 7, guidance: float | None = None,
                               n: int = 4) -> Path:
    """Spectrograms: rendered clips (top) and generations from their held-out captions (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    specs = [
        dict(lead="piano", tempo="slow", mood="sad", vocal="none", vocal_style="none", genre="classical", drums=False, maracas=False),
        dict(lead="trumpet", tempo="fast", mood="happy", vocal="none", vocal_style="none", genre="jazz", drums=True, maracas=False),
        dict(lead="violin", tempo="slow", mood="happy", vocal="female", vocal_style="sung", genre="classical", drums=False, maracas=False),
        dict(lead="electric_guitar", tempo="fast", mood="sad", vocal="male", vocal_style="rap", genre="rock", drums=True, maracas=True),
    ][:n]
    attrs = [ClipAttributes.from_dict(s) for s in specs]
    prompts = [caption(a, rng, split="heldout") for a in attrs]
    rendered = render_mels(attrs, [seed + i for i in range(len(attrs))], 4.0)
    gen = model.generate(prompts, seeds=[seed + i for i in range(len(attrs))], guidance=guidance).features
    fig, axes = plt.subplots(2, len(attrs), figsize=(4 * len(attrs), 6), sharex=True, sharey=True)
    for i in range(len(attrs)):
        for row, (mel, label) in enumerate(((rendered[i], "rendered"), (gen[i], "generated"))):
            ax = axes[row, i]
            ax.imshow(np.asarray(mel, dtype=np.float32).T, origin="lower", aspect="auto", vmin=-1, vmax=1,
                      cmap="magma", extent=(0, mel.shape[0] / 32.0, 0, mel.shape[1]))
            if row == 0:
                ax.set_title("\n".join(_wrap(prompts[i], 42)), fontsize=7)
            ax.set_ylabel(f"{label}\nmel band" if i == 0 else "")
            if row == 1:
                ax.set_xlabel("time (s)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width)[:4]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tada.embedded_quality",
                                     description="Fit the world classifiers or measure the quality bar.")
    parser.add_argument("--fit-classifiers", action="store_true",
                        help="fit ConceptClassifiers on the training dataset.npz into --classifiers")
    parser.add_argument("--dataset", default=str(ROOT / "results" / "embedded" / "train" / "dataset.npz"))
    parser.add_argument("--classifiers", default=str(ROOT / "data" / "embedded_classifiers"))
    parser.add_argument("--model", default=str(ROOT / "data" / "embedded_model"))
    parser.add_argument("--out", default=str(ROOT / "results" / "embedded" / "quality"))
    args = parser.parse_args(argv)
    if args.fit_classifiers:
        print(json.dumps(fit_world_classifiers(args.dataset, args.classifiers), indent=1))
    else:
        print(json.dumps(run_quality(args.model, args.out, classifiers_dir=args.classifiers), indent=1,
                         default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
