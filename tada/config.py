"""Loading and validating `config.yaml` (the same schema the workflow validates against)."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the file and key."""


def _reads(sub: Mapping[str, Any], block: Mapping[str, Any]) -> bool:
    """Whether `block` (its backend / kind) reads the key whose schema is `sub`."""
    return all(block.get(field) is None or block.get(field) in sub[mark]
               for field, mark in _VARIANTS.values() if mark in sub)


def _validator(schema: Mapping[str, Any]):
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, sch):
        for name, sub in properties.items():
            if isinstance(instance, dict) and isinstance(sub, dict) and "default" in sub \
                    and _reads(sub, instance):
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from cls.VALIDATORS["properties"](validator, properties, instance, sch)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})(schema)


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def schema() -> dict[str, Any]:
    """A copy of the config schema (``schemas/config.schema.yaml``)."""
    return copy.deepcopy(_schema())


class ConfigKeyError(ConfigError, KeyError):
    """A config key is unknown, not read by the block's backend / kind, or missing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _check(config: Any, node: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Validate `config` in place against schema `node` (defaults filled); raise ConfigError
    (ConfigKeyError for unknown keys) naming `source` and the dotted key."""
    root = {**node, "$defs": _schema().get("$defs", {})}
    errors = sorted(_validator(root).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join([prefix] * bool(prefix) + [str(p) for p in err.absolute_path])
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            names = ", ".join(f"'{where + '.' * bool(where)}{k}'" for k in extra)
            raise ConfigKeyError(f"{source}: unknown key {names} ({err.message})")
        raise ConfigError(f"{source}: invalid value at '{where or '<top level>'}': {err.message}")


# Keys that only some variants of a block accept are marked in the schema: ``x-backends`` on a
# model key lists the backends that read it, ``x-kinds`` on a scorer key the scorer kinds, and
# ``x-required-for`` the variants that cannot do without it. The backends and scorers take their
# keys from here, so the schema is the one list of what each accepts.
_VARIANTS = {"model": ("backend", "x-backends"), "scorer": ("kind", "x-kinds")}


def _block_schema(block: str) -> dict[str, Any]:
    return _schema()["$defs"][block]


def block_keys(block: str, variant: str) -> dict[str, dict[str, Any]]:
    """The keys (name -> schema) that the `variant` (a backend, or a scorer kind) of a ``model``
    or ``scorer`` block accepts, in schema order."""
    _field, mark = _VARIANTS[block]
    props = _block_schema(block)["properties"]
    return {name: sub for name, sub in props.items() if variant in sub.get(mark, [variant])}


def required_keys(block: str, variant: str) -> list[str]:
    """Keys the `variant` of a ``model`` or ``scorer`` block cannot do without."""
    node = _block_schema(block)
    return [name for name, sub in node["properties"].items()
            if name in node.get("required", []) or variant in sub.get("x-required-for", [])]


def check_block(cfg: Mapping[str, Any], block: str, key: str) -> dict[str, Any]:
    """Validate one ``models.<name>`` (block ``model``) or ``scorer`` config block: its keys
    against its variant (``backend`` / ``kind``), required keys present (ConfigKeyError, a
    KeyError), then types and values against the schema (ConfigError, a ValueError). Returns a
    copy with the schema's defaults filled; every error names ``<key>.<name>``."""
    out = copy.deepcopy(dict(cfg))
    field, _mark = _VARIANTS[block]
    node = _block_schema(block)
    choices = node["properties"][field]["enum"]
    if out.get(field) not in choices:
        raise ConfigError(f"{key}.{field}: unknown {field} {out.get(field)!r}; choose one of {choices}")
    variant = out[field]
    allowed = block_keys(block, variant)
    foreign = [name for name in out if name not in allowed and name in cfg]
    if foreign:
        raise ConfigKeyError(f"{key}: {', '.join(f'{key}.{k}' for k in foreign)} not read by the "
                             f"{variant} {field}; it reads {', '.join(allowed)}")
    missing = [name for name in required_keys(block, variant) if out.get(name) in (None, "")]
    if missing:
        raise ConfigKeyError(f"{key}: the {variant} {field} needs "
                             f"{', '.join(f'{key}.{k}' for k in missing)}")
    _check(out, node, source=key, prefix=key)
    return out


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate `config` in place against the schema, filling defaults; raise ConfigError naming
    `source` and the key. Also checks each model block's and the scorer's keys against their
    backend / kind (:func:`check_block`)."""
    _check(config, _schema(), source)
    if config["model"] not in config["models"]:
        raise ConfigError(f"{source}: 'model' is '{config['model']}' but models has only "
                          f"{sorted(config['models'])}")
    try:
        for name, block in config["models"].items():
            check_block(block, "model", f"models.{name}")
        check_block(config["scorer"], "scorer", "scorer")
        for name, block in (config.get("evaluation") or {}).get("alignment", {}).items():
            check_block(block, "scorer", f"evaluation.alignment.{name}")
    except ConfigError as err:
        raise type(err)(f"{source}: {err}") from None
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
    """(key, type, default, description) for every key of the schema, in schema order. Keys read
    by some backends or scorer kinds only say so at the start of their description."""
    sch = _schema()
    rows: list[tuple[str, str, str, str]] = []

    def kind(node: Mapping[str, Any]) -> str:
        if "enum" in node:
            return " \\| ".join(str(v) for v in node["enum"])
        t = node.get("type", "")
        return "/".join(t) if isinstance(t, list) else str(t)

    def deref(node: Mapping[str, Any]) -> Mapping[str, Any]:
        if "$ref" not in node:
            return node
        target = sch["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}

    def note(node: Mapping[str, Any]) -> str:
        parts = [f"{'/'.join(node[m])} only" for m in ("x-backends", "x-kinds") if m in node]
        parts += [f"required for {'/'.join(node['x-required-for'])}"] if "x-required-for" in node else []
        return f"({'; '.join(parts)}) " if parts else ""

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            sub = deref(sub)
            default = "" if "default" not in sub else f"`{json_dump(sub['default'])}`"
            rows.append((f"{prefix}{name}", kind(sub), default, note(sub) + sub.get("description", "")))
            walk(sub, f"{prefix}{name}.")
            extra = sub.get("additionalProperties")
            if isinstance(extra, dict):
                walk(deref(extra), f"{prefix}{name}.<name>.")

    walk(sch, "")
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
