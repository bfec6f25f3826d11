"""Contrastive (+/-) prompts of one steering concept from the base prompts (rule make_contrastive)."""
import logging

from tada.io import rule_logging, write_csv
from tada.prompts import contrastive_prompts, load_concepts, load_prompt_list

rule_logging(snakemake)
concept = load_concepts(snakemake.input.concepts).steering(snakemake.wildcards.concept)
bases = load_prompt_list(snakemake.input.bases)
table = contrastive_prompts(concept, bases)
write_csv(snakemake.output[0], table)
logging.info("%s: %d contrastive prompt pairs", concept.id, len(table))
