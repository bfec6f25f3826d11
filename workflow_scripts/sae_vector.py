"""SAE feature statistics of a concept (rule sae_scores), or its SAE steering vector on one layer
set from the top TF-IDF features (rule sae_vector)."""
import logging

import torch

from tada.io import rule_logging
from tada.steering.build import build_sae_stats, build_sae_vector, read_plan

rule_logging(snakemake)
concept = snakemake.wildcards.concept
saes = {int(k[len("layer"):]): v for k, v in snakemake.input.items() if k.startswith("layer")}
if snakemake.rule == "sae_scores":
    build_sae_stats(snakemake.input.manifest, saes, concept, snakemake.output[0])
    logging.info("feature statistics of %s on layers %s", concept, sorted(saes))
else:
    vector = build_sae_vector(snakemake.input.stats, saes, read_plan(snakemake.input.plan), concept,
                              snakemake.wildcards.layerset, snakemake.params.top_features)
    vector.save(snakemake.output[0])
    logging.info("%r; features %s", vector, vector.info["features"])
