# tada: localize and steer musical concepts in text-to-music diffusion models.
# Thin by design: every rule calls the `tada` library through a short workflow script.
from snakemake.utils import min_version

from tada.config import validate_config

min_version("9.0")


configfile: "config.yaml"


# The one validation: schemas/config.schema.yaml, defaults filled, each model block's and scorer's
# keys checked against its backend / kind (tada.config.validate_config).
validate_config(config, source="config")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/embedded.smk"
include: "rules/prompts.smk"
include: "rules/cache.smk"
include: "rules/localize.smk"
include: "rules/vectors.smk"
include: "rules/sae.smk"
include: "rules/baselines.smk"
include: "rules/sweeps.smk"
include: "rules/evaluate.smk"
include: "rules/study.smk"


rule all:
    input:
        all_targets(),
        study_targets(),
    default_target: True
