"""Calibrated sweeps of every activation-steering variant of one concept (rule sweep_calibrated)."""
from pathlib import Path

from tada.evaluate.pipeline import (StageContext, calibrated_stage, make_variants, outputs_by_variant,
                                    read_calibration)
from tada.io import rule_logging

rule_logging(snakemake)
ctx = StageContext.from_job(snakemake)
names = snakemake.params.variants
variants = make_variants(names, dict(zip(names, snakemake.input.vectors)), {"layer_sets": {}})
calibrated_stage(ctx.model, ctx.table.steering(snakemake.wildcards.concept), variants, ctx.eval_prompts,
                 Path(snakemake.input.baseline).parent, read_calibration(snakemake.input.calibration),
                 outputs_by_variant(snakemake.output, names), **ctx.common())
