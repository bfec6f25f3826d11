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
