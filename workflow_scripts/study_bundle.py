"""The listening study's bundle from the calibrated sweeps (rule study_bundle)."""
from pathlib import Path

from tada.io import rule_logging
from tada.study.build import bundle_from_config

rule_logging(snakemake)
results = Path(snakemake.input.baseline).parents[2]  # results/<model>/sweeps/none/index.csv
bundle_from_config(snakemake.config, results, snakemake.output.bundle, prompts=snakemake.input.prompts)
