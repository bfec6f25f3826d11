"""CAA vector of one concept on one layer set (rule caa)."""
import logging

from tada.io import rule_logging
from tada.steering.build import build_caa, read_plan

rule_logging(snakemake)
concept, layer_set = snakemake.wildcards.concept, snakemake.wildcards.layerset
vector = build_caa(snakemake.input.manifest, read_plan(snakemake.input.plan), concept, layer_set,
                   normalize=snakemake.params.normalize)
vector.save(snakemake.output[0])
logging.info("%r; mean norm per layer %s", vector, vector.norms().mean(axis=0).round(4).tolist())
