"""α range of every calibrated variant of one concept against the PCI cutoff (rule calibrate)."""
from pathlib import Path

from tada.evaluate.pipeline import StageContext, calibration_stage, make_variants
from tada.io import rule_logging

rule_logging(snakemake)
ctx = StageContext.from_job(snakemake)
names = snakemake.params.variants
variants = make_variants(names, dict(zip(names, snakemake.input.vectors)), {"layer_sets": {}})
pci = dict(zip(snakemake.params.evaluation["cutoff_from"], snakemake.input.pci))
calibration_stage(ctx.model, ctx.table.steering(snakemake.wildcards.concept), variants, ctx.calibration_prompts,
                  Path(snakemake.input.baseline).parent, pci, snakemake.output[0], lpaps_scorer=ctx.lpaps,
                  gen=ctx.gen, text_len=ctx.text_len, search=snakemake.params.evaluation["calibration"])
