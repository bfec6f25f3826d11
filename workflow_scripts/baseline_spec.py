"""Text Embeddings / FreeSliders artifact of one concept and layer set (rule baseline_spec)."""
from tada.io import rule_logging
from tada.methods.baseline_build import build_spec

rule_logging(snakemake)
wc = snakemake.wildcards
build_spec(wc.family, wc.concept, wc.layerset, snakemake.input.plan, snakemake.params.hyper,
           snakemake.params.model, snakemake.output[0])
