"""Quality bar of the embedded model (see tada/embedded_quality/ and docs/embedded.md).

Generates from held-out caption phrasings with and without each concept and reports, against
the targets: per-concept classifier accuracy (>= 85 %), spectral flux generated / rendered
(<= 1.5x), flux at token boundaries / inside tokens (<= 1.2x), onset rates of fast and slow
generations, the world CLAP's ranking accuracy on held-out rendered clips (>= 80 %), seconds
per 4 s clip at batch 1 (30 steps, CFG) and the training cost. Draws
docs/figures/generated_vs_rendered.png and writes the "Embedded model" section of BENCHMARKS.md.

    .venv/bin/python bench/bench_embedded.py [--model data/embedded_model] [--pairs 12]
        [--guidance G] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.embedded_quality.bar import (BOUNDARY_TARGET, CLASSIFIER_TARGET, FLUX_TARGET, SCORER_TARGET,  # noqa: E402
                                       run_quality)
from tada.io import replace_section  # noqa: E402

SECTION_START = "<!-- bench_embedded:start -->"
SECTION_END = "<!-- bench_embedded:end -->"


def _mark(ok: bool) -> str:
    return "meets" if ok else "**below**"


def format_report(r: dict) -> str:
    lines = ["## Embedded model", ""]
    model_dir = Path(r["model_dir"])
    model_dir = model_dir.relative_to(ROOT) if model_dir.is_absolute() and ROOT in model_dir.parents else model_dir
    lines.append(f"Model `{model_dir}`: {r['parameters'] / 1e6:.2f} M parameters, trained "
                 f"{r['train_steps']} steps in {r['train_seconds'] / 60:.1f} min (2 shared CPU cores). "
                 f"Sampling: {r['steps']} Euler steps, CFG {r['guidance']:g}; {r['n_pairs']} held-out "
                 "caption pairs per concept (pair members share the noise seed).")
    lines.append("")
    lines.append(f"Per-concept classifier accuracy on generations (target >= {CLASSIFIER_TARGET:.0%}); "
                 "`paired` = fraction of pairs where the prompt with the concept scores higher; `AUC` = chance "
                 "that any generation with the concept outscores any without it (the classifier's threshold "
                 "aside). The bar is measured on held-out templates with held-out words; the training-words columns "
                 "fill the same templates with training words, to separate new phrasing from new words. "
                 "`calibrated` = accuracy at a threshold fitted on generations from training captions (other "
                 "prompts and seeds) instead of the classifier's 0.5, which is set on rendered clips. `encoder` = "
                 "share of the concept's held-out words that MiniLM alone places nearer their own value's training "
                 "words than the other value's (a word it does not relate gives the model nothing to go on). "
                 "`readout` = accuracy on held-out captions of a reader of MiniLM's token states fitted on "
                 "training captions the way one cross-attention head reads them (held-out words / training "
                 "words; `text_readout` in tada/embedded_quality/text.py):")
    lines.append("")
    lines.append("| concept | accuracy | paired | AUC | bar | calibrated | training words: accuracy / paired / AUC "
                 "/ calibrated | encoder | readout | example prompt with the concept |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")

    def pct(e: dict, key: str) -> str:
        return f"{e[key]:.0%}" if key in e else "-"

    for name, e in r["concepts"].items():
        auc = f"{e['auc']:.2f}" if "auc" in e else "-"
        tw = (f"{e['accuracy_train_words']:.0%} / {e['paired_train_words']:.0%} / {e['auc_train_words']:.2f} / "
              f"{pct(e, 'accuracy_train_words_calibrated')}" if "accuracy_train_words" in e else "-")
        readout = (f"{e['encoder_readout']:.0%} / {e['encoder_readout_train_words']:.0%}"
                   if "encoder_readout" in e else "-")
        lines.append(f"| {name} | {e['accuracy']:.0%} | {e['paired_accuracy']:.0%} | {auc} | {_mark(e['meets_bar'])} | "
                     f"{pct(e, 'accuracy_calibrated')} | {tw} | {pct(e, 'encoder_recognises')} | {readout} | "
                     f"{e['example_positive']} |")
    lines.append("")
    below = r.get("below_bar") or []
    lines.append(f"Below the bar: {', '.join(below) if below else 'none'}.")
    lines.append("")
    t = r["concepts"].get("tempo", {})
    lines.append("| measure | value | target |")
    lines.append("|---|---|---|")
    lines.append(f"| spectral flux generated / rendered | {r['flux_ratio']:.2f}x "
                 f"({r['flux_generated']:.4f} / {r['flux_rendered']:.4f}) | <= {FLUX_TARGET}x ({_mark(r['flux_ratio'] <= FLUX_TARGET)}) |")
    if "flux_ratio_training_clips" in r:
        lines.append(f"| spectral flux generated / training-world clips | {r['flux_ratio_training_clips']:.2f}x | "
                     f"<= {FLUX_TARGET}x ({_mark(r['flux_ratio_training_clips'] <= FLUX_TARGET)}) |")
    lines.append(f"| flux at token boundaries / inside tokens ({r['frames_per_token']} frames per token) | "
                 f"{r['boundary_flux_ratio']:.2f}x | <= {BOUNDARY_TARGET}x ({_mark(r['boundary_flux_ratio'] <= BOUNDARY_TARGET)}) |")
    if "flux_ratio_unsmoothed" in r:
        lines.append(f"| the same without the decoder's {r['output_median']}-frame median (first concept's generations): "
                     f"flux / rendered, boundary / inside | {r['flux_ratio_unsmoothed']:.2f}x, "
                     f"{r['boundary_flux_ratio_unsmoothed']:.2f}x | reference |")
    if "onsets_per_s_fast" in t:
        lines.append(f"| onsets/s, generated fast / slow | {t['onsets_per_s_fast']:.2f} / {t['onsets_per_s_slow']:.2f} | "
                     f"rendered {t['rendered_onsets_per_s_fast']:.2f} / {t['rendered_onsets_per_s_slow']:.2f} |")
    if "clap" in r:
        c = r["clap"]
        per = ", ".join(f"{k[9:]} {v:.0%}" for k, v in c.items() if k.startswith("rank_acc_") and k != "rank_acc_mean")
        ok = min(v for k, v in c.items() if k.startswith("rank_acc_") and k != "rank_acc_mean") >= SCORER_TARGET
        lines.append(f"| world CLAP ranks the right concept text first ({c['clips']} held-out rendered clips) | "
                     f"mean {c['rank_acc_mean']:.0%} ({per}) | >= {SCORER_TARGET:.0%} each ({_mark(ok)}) |")
    w = r["world_scorer"]
    per = ", ".join(f"{k[9:]} {v:.0%}" for k, v in w.items() if k.startswith("rank_acc_") and k != "rank_acc_mean")
    lines.append(f"| world scorer (classifiers) ranking, same clips | mean {w['rank_acc_mean']:.0%} ({per}) | reference |")
    # Judged on the median of the runs, never the best.
    lines.append(f"| seconds per 4 s clip, batch 1, {r['steps']} steps + CFG (no vocoding) | "
                 f"{r['seconds_per_clip']:.2f} s median of {r.get('timing_repeats', 'several')} runs | "
                 f"<= 0.5 s ({_mark(r['seconds_per_clip'] <= 0.5)}) |")
    lines.append(f"| training time | {r['train_seconds'] / 60:.1f} min, {r['train_steps']} steps | <= 60 min |")
    lines.append("")
    if r.get("figure"):
        lines.append(f"Figure: `{Path(r['figure']).relative_to(ROOT) if Path(r['figure']).is_absolute() else r['figure']}` "
                     "(rendered clips on top, generations from their held-out captions below).")
        lines.append("")
    if r.get("notes"):
        lines.append("Notes: " + r["notes"])
    lines.append("")
    where = ("with no other job on the machine" if r.get("alone")
             else "on a CPU shared with other jobs (timings are upper bounds)")
    lines.append(f"_Measured {dt.date.today().isoformat()} on {platform.machine()}, torch "
                 f"{torch.__version__}, {r.get('threads', torch.get_num_threads())} thread(s), {where}._")
    lines.append("")
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    replace_section(path, SECTION_START, SECTION_END, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "embedded_model"))
    parser.add_argument("--out", default=str(ROOT / "results" / "embedded" / "quality"))
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--dataset", default=str(ROOT / "results" / "embedded" / "train2" / "dataset.npz"),
                        help="the training run's dataset.npz (flux against the model's own world version)")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--from-json", default=None, help="format an existing quality.json instead of measuring")
    parser.add_argument("--notes", default=None, help="a sentence or two added under the tables")
    parser.add_argument("--alone", action="store_true",
                        help="say that nothing else ran on the machine (default: timings are upper bounds)")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "generated_vs_rendered.png"),
                        help="where the generated-vs-rendered figure goes ('none': no figure)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        result = run_quality(args.model, args.out, n_pairs=args.pairs, guidance=args.guidance,
                             figure=None if args.figure == "none" else args.figure,
                             training_dataset=args.dataset,
                             progress=lambda m: print(f"... {m}", flush=True))
    if args.notes:
        result["notes"] = args.notes
    result["alone"] = bool(args.alone)
    result.setdefault("threads", args.threads)
    text = format_report(result)
    print(text)
    if not args.no_write:
        write_section(text, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
