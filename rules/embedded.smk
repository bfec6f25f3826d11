# Training of the embedded model. Not part of the default DAG: the trained weights are
# versioned in data/embedded_model/ and read from there. Retrain with
#   snakemake --cores all train_embedded
# then copy results/embedded/train/model/ over data/embedded_model/ to adopt the new weights.
# The settings are tada.embedded.train.DEFAULTS (those of the shipped weights); training stops
# after 60 minutes, so a slower or faster machine ends at another step: add
# `--config embedded_train_steps=11292` to stop at the shipped weights' step instead.


rule train_embedded:
    output:
        weights="results/embedded/train/model/model.safetensors",
        config="results/embedded/train/model/config.json",
    log:
        "logs/embedded/train_embedded.log",
    benchmark:
        bench("train_embedded")
    params:
        seed=0,
        steps=config.get("embedded_train_steps"),
    threads: THREADS
    resources:
        gpu=0,
        **sized("train_embedded"),
    conda:
        ENV
    script:
        "../workflow_scripts/train_embedded.py"
