"""Activation or attribution patching of one localization concept (rule localize_concept)."""
import logging
from pathlib import Path

import torch

from tada.io import rule_logging
from tada.localize import localize_concept
from tada.models import load_model
from tada.prompts import load_concepts, read_pairs
from tada.scorers import load_scorer

rule_logging(snakemake)
cfg, mcfg = snakemake.params.localize, snakemake.params.model
concept = load_concepts(snakemake.input.concepts).localization(snakemake.wildcards.concept)
pairs = read_pairs(snakemake.input.pairs)
model = load_model(mcfg, key=f"models.{snakemake.config['model']}")
scorer = load_scorer(snakemake.params.scorer)
logging.info("%s: %d pairs (using up to %d) x seeds %s, mode %s, alignment text %r", concept.id,
             len(pairs), cfg["max_pairs"], cfg["seeds"], cfg["mode"], concept.alignment_text)
result = localize_concept(model, scorer, pairs, concept.alignment_text, concept=concept.id,
                          seeds=cfg["seeds"], mode=cfg["mode"], min_denominator=cfg["min_denominator"],
                          max_pairs=cfg["max_pairs"], steps=mcfg.get("steps"),
                          guidance=mcfg.get("guidance"), duration=mcfg.get("duration"),
                          units_per_round=cfg.get("units_per_round"), progress=True,
                          qk_fix=cfg.get("qk_fix", True), checkpoint=cfg.get("checkpoint", True))
result.write(Path(snakemake.output.impact).parent)
logging.info("summary: %s", result.summary)
logging.info("impact:\n%s", result.impact.to_string(index=False))
