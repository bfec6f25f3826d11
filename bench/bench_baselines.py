"""Cost of the baselines on the embedded model, and one concept's AUC beside the other methods.

    .venv/bin/python bench/bench_baselines.py [--concept tempo] [--repeats 3] [--threads 2] [--write]

1. Concept Sliders training: `repeats` trainings of one slider with the default settings
   (config.yaml ``baselines.sliders``) on each layer set (global, localized); median wall time.
2. What the baselines add to one concept of the default run: their artifacts (Token
   Embeddings directions, Concept Sliders training; rules/baselines.smk), then calibration
   (rule calibrate) and the calibrated sweeps (rule sweep_calibrated) of the eight baseline
   variants, run the way the rules run them (tada.evaluate.pipeline) into a scratch folder,
   beside the same two stages for the calibrated variants of config.yaml, timed in the same run.
   It reads the default run's results (prompt table, α = 0 sweep, PCI scores, layer plan,
   vectors); run ``make run`` (or the workflow up to the PCI sweeps) first.
3. That concept's AUC and smoothness of every variant, cutoff from the PCI variants (one
   concept: a hint, not Table 1).

``--write`` replaces the "Baselines" block of the "## Evaluation" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tada.config import load_config  # noqa: E402
from tada.io import replace_subsection  # noqa: E402

TITLE = "### Baselines (`bench/bench_baselines.py`)"
BASELINE_VARIANTS = ["textemb", "textemb_localized", "tokenemb", "tokenemb_localized", "freesliders",
                     "freesliders_localized", "sliders", "sliders_localized"]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concept", default="tempo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tada.evaluate.pipeline import StageContext, calibrated_stage, calibration_stage, make_variants
    from tada.methods import parse_variant_name
    from tada.methods.baseline_build import build_slider, build_spec, build_token

    cfg = load_config(ROOT / "config.yaml")
    name, results = cfg["model"], ROOT / "results" / cfg["model"]
    mcfg = dict(cfg["models"][name])
    mcfg["path"] = str(ROOT / mcfg["path"])
    ev = cfg["evaluation"]
    plan = results / "vectors" / "layer_sets.json"
    ctx = StageContext(model_cfg=mcfg, model_key=f"models.{name}", evaluation=ev,
                       concepts_path=ROOT / cfg["prompts"]["concepts"],
                       prompts_path=ROOT / "results" / "prompts" / "evaluation.csv", studied=[args.concept])
    concept = ctx.table.steering(args.concept)
    paths = dict(concepts=ROOT / cfg["prompts"]["concepts"], bases=ROOT / cfg["prompts"]["base_prompts"])
    scratch = Path(tempfile.mkdtemp(prefix="bench_baselines_"))
    hyper = cfg["baselines"]

    # 1. slider training
    train: dict[str, list[float]] = {"global": [], "localized": []}
    for k in range(args.repeats):
        for layer_set in train:
            out = scratch / "vectors" / "sliders" / layer_set / f"{args.concept}.safetensors"
            sec, info = timed(build_slider, ctx.model, paths["concepts"], paths["bases"], args.concept, layer_set,
                              plan, hyper["sliders"], out)
            train[layer_set].append(sec)
            print(f"slider {layer_set} run {k}: {sec:.1f} s, loss {info['loss_first']:.4g} -> {info['loss_last']:.4g}",
                  flush=True)

    # 2. the other artifacts, then calibration and sweeps of the baselines and of the config's variants
    artifacts = {}
    for v in BASELINE_VARIANTS:
        family, layer_set = parse_variant_name(v)
        out = scratch / "vectors" / family / layer_set / f"{args.concept}.safetensors"
        if family in ("textemb", "freesliders"):
            artifacts[v] = timed(build_spec, family, args.concept, layer_set, plan, hyper.get(family, {}), mcfg, out)[0]
        elif family == "tokenemb":
            artifacts[v] = timed(build_token, ctx.model, paths["concepts"], paths["bases"], args.concept, layer_set,
                                 plan, hyper[family], out)[0]
        else:
            artifacts[v] = statistics.median(train[layer_set])
    existing = [v for v in ev["variants"] if not v.startswith("pci")]
    vectors = {v: scratch / "vectors" / "{}/{}".format(*parse_variant_name(v)) / f"{args.concept}.safetensors"
               for v in BASELINE_VARIANTS}
    vectors.update({v: results / "vectors" / "{}/{}".format(*parse_variant_name(v)) / f"{args.concept}.safetensors"
                    for v in existing})
    pci = {v: results / "scores" / args.concept / v / "scores.csv" for v in ev["cutoff_from"]}
    baseline_dir = results / "sweeps" / "none"
    stages: dict[str, dict[str, float]] = {}
    scores: dict[str, Path] = {}
    for label, names in (("baselines", BASELINE_VARIANTS), ("config", existing)):
        variants = make_variants(names, {v: str(vectors[v]) for v in names}, {"layer_sets": {}})
        cal_path = scratch / label / "calibration.json"
        t_cal, cal = timed(calibration_stage, ctx.model, concept, variants, ctx.calibration_prompts, baseline_dir,
                           pci, cal_path, lpaps_scorer=ctx.lpaps, gen=ctx.gen, text_len=ctx.text_len,
                           search=ev["calibration"])
        outs = {v: (str(scratch / label / "sweeps" / v), str(scratch / label / "scores" / v / "scores.csv"))
                for v in names}
        t_sweep, _ = timed(calibrated_stage, ctx.model, concept, variants, ctx.eval_prompts, baseline_dir, cal, outs,
                           **ctx.common())
        stages[label] = {"calibrate": t_cal, "sweep": t_sweep, "variants": len(names)}
        scores.update({v: Path(outs[v][1]) for v in names})
        print(f"{label}: calibrate {t_cal:.1f} s, sweeps {t_sweep:.1f} s for {len(names)} variants", flush=True)

    # 3. this concept's AUC
    from tada.evaluate.collect import per_alpha
    from tada.evaluate.protocol import cutoffs, per_concept
    from tada.evaluate.scores import read_scores

    frames = {(v, args.concept): read_scores(p)[0] for v, p in scores.items()}
    frames.update({(v, args.concept): read_scores(p)[0] for v, p in pci.items()})
    base = read_scores(results / "scores" / "none" / "scores.csv")[0]
    curves = per_alpha(frames, base, list(ctx.eval_prompts["prompt_id"]))
    table = per_concept(curves, cutoffs(curves, list(ev["cutoff_from"])))
    scorers = [c[len("auc_"):] for c in table.columns if c.startswith("auc_") and c.count("_") == 1]

    mt = {k: statistics.median(v) for k, v in train.items()}
    steps = hyper["sliders"]["steps"]
    lines = [f"{date.today()}, {platform.machine()} CPU, {args.threads} threads, embedded model (config.yaml: "
             f"{mcfg.get('steps')} steps, CFG {mcfg.get('guidance')}, {mcfg.get('duration')} s), concept "
             f"`{args.concept}`.", "",
             f"**Concept Sliders training** ({steps} steps, batch {hyper['sliders']['batch_size']}, partial denoising "
             f"over {hyper['sliders']['denoise_steps']} steps; median of {args.repeats} runs):", "",
             "| layer set | median s per slider | s per step | runs (s) |", "|---|---|---|---|"]
    for k, v in train.items():
        lines.append(f"| {k} | {mt[k]:.1f} | {mt[k] / steps:.2f} | {', '.join(f'{x:.1f}' for x in v)} |")
    b, c = stages["baselines"], stages["config"]
    build = sum(artifacts.values())
    added = build + b["calibrate"] + b["sweep"]
    lines += ["", f"**Added cost per concept** (one run each, same machine, same process): the "
              f"{b['variants']} baseline variants' artifacts {build:.0f} s (sliders {mt['global'] + mt['localized']:.0f} s), "
              f"calibration {b['calibrate']:.0f} s and sweeps {b['sweep']:.0f} s, in all **{added:.0f} s**; the "
              f"{c['variants']} calibrated variants of config.yaml take {c['calibrate']:.0f} s + {c['sweep']:.0f} s "
              f"= {c['calibrate'] + c['sweep']:.0f} s for the same two stages "
              f"({(b['calibrate'] + b['sweep']) / (c['calibrate'] + c['sweep']):.2f}× their time).", "",
              f"**AUC and smoothness for `{args.concept}` alone** (cutoff from {', '.join(ev['cutoff_from'])}; "
              "one concept, 4 prompts: a hint of the ranking, not Table 1):", "",
              "| variant | " + " | ".join(f"AUC ({s})" for s in scorers) + " | "
              + " | ".join(f"smoothness ({s})" for s in scorers) + " |",
              "|---|" + "---|" * (2 * len(scorers))]
    for r in table.sort_values(f"auc_{scorers[0]}", ascending=False).itertuples(index=False):
        d = r._asdict()
        lines.append(f"| {d['method']} | " + " | ".join(f"{d[f'auc_{s}']:.4f}" for s in scorers) + " | "
                     + " | ".join(f"{d[f'smooth_{s}']:.3f}" for s in scorers) + " |")
    print(TITLE)
    print("\n".join(lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", "## Evaluation", TITLE, lines)


if __name__ == "__main__":
    main()
