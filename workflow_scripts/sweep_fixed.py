"""PCI sweeps of one concept on its integer grid (rule sweep_fixed)."""
from pathlib import Path

from tada.evaluate.pipeline import StageContext, fixed_grid_stage, make_variants, outputs_by_variant
from tada.io import rule_logging
from tada.steering.build import read_plan

rule_logging(snakemake)
ctx = StageContext.from_job(snakemake)
variants = make_variants(snakemake.params.variants, {}, read_plan(snakemake.input.plan))
fixed_grid_stage(ctx.model, ctx.table.steering(snakemake.wildcards.concept), variants, ctx.eval_prompts,
                 Path(snakemake.input.baseline).parent, outputs_by_variant(snakemake.output, snakemake.params.variants),
                 **ctx.common())
