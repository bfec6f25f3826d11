"""Train the embedded text-to-music model from a seed (snakemake rule train_embedded)."""
import logging
from pathlib import Path

from tada.embedded.train import train_from_config
from tada.io import rule_logging

rule_logging(snakemake)
settings = {"seed": snakemake.params.seed}
if snakemake.params.steps:
    settings.update(steps=int(snakemake.params.steps), minutes=None)
train_from_config(settings, Path(snakemake.output.weights).parent)
