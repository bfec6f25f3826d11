"""Resolve the global / localized / ablated layer sets and the layers that get an SAE (checkpoint layer_sets)."""
import logging

from tada.io import rule_logging, write_json
from tada.steering.build import plan_layer_sets

rule_logging(snakemake)
functional = snakemake.input.functional[0] if snakemake.input.functional else None
plan = plan_layer_sets(snakemake.input.manifest, functional, override=snakemake.params.override,
                       names=snakemake.params.names, sae_layer_sets=snakemake.params.sae_layer_sets)
write_json(snakemake.output[0], plan)
logging.info("layer sets %s; SAE layers %s", plan["layer_sets"], plan["sae_layers"])
