"""Config validation: defaults filled, wrong keys/types/values named in the error."""

import copy
import textwrap

import pytest
import yaml

from tada.config import ROOT, ConfigError, deep_merge, load_config, validate_config


@pytest.fixture()
def default_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(default_config):
    cfg = validate_config(copy.deepcopy(default_config))
    assert cfg["model"] in cfg["models"]
    assert cfg["localize"]["top_k"] == 2
    del default_config["localize"]["top_k"]
    assert validate_config(default_config)["localize"]["top_k"] == 2  # schema default


@pytest.mark.parametrize("override, named", [
    ({"cache": {"bogus": 1}}, "bogus"),                       # unknown key
    ({"cache": {"chunk_samples": "ten"}}, "cache.chunk_samples"),  # wrong type
    ({"cache": {"dtype": "int8"}}, "cache.dtype"),            # wrong value
    ({"models": {"embedded": {"device": "tpu"}}}, "models.embedded.device"),
    ({"steering": {"methods": ["caa", "magic"]}}, "steering.methods.1"),
])
def test_bad_values_are_named(default_config, override, named):
    cfg = deep_merge(default_config, override)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, source="my.yaml")
    assert named in str(err.value) and "my.yaml" in str(err.value)


def test_model_must_exist(default_config):
    default_config["model"] = "nope"
    with pytest.raises(ConfigError, match="'nope'"):
        validate_config(default_config)


