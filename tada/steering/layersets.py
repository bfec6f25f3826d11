"""Layer sets for steering: global (every cross-attention layer), localized (the functional
layers found by activation patching) and ablated (every layer but the functional ones)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

LAYER_SETS = ("global", "localized", "ablated")


def read_functional_layers(path: str | os.PathLike) -> list[int]:
    """The functional layers listed in a ``localize/layers.json`` (``{"layers": [...]}``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"functional layers file not found: {path} (run the localize stage "
                                "or set localize.layers in the config)")
    data = json.loads(path.read_text())
    layers = data.get("layers") if isinstance(data, Mapping) else data
    if not isinstance(layers, list) or not all(isinstance(x, int) for x in layers):
        raise ValueError(f"{path}: expected {{\"layers\": [int, ...]}}, got {data!r}")
    return sorted(set(layers))


def functional_layers(config: Mapping[str, Any] | None = None,
                      layers_json: str | os.PathLike | None = None) -> list[int]:
    """Functional layers: ``localize.layers`` from the config when set, else ``layers.json``."""
    override = ((config or {}).get("localize") or {}).get("layers")
    if override is not None:
        return sorted({int(x) for x in override})
    if layers_json is None:
        raise ValueError("no functional layers: set localize.layers in the config or give layers.json")
    return read_functional_layers(layers_json)


def resolve_layer_set(name: str, n_layers: int, functional: Sequence[int]) -> list[int]:
    """0-based layer indices of layer set `name` for a model with `n_layers` layers."""
    functional = sorted({int(x) for x in functional})
    bad = [i for i in functional if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"functional layers {bad} are outside the model's layers 0..{n_layers - 1}")
    if name == "global":
        return list(range(n_layers))
    if name == "localized":
        if not functional:
            raise ValueError("the localized layer set is empty: no functional layers")
        return functional
    if name == "ablated":
        rest = [i for i in range(n_layers) if i not in functional]
        if not rest:
            raise ValueError("the ablated layer set is empty: every layer is functional")
        return rest
    raise ValueError(f"unknown layer set '{name}'; choose one of {list(LAYER_SETS)}")


def layer_sets(n_layers: int, functional: Sequence[int],
               names: Sequence[str] = LAYER_SETS) -> dict[str, list[int]]:
    """Every named layer set as a dict name -> indices."""
    return {name: resolve_layer_set(name, n_layers, functional) for name in names}
