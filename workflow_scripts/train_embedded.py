"""Train the embedded text-to-music model from a seed (snakemake rule train_embedded)."""
import logging
from pathlib import Path

from tada.embedded.train import train_from_config

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
settings = {"seed": snakemake.params.seed}
if snakemake.params.steps:
    settings.update(steps=int(snakemake.params.steps), minutes=None)
train_from_config(settings, Path(snakemake.output.weights).parent)
