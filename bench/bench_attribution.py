"""Attribution patching against activation patching: agreement and cost.

Agreement (on the config's localization concepts and pairs, the embedded model and its scorer):

    .venv/bin/python bench/bench_attribution.py agreement \\
        --patch-dir results/embedded/localize [--seeds 0] [--qk-fix] [--concepts a b] [--write]

runs ``localize_concept(mode="attribution")`` for every concept whose output is not in
``--out`` yet (results/bench/attribution/<variant>/<concept>/), reads the patch-mode
``raw.csv`` of the same concepts from ``--patch-dir`` (a finished default run), restricts both to
the same (pair, seed) units and the patch run's denominator guard, and prints per concept the
Spearman rank correlation of the 8 layer impacts, whether the top-2 layers agree, and the layers
both would choose; it draws the side-by-side heatmap docs/figures/attribution_heatmap.png
(patching | attribution [| attribution with the QK fix]).

Cost (per (pair, seed), each measurement in a fresh subprocess for its peak memory):

    .venv/bin/python bench/bench_attribution.py cost [--repeats 3] [--write]

on the embedded model (8 layers, trained weights) and on a tiny randomly initialised Stable
Audio pipeline with 24 transformer layers (world CLAP scorer on its audio). Reports wall time
per unit, model-evaluation equivalents (wall time per unit / wall time of one plain generation
and scoring of one prompt, measured in the same process), the generations and backward passes
counted, and the peak resident memory above the loaded model's (``ru_maxrss``), medians of
`--repeats` runs. ``--write`` puts each part in the "## Localization" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tada.io import replace_subsection  # noqa: E402

SECTION = "## Localization"
AGREE_TITLE = "### Attribution patching: agreement with activation patching (`bench/bench_attribution.py agreement`)"
COST_TITLE = "### Attribution patching: cost per (pair, seed) (`bench/bench_attribution.py cost`)"
FIGURE = ROOT / "docs" / "figures" / "attribution_heatmap.png"


# --------------------------------------------------------------------------------------------
# agreement
# --------------------------------------------------------------------------------------------
def run_attribution(cfg, concepts, seeds, out: Path, pairs_dir: Path, qk_fix: bool) -> None:
    from tada.localize import localize_concept
    from tada.models import load_model
    from tada.prompts import load_concepts, read_pairs
    from tada.scorers import load_scorer

    todo = [c for c in concepts if not (out / c / "impact.csv").exists()]
    if not todo:
        return
    mcfg = cfg["models"][cfg["model"]]
    model = load_model(mcfg, key=f"models.{cfg['model']}")
    scorer = load_scorer(cfg["scorer"])
    catalog = load_concepts(ROOT / cfg["prompts"]["concepts"])
    for c in todo:
        concept = catalog.localization(c)
        t0 = time.perf_counter()
        res = localize_concept(model, scorer, read_pairs(pairs_dir / c / "pairs.csv"), concept.alignment_text,
                               concept=c, seeds=seeds, mode="attribution", max_pairs=cfg["localize"]["max_pairs"],
                               min_denominator=cfg["localize"]["min_denominator"], steps=mcfg.get("steps"),
                               guidance=mcfg.get("guidance"), duration=mcfg.get("duration"), qk_fix=qk_fix)
        res.write(out / c)
        print(f"  {c}: {time.perf_counter() - t0:.1f} s", flush=True)


def unit_impacts(raw: pd.DataFrame, keep: pd.DataFrame) -> pd.Series:
    """Per-layer mean impact over the units in `keep` (pair_id, seed) that were not skipped."""
    rows = raw.merge(keep, on=["pair_id", "seed"])
    rows = rows[(rows["layer"] >= 0) & ~rows["skipped"].astype(bool)]
    return rows.groupby("layer")["impact"].mean()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1])


def top2(v: pd.Series) -> list[int]:
    return sorted(int(l) for l in sorted(v.index, key=lambda l: (-v[l], l))[:2])


def compare(concepts, patch_dir: Path, variants: dict[str, Path], seeds) -> dict:
    out: dict = {"concepts": {}, "variants": list(variants)}
    mats = {"patching": {}} | {v: {} for v in variants}
    for c in concepts:
        praw = pd.read_csv(patch_dir / c / "raw.csv")
        units = praw[(praw["layer"] == -1) & praw["seed"].isin(seeds)][["pair_id", "seed", "skipped"]]
        keep = units[~units["skipped"].astype(bool)][["pair_id", "seed"]]
        p = unit_impacts(praw, keep)
        mats["patching"][c] = p
        row = {"n_units": int(len(units)), "n_used": int(len(keep)), "patch_top2": top2(p)}
        for v, d in variants.items():
            araw = pd.read_csv(d / c / "raw.csv")
            a = unit_impacts(araw, keep).reindex(p.index)
            mats[v][c] = a
            row[v] = {"spearman": spearman(p.to_numpy(), a.to_numpy()), "top2": top2(a),
                      "top2_agree": top2(a) == top2(p), "top1_agree": int(a.idxmax()) == int(p.idxmax()),
                      "all_layers": float(araw.merge(keep, on=["pair_id", "seed"]).query("layer == -1")["impact"].mean()),
                      "elapsed_s": json.loads((d / c / "summary.json").read_text())["elapsed_s"]}
        out["concepts"][c] = row
        hashes = {json.loads((d / c / "summary.json").read_text()).get("weights_sha256")
                  for d in [patch_dir, *variants.values()]}
        if len(hashes) > 1:
            raise ValueError(f"{c}: the patching and attribution runs used different model weights")
    for v in variants:
        rhos = [r[v]["spearman"] for r in out["concepts"].values()]
        out[v] = {"mean_spearman": float(np.mean(rhos)), "median_spearman": float(np.median(rhos)),
                  "top2_agree": int(sum(r[v]["top2_agree"] for r in out["concepts"].values())),
                  "top1_agree": int(sum(r[v]["top1_agree"] for r in out["concepts"].values())),
                  "chosen": top2(pd.DataFrame(mats[v]).mean(axis=1))}
    out["patching"] = {"chosen": top2(pd.DataFrame(mats["patching"]).mean(axis=1))}
    out["matrices"] = {k: pd.DataFrame(m).T for k, m in mats.items()}
    return out


def heatmap(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = result["matrices"]
    names = list(mats)
    vmax = float(np.nanmax(np.abs(mats["patching"].to_numpy())))  # colours clipped to patching's range
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 0.35 * len(mats["patching"]) + 1.6),
                             sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        m = mats[name]
        im = ax.imshow(m.to_numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        for (i, j), val in np.ndenumerate(m.to_numpy()):
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=5.5,
                    color="white" if abs(val) > 0.6 * vmax else "black")
        ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns])
        ax.set_yticks(range(m.shape[0]), list(m.index))
        ax.set_xlabel("layer")
        title = name if name == "patching" else f"{name} (mean ρ {result[name]['mean_spearman']:.2f})"
        ax.set_title(title)
    fig.colorbar(im, ax=axes, shrink=0.8, label=f"impact (colours clipped at ±{vmax:.2f})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def agreement_lines(result: dict, patch_dir: Path, seeds) -> list[str]:
    variants = result["variants"]
    head = "| concept | units used | patching top-2 | " + " | ".join(
        f"{v}: ρ, top-2 (agree)" for v in variants) + " |"
    lines = [f"Patching impacts from `{patch_dir}` (raw.csv, seeds {list(seeds)}); attribution on the same "
             "(pair, seed) units and the patch run's denominator guard; ρ = Spearman rank correlation "
             "of the 8 layer impacts. Figure: `docs/figures/attribution_heatmap.png`.", "", head,
             "|" + "---|" * (3 + len(variants))]
    for c, r in result["concepts"].items():
        cells = [f"{r[v]['spearman']:.2f}, {r[v]['top2']} ({'yes' if r[v]['top2_agree'] else 'no'})" for v in variants]
        lines.append(f"| {c} | {r['n_used']}/{r['n_units']} | {r['patch_top2']} | " + " | ".join(cells) + " |")
    lines.append("")
    for v in variants:
        s = result[v]
        lines.append(f"- {v}: mean ρ **{s['mean_spearman']:.2f}** (median {s['median_spearman']:.2f}; target ≥ 0.8: "
                     f"{'met' if s['mean_spearman'] >= 0.8 else '**not met**'}), top-2 layers agree for "
                     f"{s['top2_agree']}/{len(result['concepts'])} concepts (top-1 for {s['top1_agree']}), functional "
                     "layers chosen across "
                     f"concepts {s['chosen']} (patching: {result['patching']['chosen']}), "
                     f"{sum(r[v]['elapsed_s'] for r in result['concepts'].values()):.0f} s in all.")
    return lines


def cmd_agreement(args) -> None:
    from tada.config import load_config

    cfg = load_config(ROOT / "config.yaml")
    concepts = args.concepts or list(cfg["concepts"]["localization"])
    seeds = [int(s) for s in args.seeds]
    patch_dir = Path(args.patch_dir)
    pairs_dir = Path(args.pairs_dir) if args.pairs_dir else patch_dir.parents[1] / "prompts"
    tag = "s" + "-".join(map(str, seeds))
    variants = {"attribution": Path(args.out) / f"linear_{tag}"}
    if args.qk_fix or (Path(args.out) / f"qk_fix_{tag}").exists():
        variants["attribution + QK fix"] = Path(args.out) / f"qk_fix_{tag}"
    for name, d in variants.items():
        print(f"{name}: {d}", flush=True)
        run_attribution(cfg, concepts, seeds, d, pairs_dir, qk_fix="QK" in name)
    done = [c for c in concepts if all((d / c / "raw.csv").exists() for d in variants.values())]
    result = compare(done, patch_dir, variants, seeds)
    heatmap(result, FIGURE)
    lines = agreement_lines(result, patch_dir, seeds)
    for name, m in result["matrices"].items():
        print(f"impact, {name} (concepts x layers):\n{m.round(2).to_string()}\n")
    print("\n".join(lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", SECTION, AGREE_TITLE, lines)


# --------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------
#: (model, batch size) settings measured: batch 1 = every copy its own generation (cost grows with
#: the rows computed, as on a saturated accelerator); batch 16 = copies packed into batches
SETTINGS = (("embedded", 16), ("embedded", 1), ("stable_audio", 16), ("stable_audio", 1))
#: measured modes: attribution (defaults: QK fix, checkpointing) and without checkpointing
MODES = ("patch", "attribution", "attribution/no-checkpoint")
PAIRS = [("lively drums and percussion, a groovy band", "lively saxophone and percussion, a groovy band"),
         ("a happy piano song with drums", "a sad piano song with drums")]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(kind: str, mode: str, sa_dir: str | None, batch_size: int) -> dict:
    """One measurement (in its own process): plain-generation time, then localize_concept."""
    import torch

    from tada.localize import localize_concept
    from tada.scorers import load_scorer

    torch.set_num_threads(1)
    scorer = load_scorer({"kind": "clap", "path": str(ROOT / "data" / "embedded_clap")})
    if kind == "embedded":
        from tada.models.embedded import EmbeddedModel

        model = EmbeddedModel.from_pretrained(ROOT / "data" / "embedded_model", batch_size=batch_size, steps=30,
                                              guidance=4.0)
    else:
        from tada.models import load_model

        model = load_model({"backend": "stable_audio", "path": sa_dir, "steps": 8, "guidance": 3.0,
                            "duration": 1.0, "batch_size": batch_size})
    pairs = pd.DataFrame({"pair_id": [f"p{i}" for i in range(len(PAIRS))], "target": [t for t, _ in PAIRS],
                          "source": [s for _, s in PAIRS]})
    scorer.score(model.generate([PAIRS[0][0]], [0]), "music with drums")  # warm-up
    t0 = time.perf_counter()
    scorer.score(model.generate([PAIRS[0][0]], [1]), "music with drums")
    one = time.perf_counter() - t0
    base = _rss_mib()
    t0 = time.perf_counter()
    res = localize_concept(model, scorer, pairs, "music with drums", seeds=[0], mode=mode.split("/")[0],
                           min_denominator=-1e9, checkpoint=not mode.endswith("/no-checkpoint"))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = res.summary["n_units"]
    return {"kind": kind, "layers": len(model.layers), "mode": mode, "batch_size": batch_size, "wall_per_unit": wall / n,
            "one_generation": one, "equivalents": wall / n / one, "generations_per_unit": res.summary["generations"] / n,
            "backward_per_unit": res.summary.get("backward_passes", 0) / n, "peak_mib": peak,
            "extra_peak_mib": peak - base, "units": n}


def cmd_cost(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        from tada.testing.tiny import build_tiny_stable_audio

        sa = build_tiny_stable_audio(Path(tmp) / "sa24", layers=24)
        runs: dict[tuple[str, int, str], list[dict]] = {}
        for r in range(args.repeats):
            for kind, bs in SETTINGS:
                for mode in MODES:
                    cmd = [sys.executable, __file__, "_worker", kind, mode, sa, str(bs)]
                    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                    if out.returncode:
                        raise RuntimeError(out.stderr[-3000:])
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    runs.setdefault((kind, bs, mode), []).append(res)
                    print(f"run {r + 1}: {kind} batch {bs} {mode}: {res['wall_per_unit']:.2f} s/unit, "
                          f"{res['equivalents']:.1f} eq, +{res['extra_peak_mib']:.0f} MiB", flush=True)
    lines = cost_lines(runs, args.repeats)
    print("\n".join(lines))
    if args.write:
        replace_subsection(ROOT / "BENCHMARKS.md", SECTION, COST_TITLE, lines)


def cost_lines(runs, repeats) -> list[str]:
    med = {k: {f: float(np.median([r[f] for r in v])) for f in v[0] if isinstance(v[0][f], (int, float))}
           for k, v in runs.items()}
    lines = [f"Medians of {repeats} runs, each in a fresh process, 1 torch thread, 2 (pair, seed) units per run "
             "(2 pairs × 1 seed), world CLAP scorer. Embedded: trained model, 30 steps, CFG 4. "
             "Stable Audio: tiny random pipeline (`tada.testing.build_tiny_stable_audio(layers=24)`), 8 steps, "
             "CFG 3, 1 s. Batch 16: patched copies packed 16 to a generation (default); batch 1: every "
             "copy its own generation. Evaluation equivalents = wall time per unit / wall time of one plain "
             "generation + scoring of one prompt in the same process. Peak = `ru_maxrss` above the loaded "
             "model's resident memory.", "",
             "| model | layers | batch | mode | s / unit | eval. equivalents | generations / unit | backward / unit "
             "| peak extra MiB | patch time / attribution time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = {}
    for kind, bs in SETTINGS:
        if (kind, bs, "patch") not in med:
            continue
        p = med[(kind, bs, "patch")]
        for mode in MODES:
            m = med[(kind, bs, mode)]
            ratios[(kind, bs, mode)] = r = p["wall_per_unit"] / m["wall_per_unit"]
            lines.append(f"| {kind} | {int(m['layers'])} | {bs} | {mode} | {m['wall_per_unit']:.2f} | "
                         f"{m['equivalents']:.1f} | {m['generations_per_unit']:.0f} | {m['backward_per_unit']:.0f} | "
                         f"{m['extra_peak_mib']:.0f} | {'' if mode == 'patch' else f'{r:.1f}x'} |")
    lines.append("")
    for (kind, bs, mode), r in ratios.items():
        if kind == "stable_audio" and mode != "patch":
            lines.append(f"- 24-layer Stable Audio, batch {bs}, {mode}: {r:.1f}x faster than patching per "
                         f"(pair, seed) (target ≥ 5x: {'met' if r >= 5 else '**not met**'}).")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("agreement")
    a.add_argument("--patch-dir", default=str(ROOT / "results" / "embedded" / "localize"))
    a.add_argument("--pairs-dir", default=None, help="default: <patch-dir>/../../prompts")
    a.add_argument("--out", default=str(ROOT / "results" / "bench" / "attribution"))
    a.add_argument("--seeds", nargs="+", default=["0"])
    a.add_argument("--concepts", nargs="*")
    a.add_argument("--qk-fix", action="store_true", help="also run (or include) attribution with the QK fix")
    a.add_argument("--write", action="store_true")
    c = sub.add_parser("cost")
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    (cmd_agreement if args.cmd == "agreement" else cmd_cost)(args)


if __name__ == "__main__":
    main()
