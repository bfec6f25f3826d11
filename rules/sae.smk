# Sparse autoencoders: one SAE per layer that needs one (trained on every steering concept's
# activations), feature statistics per concept, and the SAE steering vector per layer set.
# One SAE alone: snakemake --cores 2 results/<model>/sae/shared/layer3.safetensors

# Layers that get an SAE, known once the layer_sets checkpoint has run.
_sae_layers = lambda wildcards: read_plan(checkpoints.layer_sets.get().output[0])["sae_layers"]

_sae_weights = lambda wildcards: {
    f"layer{i}": f"{SAE_DIR}/shared/layer{i}.safetensors" for i in _sae_layers(wildcards)
}

# Targets of this stage for `rule all`: SAE vectors of every concept/combination and the metrics.
sae_targets = lambda: (
    expand(
        f"{RESULTS}/vectors/sae/{{layerset}}/{{name}}.safetensors",
        layerset=[s for s in VECTOR_LAYER_SETS if s in SAE_LAYER_SETS],
        name=list(STEERING) + list(COMBINATIONS),
    )
    + [f"{SAE_DIR}/sae_metrics.csv"]
    if "sae" in METHODS
    else []
)


rule sae_train:
    input:
        manifests=[_manifest(c) for c in STEERING],
        plan=LAYER_PLAN,
    output:
        weights=f"{SAE_DIR}/shared/layer{{layer}}.safetensors",
        metrics=f"{SAE_DIR}/shared/layer{{layer}}_metrics.csv",
    log:
        log("vectors/sae_train_layer{layer}"),
    benchmark:
        bench("sae_train", "{layer}")
    wildcard_constraints:
        layer=r"\d+",
    params:
        sae=STEER["sae"],
        device=MODEL_CFG.get("device", "cpu"),
    threads: THREADS
    resources:
        gpu=GPU,
        **sized("sae_train"),
    conda:
        ENV
    script:
        "../workflow_scripts/sae_train.py"


rule sae_metrics:
    input:
        lambda wc: [f"{SAE_DIR}/shared/layer{i}_metrics.csv" for i in _sae_layers(wc)],
    output:
        f"{SAE_DIR}/sae_metrics.csv",
    log:
        log("vectors/sae_metrics"),
    benchmark:
        bench("sae_metrics")
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("sae_metrics"),
    conda:
        ENV
    script:
        "../workflow_scripts/sae_train.py"


rule sae_scores:
    input:
        unpack(_sae_weights),
        manifest=_manifest("{concept}"),
    output:
        f"{SAE_DIR}/scores/{{concept}}.safetensors",
    log:
        log("vectors/sae_scores_{concept}"),
    benchmark:
        bench("sae_scores", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    localrule: True
    threads: THREADS
    resources:
        gpu=0,
        **sized("sae_scores"),
    conda:
        ENV
    script:
        "../workflow_scripts/sae_vector.py"


rule sae_vector:
    input:
        unpack(_sae_weights),
        stats=f"{SAE_DIR}/scores/{{concept}}.safetensors",
        plan=LAYER_PLAN,
    output:
        f"{RESULTS}/vectors/sae/{{layerset}}/{{concept}}.safetensors",
    log:
        log("vectors/sae_{layerset}_{concept}"),
    benchmark:
        bench("sae_vector", "{layerset}_{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        top_features=STEER["sae"]["top_features"],
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("sae_vector"),
    conda:
        ENV
    script:
        "../workflow_scripts/sae_vector.py"
