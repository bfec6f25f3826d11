"""The bundle from a validated workflow config and a finished run (``results/<model>``).

Shared by the ``study_bundle`` rule and ``tada study bundle``. Stops the sweeps lack are
rendered with the studied model (``models.<model>``), each variant built as the sweeps build it
(its vector or baseline artifact ``vectors/<family>/<layer set>/<concept>.safetensors``, PCI's
layers from ``vectors/layer_sets.json``), and scored with ``evaluation.alignment`` and
``evaluation.lpaps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .bundle import SweepRenderer, build_bundle


def study_concepts(config: Mapping[str, Any]) -> list[str]:
    """``study.concepts``, each checked to be a steering concept of the run."""
    steering = list(config["concepts"].get("steering", []))
    chosen = list(config.get("study", {}).get("concepts", []))
    bad = [c for c in chosen if c not in steering]
    if bad:
        raise ValueError(f"study.concepts: {bad} are not in concepts.steering {steering} (the study needs their "
                         f"calibrated sweeps)")
    return chosen


def renderer_from_config(config: Mapping[str, Any], results_dir: str | Path, *, score: bool = True) -> SweepRenderer:
    """A renderer for the stops the sweeps of `results_dir` lack (module doc)."""
    from tada.evaluate.sweep import SweepClips
    from tada.methods import needs_vector, parse_variant_name
    from tada.prompts import load_concepts

    results = Path(results_dir)
    key = config["model"]
    mcfg = config["models"][key]
    table = load_concepts(config["prompts"]["concepts"])
    baseline = results / "sweeps" / "none"
    plan_path = results / "vectors" / "layer_sets.json"

    def load_model():
        from tada.models import load_model

        return load_model(mcfg, key=f"models.{key}")

    def make_variant(name: str, concept: str):
        from tada.evaluate.pipeline import make_variants
        from tada.steering.build import read_plan

        family, layer_set = parse_variant_name(name)
        vectors = {}
        if needs_vector(name):
            path = results / "vectors" / family / layer_set / f"{concept}.safetensors"
            if not path.exists():
                raise FileNotFoundError(f"cannot render the study stops of {concept}/{name}: no {path}")
            vectors[name] = str(path)
        plan = read_plan(plan_path) if plan_path.exists() else {"layer_sets": {}}
        return make_variants([name], vectors, plan)[0]

    def load_scorers():
        from tada.evaluate.pipeline import alignment_scorers
        from tada.scorers import load_scorer

        evaluation = config["evaluation"]
        return alignment_scorers(evaluation["alignment"]), load_scorer(evaluation["lpaps"], key="evaluation.lpaps")

    return SweepRenderer(load_model=load_model, make_variant=make_variant,
                         settings=SweepClips(baseline).meta.get("settings", {}), baseline_dir=baseline,
                         load_scorers=load_scorers if score else None,
                         alignment_text=lambda c: table.steering(c).alignment_text)


def bundle_from_config(config: Mapping[str, Any], results_dir: str | Path, out_dir: str | Path, *,
                       prompts: str | Path = "results/prompts/evaluation.csv", render: bool = True) -> dict[str, Any]:
    """Build the bundle of `config`'s ``study`` block from the run in `results_dir` into `out_dir`."""
    import tada
    from tada.prompts import load_concepts

    study = dict(config.get("study", {}))
    study["concepts"] = study_concepts(config)
    if not Path(prompts).exists():
        raise FileNotFoundError(f"no evaluation prompt table at {prompts} (made by the evaluation_prompts rule)")
    renderer = renderer_from_config(config, results_dir) if render else None
    provenance = {"tada": tada.__version__, "config": {"study": study, "model": config["model"],
                                                         "evaluation.variants": list(config["evaluation"]["variants"])}}
    return build_bundle(out_dir, results_dir=results_dir, prompts=pd.read_csv(prompts),
                        concepts=load_concepts(config["prompts"]["concepts"]),
                        variants=config["evaluation"]["variants"], study=study, renderer=renderer,
                        provenance=provenance)
