"""Tables and figures of the listening study from its ratings file (rule study_analysis)."""
from pathlib import Path

from tada.io import rule_logging
from tada.study.analysis import analyse
from tada.study.plan import read_manifest

rule_logging(snakemake)
analyse(snakemake.input.ratings, Path(snakemake.output.summary).parent, read_manifest(snakemake.input.bundle))
