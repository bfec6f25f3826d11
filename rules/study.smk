# The listening study (docs/study.md): a static bundle of every study variant's α stops, built
# from the calibrated sweeps (part of the default run), and the analysis of a ratings file (run
# only when that file exists). Serve the bundle: tada study serve --bundle results/<model>/study/bundle
# Targets by name: snakemake study_bundle / snakemake study_analysis

from tada.methods import needs_vector
from tada.study.bundle import study_variants

STUDY = config["study"]
STUDY_DIR = f"{RESULTS}/study"
STUDY_BUNDLE = f"{STUDY_DIR}/bundle"
STUDY_ANALYSIS = f"{STUDY_DIR}/analysis"
STUDY_RATINGS = STUDY["ratings"] or f"{STUDY_DIR}/ratings.jsonl"
# The study needs the calibrated sweeps of its concepts and its `always` variants among the swept.
STUDY_READY = (
    bool(STUDY["concepts"])
    and all(c in STEERING for c in STUDY["concepts"])
    and all(v in VARIANTS for v in STUDY["always"])
)
STUDY_VARIANTS = study_variants(VARIANTS, STUDY["always"]).names if STUDY_READY else []


_study_files = lambda kind, name: [
    f"{RESULTS}/{kind}/{c}/{v}/{name}" for c in STUDY["concepts"] for v in STUDY_VARIANTS
]


study_targets = lambda: (
    ([STUDY_BUNDLE] if STUDY_READY else [])
    + ([f"{STUDY_ANALYSIS}/summary.md"] if STUDY_READY and Path(STUDY_RATINGS).exists() else [])
)


rule study_bundle:
    input:
        model=input_files(MODEL_CFG.get("path")),
        prompts=PROMPT_TABLE,
        concepts=config["prompts"]["concepts"],
        baseline=f"{BASELINE}/index.csv",
        baseline_scores=f"{RESULTS}/scores/none/scores.csv",
        calibrations=[f"{RESULTS}/calibration/{c}.json" for c in STUDY["concepts"]],
        sweeps=_study_files("sweeps", "index.csv"),
        scores=_study_files("scores", "scores.csv"),
        vectors=[_vector(c, v) for c in STUDY["concepts"] for v in STUDY_VARIANTS if needs_vector(v)],
        plan=LAYER_PLAN,
    output:
        bundle=directory(STUDY_BUNDLE),
    log:
        log("study/bundle"),
    benchmark:
        bench("study_bundle")
    threads: 1
    resources:
        gpu=GPU,
        **sized("study_bundle"),
    conda:
        ENV
    script:
        "../workflow_scripts/study_bundle.py"


rule study_analysis:
    input:
        ratings=STUDY_RATINGS,
        bundle=STUDY_BUNDLE,
    output:
        summary=report(f"{STUDY_ANALYSIS}/summary.md", caption="../report/study_summary.rst", category="Listening study"),
        means=report(f"{STUDY_ANALYSIS}/means.md", caption="../report/study_means.rst", category="Listening study"),
        preference=report(
            f"{STUDY_ANALYSIS}/preference.md", caption="../report/study_preference.rst", category="Listening study"
        ),
        by_skill=report(f"{STUDY_ANALYSIS}/by_skill.md", caption="../report/study_skill.rst", category="Listening study"),
        correlations=report(
            f"{STUDY_ANALYSIS}/correlations.md", caption="../report/study_correlations.rst", category="Listening study"
        ),
        means_png=report(f"{STUDY_ANALYSIS}/means.png", caption="../report/study_means.rst", category="Listening study"),
        preference_png=report(
            f"{STUDY_ANALYSIS}/preference.png", caption="../report/study_preference.rst", category="Listening study"
        ),
        correlations_png=report(
            f"{STUDY_ANALYSIS}/correlations.png", caption="../report/study_correlations.rst", category="Listening study"
        ),
        problems=f"{STUDY_ANALYSIS}/problems.csv",
    log:
        log("study/analysis"),
    benchmark:
        bench("study_analysis")
    threads: 1
    resources:
        gpu=0,
        **sized("study_analysis"),
    conda:
        ENV
    script:
        "../workflow_scripts/study_analysis.py"
