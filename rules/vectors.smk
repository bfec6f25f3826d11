# Steering vectors: CAA and AUSteer per concept x layer set, and multi-concept combinations of
# every method (the SAE rules are in rules/sae.smk).
# One vector alone: snakemake --cores 2 results/<model>/vectors/caa/localized/tempo.safetensors
#
# layer_sets (checkpoint) resolves global / localized / ablated once; the per-layer SAE jobs
# (rules/sae.smk) are expanded from its output. AUSteer scores and SAE feature statistics do not depend on the
# layer set and are computed once per concept; combinations sum them (or the CAA vectors).

from tada.steering.build import combination_terms, read_plan

STEER = config["steering"]
METHODS = list(STEER["methods"])
VECTOR_LAYER_SETS = list(STEER["layer_sets"])
SAE_LAYER_SETS = STEER["sae"].get("layer_sets") or VECTOR_LAYER_SETS
LAYERS_JSON = f"{RESULTS}/localize/layers.json"
LAYER_PLAN = f"{RESULTS}/vectors/layer_sets.json"
SAE_DIR = f"{RESULTS}/sae"


# Combinations of data/concepts.yaml whose concepts are all studied: id -> [(concept, sign)].
COMBINATIONS = combination_terms(
    config["prompts"]["concepts"], STEERING, config["concepts"].get("combinations", False)
)

_manifest = lambda concept: f"{RESULTS}/activations/contrastive_{concept}.json"

# Per-concept inputs of a combination: CAA vectors, AUSteer scores or SAE feature statistics.
_TERM_FILES = {
    "caa": f"{RESULTS}/vectors/caa/{{layerset}}/{{concept}}.safetensors",
    "austeer": f"{RESULTS}/vectors/austeer_scores/{{concept}}.safetensors",
    "sae": f"{SAE_DIR}/scores/{{concept}}.safetensors",
}
_term_inputs = lambda wc: {
    c: _TERM_FILES[wc.method].format(layerset=wc.layerset, concept=c)
    for c, _ in COMBINATIONS[wc.combination]
}

# Targets of this stage for `rule all`: every method x layer set x concept/combination
# (SAE vectors are listed by rules/sae.smk).
vectors_targets = lambda: expand(
    f"{RESULTS}/vectors/{{method}}/{{layerset}}/{{name}}.safetensors",
    method=[m for m in METHODS if m != "sae"],
    layerset=VECTOR_LAYER_SETS,
    name=list(STEERING) + list(COMBINATIONS),
)


wildcard_constraints:
    method="caa|austeer|sae",
    layerset="global|localized|ablated",


checkpoint layer_sets:
    input:
        manifest=_manifest(STEERING[0]) if STEERING else [],
        functional=[] if config["localize"]["layers"] is not None else [LAYERS_JSON],
    output:
        LAYER_PLAN,
    log:
        log("vectors/layer_sets"),
    benchmark:
        bench("layer_sets")
    params:
        override=config["localize"]["layers"],
        names=VECTOR_LAYER_SETS,
        sae_layer_sets=SAE_LAYER_SETS if "sae" in METHODS else [],
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("layer_sets"),
    conda:
        ENV
    script:
        "../workflow_scripts/layer_sets.py"


rule caa:
    input:
        manifest=_manifest("{concept}"),
        plan=LAYER_PLAN,
    output:
        f"{RESULTS}/vectors/caa/{{layerset}}/{{concept}}.safetensors",
    log:
        log("vectors/caa_{layerset}_{concept}"),
    benchmark:
        bench("caa", "{layerset}_{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        normalize=STEER["caa"]["normalize"],
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("caa"),
    conda:
        ENV
    script:
        "../workflow_scripts/caa.py"


rule austeer_scores:
    input:
        manifest=_manifest("{concept}"),
    output:
        f"{RESULTS}/vectors/austeer_scores/{{concept}}.safetensors",
    log:
        log("vectors/austeer_scores_{concept}"),
    benchmark:
        bench("austeer_scores", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("austeer_scores"),
    conda:
        ENV
    script:
        "../workflow_scripts/austeer.py"


rule austeer:
    input:
        scores=f"{RESULTS}/vectors/austeer_scores/{{concept}}.safetensors",
        plan=LAYER_PLAN,
    output:
        f"{RESULTS}/vectors/austeer/{{layerset}}/{{concept}}.safetensors",
    log:
        log("vectors/austeer_{layerset}_{concept}"),
    benchmark:
        bench("austeer", "{layerset}_{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        top_k=STEER["austeer"]["top_k"],
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("austeer"),
    conda:
        ENV
    script:
        "../workflow_scripts/austeer.py"


rule combine:
    input:
        unpack(lambda wc: {**_term_inputs(wc), **(_sae_weights(wc) if wc.method == "sae" else {})}),
        plan=LAYER_PLAN,
    output:
        f"{RESULTS}/vectors/{{method}}/{{layerset}}/{{combination}}.safetensors",
    log:
        log("vectors/{method}_{layerset}_{combination}"),
    benchmark:
        bench("combine", "{method}_{layerset}_{combination}")
    wildcard_constraints:
        combination="|".join(COMBINATIONS) or "(?!)",
    params:
        terms=lambda wc: COMBINATIONS[wc.combination],
        top_k=STEER["austeer"]["top_k"],
        top_features=STEER["sae"]["top_features"],
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("combine"),
    conda:
        ENV
    script:
        "../workflow_scripts/combine.py"
