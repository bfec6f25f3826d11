# Localization: activation patching (or ablation, or attribution patching: localize.mode) per concept,
# then the functional layers across concepts. Attribution mode also writes raw_steps.csv beside raw.csv.
# One concept alone: snakemake --cores 2 results/<model>/localize/<concept>/impact.csv


# Targets of this stage for `rule all` (see all_targets() in common.smk).
localize_targets = lambda: (
    [f"{RESULTS}/localize/layers.json", f"{RESULTS}/localize/heatmap.png"] if LOCALIZATION else []
)


rule localize_concept:
    input:
        pairs="results/prompts/{concept}/pairs.csv",
        concepts=config["prompts"]["concepts"],
        model=input_files(MODEL_CFG.get("path")),
        scorer=input_files(config["scorer"].get("path")),
    output:
        impact=f"{RESULTS}/localize/{{concept}}/impact.csv",
        raw=f"{RESULTS}/localize/{{concept}}/raw.csv",
        summary=f"{RESULTS}/localize/{{concept}}/summary.json",
    log:
        log("localize/{concept}"),
    benchmark:
        bench("localize_concept", "{concept}")
    wildcard_constraints:
        concept="|".join(LOCALIZATION) or "(?!)",
    params:
        localize=config["localize"],
        model=MODEL_CFG,
        scorer=config["scorer"],
    threads: THREADS
    resources:
        gpu=GPU,
        **sized("localize_concept"),
    conda:
        ENV
    script:
        "../workflow_scripts/localize_concept.py"


rule choose_layers:
    input:
        impacts=expand(f"{RESULTS}/localize/{{concept}}/impact.csv", concept=LOCALIZATION),
        summaries=expand(f"{RESULTS}/localize/{{concept}}/summary.json", concept=LOCALIZATION),
    output:
        layers=f"{RESULTS}/localize/layers.json",
        heatmap=f"{RESULTS}/localize/heatmap.png",
    log:
        log("localize/choose_layers"),
    benchmark:
        bench("choose_layers")
    params:
        concepts=LOCALIZATION,
        top_k=config["localize"]["top_k"],
        override=config["localize"]["layers"],
        model=MODEL,
    localrule: True
    threads: 1
    resources:
        **sized("choose_layers"),
    conda:
        ENV
    script:
        "../workflow_scripts/choose_layers.py"
