"""Evaluation and calibration prompts with their seeds (rule evaluation_prompts)."""
from tada.evaluate.pipeline import write_prompt_table
from tada.io import rule_logging
from tada.prompts.templates import load_prompt_list

rule_logging(snakemake)
ev = snakemake.params.evaluation
write_prompt_table(load_prompt_list(snakemake.input[0]), snakemake.output[0], n_eval=ev["prompts"],
                   n_calibration=ev["calibration_prompts"], seed=ev["seed"])
