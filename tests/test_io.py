"""Marked-section writers used by the benchmarks to update BENCHMARKS.md."""

from tada.io import replace_section, replace_subsection


def test_replace_section_replaces_between_markers_and_appends_when_missing(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\nintro\n\n<!-- a:start -->\nold\n<!-- a:end -->\n\n## Other\nkept\n")
    replace_section(path, "<!-- a:start -->", "<!-- a:end -->", "new 1\nnew 2\n")
    assert path.read_text() == ("# Benchmarks\n\nintro\n\n<!-- a:start -->\nnew 1\nnew 2\n<!-- a:end -->\n"
                                "## Other\nkept\n")
    replace_section(path, "<!-- b:start -->", "<!-- b:end -->", "b\n")
    assert path.read_text().endswith("kept\n\n<!-- b:start -->\nb\n<!-- b:end -->\n")
    assert not list(tmp_path.glob("*.tmp*"))


def test_replace_subsection_touches_only_its_block(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\n## Localization\n### One\nold one\n\n### Two\nold two\n\n## Model\nm\n")
    replace_subsection(path, "## Localization", "### One", ["new one"])
    text = path.read_text()
    assert "new one" in text and "old one" not in text
    assert "### Two\nold two" in text and text.endswith("## Model\nm\n")
    replace_subsection(path, "## Localization", "### Three", ["three"])
    text = path.read_text()
    assert text.index("### Three") < text.index("## Model") and "### Two\nold two" in text
    replace_subsection(path, "## Speed", "### X", ["x"])
    assert path.read_text().endswith("## Speed\n\n### X\nx\n")


def test_input_files_lists_the_files_of_a_folder(tmp_path):
    from tada.io import input_files

    (tmp_path / "sub").mkdir()
    for name in ("b.safetensors", "a.json", "sub/c.bin", ".hidden"):
        (tmp_path / name).write_text("x")
    assert input_files(tmp_path) == [str(tmp_path / n) for n in ("a.json", "b.safetensors", "sub/c.bin")]
    assert input_files(tmp_path / "a.json") == [str(tmp_path / "a.json")]
    assert input_files(tmp_path / "missing") == [str(tmp_path / "missing")]
    assert input_files(None) == [] and input_files("") == []


def test_rule_logging_puts_logs_warnings_stderr_and_the_traceback_in_the_rule_log(tmp_path):
    """A workflow script's failure can be read from its rule's log after a cluster run."""
    import subprocess
    import sys
    import textwrap

    log = tmp_path / "logs" / "rule.log"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import logging, sys, types, warnings
        from tada.io import rule_logging
        rule_logging(types.SimpleNamespace(log=[{str(log)!r}], threads=1))
        logging.getLogger("tada.x").info("started")
        warnings.warn("a library warning")
        print("library noise", file=sys.stderr)
        raise RuntimeError("the job failed here")
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert res.returncode != 0
    text = log.read_text()
    for expected in ("INFO tada.x: started", "a library warning", "library noise",
                     "Traceback", "RuntimeError: the job failed here"):
        assert expected in text, text


def test_every_workflow_script_logs_through_the_shared_helper():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "workflow_scripts"
    scripts = sorted(root.glob("*.py"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        assert "rule_logging(snakemake)" in text and "basicConfig" not in text, script.name