def test_load_config_errors_name_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
        model: [unclosed
    """))
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_snakemake_validate_agrees(default_config):
    from snakemake.utils import validate

    validate(copy.deepcopy(default_config), str(ROOT / "schemas" / "config.schema.yaml"))
    bad = deep_merge(default_config, {"localize": {"mode": "shuffle"}})
    with pytest.raises(Exception, match="shuffle"):
        validate(bad, str(ROOT / "schemas" / "config.schema.yaml"))


def test_every_schema_property_is_described():
    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    missing = []

    def walk(node, path):
        for name, sub in (node.get("properties") or {}).items():
            if "description" not in sub:
                missing.append(f"{path}{name}")
            walk(sub, f"{path}{name}.")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + "*.")

    walk(schema, "")
    for name, sub in schema.get("$defs", {}).items():
        walk(sub, f"$defs.{name}.")
    assert not missing, missing


def test_readme_documents_every_config_key():
    from tada.config import schema_markdown

    readme = (ROOT / "README.md").read_text()
    assert schema_markdown() in readme, "README config table is stale: run `python -m tada.config --update-readme`"


# ----- one source of truth: the schema ---------------------------------------------------------
def _yaml_examples():
    """Every YAML config example a user may copy: ```yaml blocks of the README and docs/, and
    'Example config block::' sections of docstrings under tada/."""
    import re

    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.S)):
            found.append((f"{path.name}#{i}", block))
    for path in sorted((ROOT / "tada").rglob("*.py")):
        text = path.read_text()
        for i, m in enumerate(re.finditer(r"config block::\n\n((?:    .*\n|\n)+)", text)):
            found.append((f"{path.relative_to(ROOT)}#{i}", textwrap.dedent(m.group(1))))
    return found


def test_examples_are_found():
    names = [name for name, _ in _yaml_examples()]
    assert any(n.startswith("README.md") for n in names)
    assert any(n.startswith("tada/models/generic.py") for n in names)


@pytest.mark.parametrize("name, block", _yaml_examples(), ids=[n for n, _ in _yaml_examples()])
def test_every_example_config_validates(name, block, default_config):
    """An example merged into the default config passes the one validation (so the ACE-Step v1
    block of the generic backend's docstring, with step_method, is accepted)."""
    example = yaml.safe_load(block)
    assert isinstance(example, dict) and example, name
    validate_config(deep_merge(default_config, example), source=name)


def test_backend_keys_come_from_the_schema_and_are_documented():
    """The keys a backend / scorer kind reads are the schema's; each is a README table row that
    says which backends read it."""
    from tada.config import block_keys, required_keys, schema

    readme = (ROOT / "README.md").read_text()
    backends = schema()["$defs"]["model"]["properties"]["backend"]["enum"]
    generic = block_keys("model", "generic")
    assert {"step_method", "encode_fn", "text_outside_cross_attention", "sample_rate"} <= set(generic)
    assert "text_length" in block_keys("model", "embedded") and "text_length" not in generic
    assert required_keys("model", "generic") == ["backend", "loader", "generate_fn", "denoiser",
                                                 "layer_patterns"]
    assert "path" in required_keys("model", "stable_audio")
    assert "device" not in block_keys("scorer", "world") and "batch_size" in block_keys("scorer", "world")
    for backend in backends:
        for name, sub in block_keys("model", backend).items():
            row = next((line for line in readme.splitlines()
                        if line.startswith(f"| `models.<name>.{name}` |")), None)
            assert row, f"models.<name>.{name} ({backend}) is not in the README table"
            if "x-backends" in sub:
                assert f"{'/'.join(sub['x-backends'])} only" in row


@pytest.mark.parametrize("block, message, error", [
    ({"backend": "embedded", "loader": "m:f"}, "models.m.loader not read by the embedded backend", KeyError),
    ({"backend": "generic", "loader": "m:f"}, "needs models.m.generate_fn", KeyError),
    ({"backend": "stable_audio"}, "needs models.m.path", KeyError),
    ({"backend": "embedded", "text_length": 0}, "models.m.text_length", ValueError),
])
def test_keys_of_another_backend_are_refused_by_config_and_loader(block, message, error, default_config):
    from tada.models import load_model

    cfg = deep_merge(default_config, {"models": {"m": block}})
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_config(cfg, source="my.yaml")
    with pytest.raises(error, match=message.replace(".", r"\.")):
        load_model(block, key="models.m")


def test_defaults_are_the_schemas_and_only_for_keys_a_variant_reads(default_config):
    from tada.config import check_block

    out = check_block({"backend": "generic", "loader": "m:f", "generate_fn": "m:g", "denoiser": "d",
                       "layer_patterns": ["x"]}, "model", "models.g")
    assert out["batch_size"] == 8 and out["text_outside_cross_attention"] is False
    embedded = check_block({"backend": "embedded"}, "model", "models.e")
    assert "text_outside_cross_attention" not in embedded and embedded["device"] == "cpu"
    default_config["scorer"] = {"kind": "world", "path": "p"}
    assert "device" not in validate_config(default_config)["scorer"]


def test_workflow_validates_once_with_the_library():
    """The Snakefile validates with tada.config.validate_config; no rule file validates again."""
    import re

    sources = {p.name: p.read_text() for p in [ROOT / "Snakefile", *(ROOT / "rules").glob("*.smk")]}
    calls = [(name, m.group(0)) for name, text in sources.items()
             for m in re.finditer(r"^\s*(validate|validate_config)\(.*$", text, flags=re.M)]
    assert calls == [("Snakefile", 'validate_config(config, source="config")')]


def test_every_schema_property_is_a_described_mapping():
    """A description that YAML reads as a mapping (an unquoted ': ' in a flow mapping) turns
    into a bogus key; every property must be a schema with a string description."""
    from tada.config import schema

    bad = []

    def walk(node, path):
        for name, sub in (node.get("properties") or {}).items():
            if not isinstance(sub, dict) or not isinstance(sub.get("description"), str) \
                    or " " in name or not ({"type", "$ref", "enum"} & set(sub)):
                bad.append(f"{path}{name}")
                continue
            walk(sub, f"{path}{name}.")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + "*.")

    sch = schema()
    walk(sch, "")
    for name, sub in sch["$defs"].items():
        walk(sub, f"$defs.{name}.")
    assert not bad, bad
    assert set(sch["properties"]["steering"]["properties"]["sae"]["properties"]) >= {"top_features"}


def test_concepts_left_out_of_the_default_run_are_explained_and_in_the_paper_config(default_config):
    from tada.prompts import load_concepts

    table = load_concepts(ROOT / "data" / "concepts.yaml")
    steering = [c.id for c in table.steering_concepts]
    localization = [c.id for c in table.localization_concepts]
    text = (ROOT / "config.yaml").read_text()
    comments = " ".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    left_out = [c for c in steering if c not in default_config["concepts"]["steering"]]
    left_out += [c for c in localization if c not in default_config["concepts"]["localization"]]
    assert all(c in comments for c in left_out), left_out
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["concepts"]
    assert paper["steering"] == steering and paper["localization"] == localization
    readme = (ROOT / "README.md").read_text()
    assert all(c in readme for c in left_out), left_out
