"""Loading and validating `config.yaml` (the same schema the workflow validates against)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the file and key."""


def _validator(schema: Mapping[str, Any]):
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, sch):
        for name, sub in properties.items():
            if isinstance(instance, dict) and isinstance(sub, dict) and "default" in sub:
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from cls.VALIDATORS["properties"](validator, properties, instance, sch)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})(schema)


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate `config` in place against the schema, filling defaults; raise ConfigError."""
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ConfigError(f"{source}: invalid value at '{where}': {err.message}")
    if config["model"] not in config["models"]:
        raise ConfigError(f"{source}: 'model' is '{config['model']}' but models has only "
                          f"{sorted(config['models'])}")
    return config


def load_config(path: str | os.PathLike = "config.yaml",
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read, merge `overrides` (nested dicts) and validate a config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config, source=str(path))


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config(config: Mapping[str, Any], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """Return (name, config block) of the studied model, or of model `name`."""
    name = name or config["model"]
    if name not in config["models"]:
        raise ConfigError(f"unknown model '{name}'; models has {sorted(config['models'])}")
    block = dict(config["models"][name])
    return name, block


def schema_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key of the schema, in schema order."""
    schema = yaml.safe_load(SCHEMA.read_text())
    rows: list[tuple[str, str, str, str]] = []

    def kind(node: Mapping[str, Any]) -> str:
        if "enum" in node:
            return " \\| ".join(str(v) for v in node["enum"])
        t = node.get("type", "")
        return "/".join(t) if isinstance(t, list) else str(t)

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            if "$ref" in sub:
                sub = schema["$defs"][sub["$ref"].rsplit("/", 1)[-1]]
            default = "" if "default" not in sub else f"`{json_dump(sub['default'])}`"
            rows.append((f"{prefix}{name}", kind(sub), default, sub.get("description", "")))
            walk(sub, f"{prefix}{name}.")
            extra = sub.get("additionalProperties")
            if isinstance(extra, dict):
                if "$ref" in extra:
                    extra = schema["$defs"][extra["$ref"].rsplit("/", 1)[-1]]
                walk(extra, f"{prefix}{name}.<name>.")

    walk(schema, "")
    return rows


def json_dump(value: Any) -> str:
    import json

    return json.dumps(value)


def schema_markdown() -> str:
    """The config-key table of the README, generated from the schema."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {desc} |" for k, t, d, desc in schema_rows()]
    return "\n".join(lines) + "\n"


def update_readme(path: str | os.PathLike = ROOT / "README.md") -> None:
    """Rewrite the README's config-key table (between its config-keys markers)."""
    import re

    from tada.io import write_text

    text = Path(path).read_text()
    start, end = "<!-- config-keys:start -->", "<!-- config-keys:end -->"
    if start not in text or end not in text:
        raise ValueError(f"{path}: config-keys markers not found")
    new = re.sub(re.escape(start) + ".*" + re.escape(end),
                 lambda _m: f"{start}\n{schema_markdown()}{end}", text, flags=re.S)
    write_text(path, new)


if __name__ == "__main__":
    import sys

    if "--update-readme" in sys.argv:
        update_readme()
    else:
        print(schema_markdown(), end="")
