# tada: localize and steer musical concepts in text-to-music diffusion models.
# Thin by design: every rule calls the `tada` library through a short workflow script.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/embedded.smk"
include: "rules/prompts.smk"
include: "rules/cache.smk"
include: "rules/localize.smk"
include: "rules/vectors.smk"
include: "rules/sweeps.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        all_targets(),
    default_target: True
