"""Multi-concept sweeps of one combination (rule sweep_combination)."""
from pathlib import Path

from tada.evaluate.pipeline import (StageContext, combination_stage, make_variants, outputs_by_variant,
                                    read_calibration)
from tada.io import rule_logging

rule_logging(snakemake)
ctx = StageContext.from_job(snakemake)
names, terms = snakemake.params.variants, [(c, int(s)) for c, s in snakemake.params.terms]
variants = make_variants(names, dict(zip(names, snakemake.input.vectors)), {"layer_sets": {}})
calibrations = {c: read_calibration(p) for (c, _), p in zip(terms, snakemake.input.calibrations)}
combination_stage(ctx.model, snakemake.wildcards.combination, terms, ctx.table, variants, ctx.eval_prompts,
                  Path(snakemake.input.baseline).parent, calibrations, outputs_by_variant(snakemake.output, names),
                  **ctx.common())
