# Baseline artifacts (Text Embeddings, Token Embeddings, FreeSliders, Concept Sliders): one file
# per (family, layer set, concept) at the place of a steering vector,
# results/<model>/vectors/<family>/<layerset>/<concept>.safetensors, so the sweep rules find them
# like vectors (tada.methods.needs_vector). Only the families in evaluation.variants are made.
# A family the studied backend cannot run stops the workflow here, naming backend and method.
# One artifact alone: snakemake --cores 2 results/embedded/vectors/sliders/localized/tempo.safetensors

from tada.methods import BASELINES, check_support, parse_variant_name

BASELINE_CFG = config["baselines"]
BASELINE_VARIANTS = [v for v in config["evaluation"]["variants"] if parse_variant_name(v)[0] in BASELINES]
check_support(MODEL_CFG["backend"], sorted({parse_variant_name(v)[0] for v in BASELINE_VARIANTS}))

_baseline_file = f"{RESULTS}/vectors/{{family}}/{{layerset}}/{{concept}}.safetensors"
_baseline_inputs = dict(
    plan=LAYER_PLAN,
    concepts=config["prompts"]["concepts"],
    bases=config["prompts"]["base_prompts"],
    model=input_files(MODEL_CFG.get("path")),
)
_baseline_params = dict(
    hyper=lambda wc: BASELINE_CFG.get(wc.family, {}),
    model=MODEL_CFG,
    model_key=f"models.{MODEL}",
)


rule baseline_spec:
    input:
        plan=LAYER_PLAN,
    output:
        _baseline_file,
    log:
        log("vectors/{family}_{layerset}_{concept}"),
    benchmark:
        bench("baseline_spec", "{family}_{layerset}_{concept}")
    wildcard_constraints:
        family="textemb|freesliders",
        concept="|".join(STEERING) or "(?!)",
    params:
        **_baseline_params,
    localrule: True
    threads: 1
    resources:
        gpu=0,
        **sized("baseline_spec"),
    conda:
        ENV
    script:
        "../workflow_scripts/baseline_spec.py"


rule baseline_token:
    input:
        **_baseline_inputs,
    output:
        _baseline_file,
    log:
        log("vectors/{family}_{layerset}_{concept}"),
    benchmark:
        bench("baseline_token", "{family}_{layerset}_{concept}")
    wildcard_constraints:
        family="tokenemb",
        concept="|".join(STEERING) or "(?!)",
    params:
        **_baseline_params,
    threads: THREADS
    resources:
        gpu=GPU,
        **sized("baseline_token"),
    conda:
        ENV
    script:
        "../workflow_scripts/baseline_token.py"


rule baseline_slider:
    input:
        **_baseline_inputs,
    output:
        _baseline_file,
    log:
        log("vectors/{family}_{layerset}_{concept}"),
    benchmark:
        bench("baseline_slider", "{family}_{layerset}_{concept}")
    wildcard_constraints:
        family="sliders",
        concept="|".join(STEERING) or "(?!)",
    params:
        **_baseline_params,
    threads: THREADS
    resources:
        gpu=GPU,
        **sized("baseline_slider"),
    conda:
        ENV
    script:
        "../workflow_scripts/baseline_slider.py"
