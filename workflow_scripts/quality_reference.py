"""CLAP embeddings of the Fréchet-distance reference set (rule quality_reference)."""
from tada.evaluate.pipeline import reference_stage
from tada.io import rule_logging
from tada.scorers import load_scorer

rule_logging(snakemake)
ref = snakemake.params.evaluation["quality_reference"]
scorer = load_scorer(snakemake.params.evaluation["lpaps"], key="evaluation.lpaps")
reference_stage(scorer, snakemake.output[0], world_clips=ref["world_clips"], seed=ref["seed"],
                audio_dir=ref["audio_dir"], duration=snakemake.params.duration)
