"""Rule resources sized from benchmark files: the formula on a worked example, the file round
trip, and every rule declaring what the workflow needs on a cluster."""

import re
from pathlib import Path

import pytest
import yaml

from tada.resources import load_resources, read_benchmarks, size_resources, write_resources

ROOT = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _tsv(path, s, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t0\t0\n")


def test_sizes_follow_the_formula_on_a_worked_example(tmp_path):
    _tsv(tmp_path / "cache_activations" / "tempo.tsv", 100.0, 1000.0)
    _tsv(tmp_path / "cache_activations" / "mood.tsv", 300.0, 800.0)
    _tsv(tmp_path / "caa" / "localized_tempo.tsv", 1.5, "-")   # too short for Snakemake to measure
    jobs = read_benchmarks(tmp_path)
    assert len(jobs) == 3 and jobs["max_rss"].isna().sum() == 1
    sizes = size_resources(jobs)
    # 1.5 x 1000 MB = 1500 -> next multiple of 64 = 1536; 3 x 300 s = 15 min
    assert sizes["cache_activations"] == {"mem_mb": 1536, "runtime": 15, "jobs": 2, "max_rss_mb": 1000.0,
                                          "max_s": 300.0, "median_s": 200.0}
    assert sizes["caa"]["mem_mb"] == 512 and sizes["caa"]["runtime"] == 2   # the floors


def test_no_benchmarks_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_benchmarks(tmp_path)


def test_resources_file_keeps_other_models(tmp_path):
    path = tmp_path / "resources.yaml"
    write_resources(path, "embedded", {"caa": {"mem_mb": 512, "runtime": 2}}, source="a")
    write_resources(path, "stable_audio", {"caa": {"mem_mb": 4096, "runtime": 10}}, source="b")
    assert load_resources(path, "embedded") == {"caa": {"mem_mb": 512, "runtime": 2}}
    assert load_resources(path, "stable_audio")["caa"]["mem_mb"] == 4096
    assert load_resources(path, "audioldm2") == {} and load_resources(tmp_path / "none.yaml", "x") == {}
    assert yaml.safe_load(path.read_text())["sources"] == {"embedded": "a", "stable_audio": "b"}


def _rule_blocks():
    for path in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=(?:rule|checkpoint) )", path.read_text())[1:]:
            yield path.name, re.match(r"(?:rule|checkpoint) (\w+)", block).group(1), block


def test_every_rule_declares_threads_resources_and_a_benchmark():
    for name, rule, block in _rule_blocks():
        if rule == "evaluation_prompts":   # a local rule of a few lines that reads one text file
            continue
        assert "    threads:" in block, (name, rule)
        assert f'**sized("{rule}")' in block, (name, rule)
        assert f'bench("{rule}"' in block, (name, rule)


def test_measured_sizes_cover_every_rule_of_the_default_run():
    measured = load_resources(ROOT / "rules" / "resources.yaml", "embedded")
    if not measured:
        pytest.skip("rules/resources.yaml has no measured sizes for the embedded model yet")
    rules = {rule for _, rule, block in _rule_blocks() if "localrule: True" not in block}
    # train_embedded: the weights ship with the repo; study_analysis: runs once a ratings file exists
    missing = rules - set(measured) - {"train_embedded", "study_analysis"}
    assert not missing, missing
