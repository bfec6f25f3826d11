"""AUSteer: dense sign-consistency scores of a concept (rule austeer_scores), or the sparse
top-k vector of one layer set cut from them (rule austeer)."""
import logging

from tada.io import rule_logging
from tada.steering.build import build_austeer, build_austeer_scores, read_plan

rule_logging(snakemake)
concept = snakemake.wildcards.concept
if snakemake.rule == "austeer_scores":
    build_austeer_scores(snakemake.input.manifest, concept, snakemake.output[0])
    logging.info("scores of %s -> %s", concept, snakemake.output[0])
else:
    vector = build_austeer(snakemake.input.scores, read_plan(snakemake.input.plan), concept,
                           snakemake.wildcards.layerset, top_k=snakemake.params.top_k)
    vector.save(snakemake.output[0])
    logging.info("%r; k used %s", vector, vector.hyperparameters["top_k_used"])
