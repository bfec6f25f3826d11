# Evaluation: the quality reference set, then the paper's tables and figures from every sweep's
# scores. Tables alone from a per-alpha CSV: tada evaluate tables --input per_alpha.csv --out DIR
# The HTML report: snakemake --report results/<model>/report.html

EVAL_DIR = f"{RESULTS}/evaluation"
_scores = lambda names, variants: [f"{RESULTS}/scores/{n}/{v}/scores.csv" for n in names for v in variants]

evaluate_targets = lambda: [f"{EVAL_DIR}/table1.md"] if STEERING else []


rule quality_reference:
    input:
        lpaps=input_files(EVAL["lpaps"].get("path")),
    output:
        f"{EVAL_DIR}/reference_embeddings.npy",
    log:
        log("evaluate/quality_reference"),
    benchmark:
        bench("quality_reference")
    params:
        evaluation=EVAL,
        duration=MODEL_CFG.get("duration") or 4.0,
    threads: 1
    resources:
        gpu=0,
        **sized("quality_reference"),
    conda:
        ENV
    script:
        "../workflow_scripts/quality_reference.py"


rule evaluate:
    input:
        baseline=f"{RESULTS}/scores/none/scores.csv",
        scores=_scores(STEERING, VARIANTS),
        combination_scores=_scores(EVAL_COMBINATIONS, COMBO_VARIANTS),
        calibrations=[f"{RESULTS}/calibration/{c}.json" for c in STEERING],
        reference=f"{EVAL_DIR}/reference_embeddings.npy",
        prompts=PROMPT_TABLE,
        concepts=config["prompts"]["concepts"],
        heatmap=ancient(f"{RESULTS}/localize/heatmap.png") if LOCALIZATION else [],
    output:
        table1=report(f"{EVAL_DIR}/table1.md", caption="../report/table1.rst", category="Tables"),
        table2=report(f"{EVAL_DIR}/table2.md", caption="../report/table2.rst", category="Tables"),
        table3=report(f"{EVAL_DIR}/table3.md", caption="../report/table3.rst", category="Tables"),
        bottleneck=report(f"{EVAL_DIR}/bottleneck.md", caption="../report/bottleneck.rst", category="Tables"),
        per_concept=report(f"{EVAL_DIR}/per_concept.md", caption="../report/per_concept.rst", category="Tables"),
        quality=report(f"{EVAL_DIR}/quality.md", caption="../report/quality.rst", category="Tables"),
        descriptors=report(f"{EVAL_DIR}/descriptors.md", caption="../report/descriptors.rst", category="Tables"),
        per_alpha=f"{EVAL_DIR}/per_alpha.csv",
        curves=report(f"{EVAL_DIR}/curves.png", caption="../report/curves.rst", category="Figures"),
        sheets=report(
            directory(f"{EVAL_DIR}/sheets"),
            patterns=["{name}.png"],
            caption="../report/sheets.rst",
            category="Figures",
        ),
        scatter=report(f"{EVAL_DIR}/descriptors.png", caption="../report/scatter.rst", category="Figures"),
        heatmap=report(f"{EVAL_DIR}/heatmap.png", caption="../report/heatmap.rst", category="Figures"),
    log:
        log("evaluate/tables"),
    benchmark:
        bench("evaluate")
    params:
        evaluation=EVAL,
        variants=VARIANTS,
        combination_variants=COMBO_VARIANTS,
        combinations=COMBINATIONS if EVAL_COMBINATIONS else {},
        steering=STEERING,
        steps=MODEL_CFG.get("steps") or 30,
    threads: 1
    resources:
        gpu=0,
        **sized("evaluate"),
    conda:
        ENV
    script:
        "../workflow_scripts/evaluate.py"
