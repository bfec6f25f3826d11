"""Concept Slider (LoRA) of one concept on one layer set (rule baseline_slider)."""
from tada.io import rule_logging
from tada.methods.baseline_build import build_slider
from tada.models import load_model

rule_logging(snakemake)
wc = snakemake.wildcards
model = load_model(snakemake.params.model, key=snakemake.params.model_key)
build_slider(model, snakemake.input.concepts, snakemake.input.bases, wc.concept, wc.layerset, snakemake.input.plan,
             snakemake.params.hyper, snakemake.output[0])
