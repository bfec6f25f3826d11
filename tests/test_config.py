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
