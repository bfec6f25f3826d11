"""Multi-concept vector of one combination, method and layer set (rule combine)."""
import logging

from tada.io import rule_logging
from tada.steering.build import build_combination, read_plan

rule_logging(snakemake)
terms = [(concept, int(sign)) for concept, sign in snakemake.params.terms]
inputs = {concept: snakemake.input[concept] for concept, _ in terms}
saes = {int(k[len("layer"):]): v for k, v in snakemake.input.items() if k.startswith("layer")}
vector = build_combination(snakemake.wildcards.method, snakemake.wildcards.combination, terms, inputs,
                           read_plan(snakemake.input.plan), snakemake.wildcards.layerset,
                           top_k=snakemake.params.top_k, top_features=snakemake.params.top_features,
                           saes=saes)
vector.save(snakemake.output[0])
logging.info("%r from %s", vector, terms)
