# Steered sweeps: α = 0 once per prompt, PCI (fixed integer grid, sets the cutoff), calibration of
# every other variant's α range against that cutoff, the calibrated sweeps, and the multi-concept
# sweeps. Each job renders its sweeps batch by batch (resumable) and scores them.
# One concept alone: snakemake --cores 2 results/<model>/calibration/<concept>.json

from tada.methods import needs_vector, parse_variant_name

EVAL = config["evaluation"]
VARIANTS = list(EVAL["variants"])
FIXED = [v for v in VARIANTS if not needs_vector(v)]
CALIBRATED = [v for v in VARIANTS if needs_vector(v)]
COMBO_VARIANTS = [v for v in EVAL["combination_variants"] if v in CALIBRATED] if EVAL["combinations"] else []
EVAL_COMBINATIONS = list(COMBINATIONS) if COMBO_VARIANTS else []
BASELINE = f"{RESULTS}/sweeps/none"
PROMPT_TABLE = "results/prompts/evaluation.csv"

_sweep_out = lambda name, variants: {
    **{f"index_{v}": f"{RESULTS}/sweeps/{name}/{v}/index.csv" for v in variants},
    **{f"scores_{v}": f"{RESULTS}/scores/{name}/{v}/scores.csv" for v in variants},
}
_vector = lambda name, v: "{r}/vectors/{f}/{s}/{n}.safetensors".format(
    r=RESULTS, f=parse_variant_name(v)[0], s=parse_variant_name(v)[1], n=name
)
_model_inputs = dict(
    model=input_files(MODEL_CFG.get("path")),
    prompts=PROMPT_TABLE,
    concepts=config["prompts"]["concepts"],
    baseline=f"{BASELINE}/index.csv",
)
_params = dict(
    evaluation=EVAL,
    model=MODEL_CFG,
    studied=STEERING,
)

sweeps_targets = lambda: (
    [f"{RESULTS}/calibration/{c}.json" for c in STEERING]
    + [f"{RESULTS}/scores/{c}/{v}/scores.csv" for c in STEERING for v in VARIANTS]
    + [f"{RESULTS}/scores/{c}/{v}/scores.csv" for c in EVAL_COMBINATIONS for v in COMBO_VARIANTS]
)


rule evaluation_prompts:
    input:
        config["prompts"]["eval_prompts"],
    output:
        PROMPT_TABLE,
    log:
        "logs/prompts/evaluation.log",
    params:
        evaluation=EVAL,
    localrule: True
    conda:
        ENV
    script:
        "../workflow_scripts/evaluation_prompts.py"


rule sweep_baseline:
    input:
        model=input_files(MODEL_CFG.get("path")),
        prompts=PROMPT_TABLE,
        concepts=config["prompts"]["concepts"],
        scorers=[f for b in EVAL["alignment"].values() for f in input_files(b.get("path"))],
    output:
        index=f"{BASELINE}/index.csv",
        scores=f"{RESULTS}/scores/none/scores.csv",
    log:
        log("sweeps/none"),
    benchmark:
        bench("sweep_baseline")
    params:
        **_params,
    threads: 1
    resources:
        gpu=GPU,
        **sized("sweep_baseline"),
    conda:
        ENV
    script:
        "../workflow_scripts/sweep_baseline.py"


rule sweep_fixed:
    input:
        **_model_inputs,
        plan=LAYER_PLAN,
    output:
        **_sweep_out("{concept}", FIXED),
    log:
        log("sweeps/{concept}_fixed"),
    benchmark:
        bench("sweep_fixed", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        **_params,
        variants=FIXED,
    threads: 1
    resources:
        gpu=GPU,
        **sized("sweep_fixed"),
    conda:
        ENV
    script:
        "../workflow_scripts/sweep_fixed.py"


rule calibrate:
    input:
        **_model_inputs,
        pci=[f"{RESULTS}/scores/{{concept}}/{v}/scores.csv" for v in EVAL["cutoff_from"]],
        vectors=lambda wc: [_vector(wc.concept, v) for v in CALIBRATED],
    output:
        f"{RESULTS}/calibration/{{concept}}.json",
    log:
        log("sweeps/{concept}_calibrate"),
    benchmark:
        bench("calibrate", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        **_params,
        variants=CALIBRATED,
    threads: 1
    resources:
        gpu=GPU,
        **sized("calibrate"),
    conda:
        ENV
    script:
        "../workflow_scripts/calibrate.py"


rule sweep_calibrated:
    input:
        **_model_inputs,
        calibration=f"{RESULTS}/calibration/{{concept}}.json",
        vectors=lambda wc: [_vector(wc.concept, v) for v in CALIBRATED],
    output:
        **_sweep_out("{concept}", CALIBRATED),
    log:
        log("sweeps/{concept}_calibrated"),
    benchmark:
        bench("sweep_calibrated", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    params:
        **_params,
        variants=CALIBRATED,
    threads: 1
    resources:
        gpu=GPU,
        **sized("sweep_calibrated"),
    conda:
        ENV
    script:
        "../workflow_scripts/sweep_calibrated.py"


rule sweep_combination:
    input:
        **_model_inputs,
        calibrations=lambda wc: [f"{RESULTS}/calibration/{c}.json" for c, _ in COMBINATIONS[wc.combination]],
        vectors=lambda wc: [_vector(wc.combination, v) for v in COMBO_VARIANTS],
    output:
        **_sweep_out("{combination}", COMBO_VARIANTS),
    log:
        log("sweeps/{combination}_combination"),
    benchmark:
        bench("sweep_combination", "{combination}")
    wildcard_constraints:
        combination="|".join(EVAL_COMBINATIONS) or "(?!)",
    params:
        **_params,
        variants=COMBO_VARIANTS,
        terms=lambda wc: COMBINATIONS[wc.combination],
    threads: 1
    resources:
        gpu=GPU,
        **sized("sweep_combination"),
    conda:
        ENV
    script:
        "../workflow_scripts/sweep_combination.py"
