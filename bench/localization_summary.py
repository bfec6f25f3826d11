"""Summarize a localization run (``results/<model>/localize``) for BENCHMARKS.md.

    .venv/bin/python bench/localization_summary.py [results/embedded/localize] [--note TEXT] [--write]

Reads ``layers.json`` and every concept's ``summary.json`` and prints: the functional layers,
mean impact per layer, the share of the top-2 layers, the all-layers and minimum impacts, each
concept's top layers and the units skipped by the denominator guard. ``--write`` replaces the
"Functional layers" block of the "## Localization" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_subsection  # noqa: E402

TITLE = "### Functional layers of the embedded model"


def summarize(directory: Path, note: str | None = None) -> list[str]:
    plan = json.loads((directory / "layers.json").read_text())
    concepts = plan["concepts"]
    summaries = {c: json.loads((directory / c / "summary.json").read_text()) for c in concepts
                 if (directory / c / "summary.json").exists()}
    scores = {s["layer"]: s["mean_impact"] for s in plan["scores"]}
    units = sum(s["n_units"] for s in summaries.values())
    gens = sum(s["generations"] for s in summaries.values())
    elapsed = sum(s["elapsed_s"] for s in summaries.values())
    any_s = next(iter(summaries.values()))
    lines = []
    if note:
        lines.append(note)
        lines.append("")
    lines.append(f"{len(concepts)} localization concepts x {any_s['n_pairs']} pairs x {len(any_s['seeds'])} seeds "
                 f"({units} units, {gens:,} generations, {elapsed / 60:.1f} min of job time), "
                 f"{any_s['mode']} mode.")
    lines.append("")
    names = ", ".join(f"`{n}`" for n in plan["layer_names"])
    lines.append(f"- **functional layers (top-{plan['top_k']} by mean impact across concepts): "
                 f"{' and '.join(str(i) for i in plan['layers'])}** ({names}); mean impact per layer "
                 f"0..{len(scores) - 1}: {', '.join(f'{scores[i]:.2f}' for i in sorted(scores))} "
                 f"(ranking {', '.join(str(i) for i in plan['ranking'])}).")
    per = [v["top2_share"] for v in plan["per_concept"].values() if v.get("top2_share") is not None]
    lines.append(f"- top-2 share of the (positive) mean impact: **{plan['top2_share']:.2f}**; per concept "
                 f"{min(per):.2f}-{max(per):.2f}.")
    tops = "; ".join(f"{c} {v['top_layers']}" for c, v in plan["per_concept"].items())
    lines.append(f"- top layers per concept: {tops}.")
    lines.append(f"- **all layers patched: impact {plan['all_layers_impact']:.3f}** (close to 1 for every "
                 f"concept: {plan['all_layers_close_to_one']}).")
    worst = min(summaries.items(), key=lambda kv: kv[1]["min_layer_impact"])
    lines.append(f"- min layer impact (mean across concepts): {plan['min_layer_impact']:.3f}; min per concept: "
                 f"{worst[1]['min_layer_impact']:.2f} ({worst[0]}).")
    near_zero = [i for i in sorted(scores) if abs(scores[i]) < 0.05]
    lines.append(f"- layers whose mean impact is about 0 (|impact| < 0.05): "
                 f"{', '.join(str(i) for i in near_zero) if near_zero else 'none'}.")
    skipped = {c: n for c, n in plan["n_skipped"].items() if n}
    lines.append(f"- denominator guard (`min_denominator` {any_s['min_denominator']}): "
                 f"{sum(skipped.values())} of {units} units skipped"
                 + (f" ({', '.join(f'{c} {n}' for c, n in sorted(skipped.items(), key=lambda kv: -kv[1]))})."
                    if skipped else "."))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", nargs="?", default=str(ROOT / "results" / "embedded" / "localize"))
    parser.add_argument("--note", default=None, help="a first paragraph (how the run was made)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    lines = summarize(Path(args.directory), args.note)
    print(TITLE)
    print("\n".join(lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", "## Localization", TITLE, lines)


if __name__ == "__main__":
    main()
