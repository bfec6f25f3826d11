"""Tables, figures and the report's inputs from every sweep's scores (rule evaluate)."""
from pathlib import Path

from tada.evaluate.pipeline import read_prompt_table
from tada.evaluate.study import evaluate_study
from tada.io import rule_logging

rule_logging(snakemake)
p = snakemake.params
evaluate_study(results=Path(snakemake.input.baseline).parents[2], out_dir=Path(snakemake.output.table1).parent, steering=p.steering,
               variants=p.variants, combinations=p.combinations, combination_variants=p.combination_variants,
               prompts=read_prompt_table(snakemake.input.prompts), cutoff_from=p.evaluation["cutoff_from"],
               steps=p.steps, sheet_prompts=p.evaluation["sheet_prompts"], heatmap=snakemake.input.heatmap or None)
