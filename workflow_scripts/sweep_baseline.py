"""The α = 0 clips of every evaluation and calibration prompt, scored (rule sweep_baseline)."""
from pathlib import Path

from tada.evaluate.pipeline import StageContext, baseline_stage
from tada.io import rule_logging

rule_logging(snakemake)
ctx = StageContext.from_job(snakemake)
baseline_stage(ctx.model, ctx.prompts, ctx.studied, Path(snakemake.output.index).parent, snakemake.output.scores,
               alignment=ctx.alignment, lpaps_scorer=ctx.lpaps, gen=ctx.gen)
