"""Counterfactual caption pairs for one localization concept (rule make_pairs)."""
import json
import logging

from tada.io import rule_logging
from tada.prompts import build_pairs, load_concepts, read_captions, write_pairs

rule_logging(snakemake)
concept = load_concepts(snakemake.input.concepts).localization(snakemake.wildcards.concept)
captions = read_captions(snakemake.input.captions)
pairs, report = build_pairs(captions, concept, max_pairs=snakemake.params.max_pairs,
                            seed=snakemake.params.seed)
write_pairs(snakemake.output.pairs, snakemake.output.report, pairs, report)
logging.info("%s: %s", concept.id, json.dumps(report))
if report["kept"] == 0:
    logging.warning("%s: no caption qualified; localization of this concept will be empty", concept.id)
