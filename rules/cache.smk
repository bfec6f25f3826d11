# Activation cache: cross-attention activations of the contrastive prompts, one Zarr v3 store
# per promptset. The declared output is a small manifest; the store beside it
# ({promptset}.zarr) is written chunk by chunk and resumed by a rerun, which a directory()
# output would not allow (Snakemake deletes declared outputs before a job starts).


# Targets of this stage for `rule all` (see all_targets() in common.smk).
cache_targets = lambda: expand(
    f"{RESULTS}/activations/contrastive_{{concept}}.json", concept=STEERING
)


rule cache_activations:
    input:
        prompts="results/prompts/{concept}/contrastive.csv",
        model=input_files(MODEL_CFG.get("path")),
    output:
        manifest=f"{RESULTS}/activations/contrastive_{{concept}}.json",
    log:
        log("cache/contrastive_{concept}"),
    benchmark:
        bench("cache_activations", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        store=lambda wildcards: f"{RESULTS}/activations/contrastive_{wildcards.concept}.zarr",
        model=MODEL_CFG,
        cache=config["cache"],
    threads: THREADS
    resources:
        gpu=GPU,
        **sized("cache_activations"),
    conda:
        ENV
    script:
        "../workflow_scripts/cache_activations.py"
