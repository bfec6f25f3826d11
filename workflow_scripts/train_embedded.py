"""Train the embedded text-to-music model from a seed (snakemake rule train_embedded)."""
import logging
from pathlib import Path

from tada.embedded.train import train_from_config

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
train_from_config({"seed": snakemake.params.seed}, Path(snakemake.output.weights).parent)
