# Prompt data: counterfactual caption pairs (localization) and contrastive prompts (steering).
# Concept ids are snake_case, so "|".join(ids) is a safe wildcard constraint ("(?!)" = none).


# Targets of this stage for `rule all` (see all_targets() in common.smk).
prompts_targets = lambda: expand(
    "results/prompts/{concept}/pairs.csv", concept=LOCALIZATION
) + expand("results/prompts/{concept}/contrastive.csv", concept=STEERING)


rule make_pairs:
    input:
        captions=config["prompts"]["captions_csv"],
        concepts=config["prompts"]["concepts"],
    output:
        pairs="results/prompts/{concept}/pairs.csv",
        report="results/prompts/{concept}/pairs_report.json",
    log:
        "logs/prompts/make_pairs_{concept}.log",
    benchmark:
        bench("make_pairs", "{concept}")
    wildcard_constraints:
        concept="|".join(LOCALIZATION) or "(?!)",
    params:
        max_pairs=config["prompts"]["max_pairs"],
        seed=config["prompts"]["seed"],
    localrule: True
    threads: 1
    resources:
        **sized("make_pairs"),
    conda:
        ENV
    script:
        "../workflow_scripts/make_pairs.py"


rule make_contrastive:
    input:
        concepts=config["prompts"]["concepts"],
        bases=config["prompts"]["base_prompts"],
    output:
        "results/prompts/{concept}/contrastive.csv",
    log:
        "logs/prompts/make_contrastive_{concept}.log",
    benchmark:
        bench("make_contrastive", "{concept}")
    wildcard_constraints:
        concept="|".join(STEERING) or "(?!)",
    localrule: True
    threads: 1
    resources:
        **sized("make_contrastive"),
    conda:
        ENV
    script:
        "../workflow_scripts/make_contrastive.py"
