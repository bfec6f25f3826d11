"""Reading contrastive activations (pos/neg prompt pairs) from an activation store.

The steering methods only need a duck-typed store (see :mod:`tada.cache`):

* ``means``: array (sample, step, layer, branch, dim) of time-averaged cross-attention outputs;
* ``frames``: array (sample, frame_step, layer, frame, dim) of per-frame conditional outputs, or
  None;
* ``samples``: DataFrame with one row per sample: ``role`` ("pos"/"neg"), ``seed`` and the base
  prompt index (``base``, ``base_index`` or ``pair``);
* ``attrs``: dict with ``branches`` (e.g. ["uncond", "cond"]), ``frame_steps`` (steps of the
  frame axis), ``layers`` (names; the layer axis holds every layer of the model in order),
  ``layer_widths`` and ``frame_counts`` (true sizes; narrower layers are zero-padded) and
  ``model`` (the model description).

Arrays may be zarr arrays or numpy arrays; rows are read in blocks so that a store larger than
memory is never loaded whole.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Sequence

import numpy as np

BASE_COLUMNS = ("base", "base_index", "base_id", "pair", "pair_id")
#: bytes of activations read per block
BLOCK_BYTES = 256 * 2**20


def base_column(samples: Any) -> str:
    for name in BASE_COLUMNS:
        if name in samples.columns:
            return name
    raise KeyError(f"the store's sample table has no base-prompt column (one of {BASE_COLUMNS}); "
                   f"columns: {list(samples.columns)}")


def pair_rows(samples: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (pos, neg) of the contrastive pairs: same base prompt and same seed.

    Rows without a partner are dropped; a (base, seed) with several rows of one role is an error.
    """
    col = base_column(samples)
    roles = samples["role"].astype(str).to_numpy()
    bad = sorted(set(roles) - {"pos", "neg"})
    if bad:
        raise ValueError(f"unknown roles {bad} in the store's sample table (expected pos/neg)")
    keys: dict[tuple[Any, int], dict[str, int]] = {}
    for row, (base, seed, role) in enumerate(zip(samples[col].to_numpy(), samples["seed"].to_numpy(), roles)):
        slot = keys.setdefault((base, int(seed)), {})
        if role in slot:
            raise ValueError(f"two '{role}' rows for base {base!r}, seed {seed} (rows {slot[role]} and {row})")
        slot[role] = row
    pairs = [(v["pos"], v["neg"]) for _, v in sorted(keys.items(), key=lambda kv: str(kv[0]))
             if "pos" in v and "neg" in v]
    if not pairs:
        raise ValueError("the store holds no complete pos/neg pairs")
    arr = np.asarray(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def attrs(store: Any) -> dict[str, Any]:
    return dict(getattr(store, "attrs", {}) or {})


def store_layers(store: Any) -> list[int]:
    """Model layer index of every entry of the store's layer axis (the store keeps every layer,
    in the model's order)."""
    n = int(store.means.shape[2])
    names = attrs(store).get("layers")
    if names is not None and len(names) != n:
        raise ValueError(f"store attrs list {len(names)} layers but the layer axis has {n}")
    return list(range(n))


def layer_widths(store: Any) -> list[int]:
    """True width of every layer (narrower layers are zero-padded along ``dim``)."""
    a = attrs(store)
    widths = a.get("layer_widths") or (a.get("model") or {}).get("widths")
    n, d = int(store.means.shape[2]), int(store.means.shape[-1])
    return [int(w) for w in widths] if widths is not None else [d] * n


def frame_counts(store: Any) -> list[int]:
    """True frame count of every layer (layers with fewer frames are zero-padded)."""
    counts = attrs(store).get("frame_counts")
    return [int(c) for c in counts] if counts is not None else [int(store.frames.shape[3])] * int(store.frames.shape[2])


def layer_positions(store: Any, layers: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """(model layer indices, positions on the store's layer axis) for `layers` (None = all)."""
    have = store_layers(store)
    if layers is None:
        return have, list(range(len(have)))
    missing = sorted(set(int(x) for x in layers) - set(have))
    if missing:
        raise KeyError(f"the activation store has no layers {missing}; it has {have}")
    chosen = sorted(int(x) for x in layers)
    return chosen, [have.index(i) for i in chosen]


def branch_index(store: Any, branch: str = "cond") -> int:
    branches = [str(b) for b in attrs(store).get("branches", ["uncond", "cond"])]
    if len(branches) != int(store.means.shape[3]):
        raise ValueError(f"store attrs name branches {branches} but the branch axis has {store.means.shape[3]}")
    if branch not in branches:
        raise KeyError(f"the store has no '{branch}' branch (branches: {branches})")
    return branches.index(branch)


def frame_steps(store: Any) -> list[int]:
    """Sampler steps of the frame axis (empty when the store has no per-frame activations)."""
    frames = getattr(store, "frames", None)
    if frames is None:
        return []
    steps = attrs(store).get("frame_steps")
    if steps is None:
        raise ValueError("the store has per-frame activations but no 'frame_steps' attribute")
    steps = [int(s) for s in steps]
    if len(steps) != int(frames.shape[1]):
        raise ValueError(f"frame_steps {steps} do not match the frame axis ({frames.shape[1]})")
    return steps


def model_description(store: Any) -> dict[str, Any]:
    a = attrs(store)
    desc = a.get("model")
    if isinstance(desc, dict) and "layers" in desc and "widths" in desc:
        return dict(desc)
    raise KeyError("the store's attributes lack the model description ('model' with layers and widths)")


def store_fingerprint(store: Any) -> str:
    """Hash of a store's attributes, sample table and array shapes (identifies the data used)."""
    h = hashlib.sha256()
    h.update(json.dumps(attrs(store), sort_keys=True, default=str).encode())
    samples = getattr(store, "samples", None)
    if samples is not None:
        h.update(samples.to_csv(index=False).encode())
    for name in ("means", "frames"):
        arr = getattr(store, name, None)
        h.update(f"{name}:{None if arr is None else tuple(arr.shape)}".encode())
    return h.hexdigest()[:16]


def read_rows(array: Any, rows: np.ndarray, *rest: Any) -> np.ndarray:
    """``array[rows, *rest]`` with orthogonal indexing (zarr or numpy), as float32."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    if isinstance(array, np.ndarray):
        out = array[(sorted_rows, *rest)] if not rest else array[sorted_rows][(slice(None), *rest)]
    else:
        lo, hi = int(sorted_rows[0]), int(sorted_rows[-1]) + 1
        if hi - lo <= 2 * len(sorted_rows):
            out = np.asarray(array[(slice(lo, hi), *rest)])[sorted_rows - lo]
        else:
            out = np.asarray(array.get_orthogonal_selection((sorted_rows, *rest)))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return np.asarray(out, dtype=np.float32)[inverse]


def _block(n_bytes_per_pair: int) -> int:
    return max(1, BLOCK_BYTES // max(1, 2 * n_bytes_per_pair))


def iter_pair_means(store: Any, pos: np.ndarray, neg: np.ndarray, layer_pos: Sequence[int],
                    branch: str = "cond") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of (pos, neg) time-averaged activations, each (pairs, steps, layers, dim)."""
    b = branch_index(store, branch)
    s, _, _, _, d = store.means.shape
    step = _block(s * int(store.means.shape[2]) * d * 4)
    for i in range(0, len(pos), step):
        a = read_rows(store.means, pos[i:i + step], slice(None), slice(None), b)
        c = read_rows(store.means, neg[i:i + step], slice(None), slice(None), b)
        yield a[:, :, layer_pos], c[:, :, layer_pos]


def iter_pair_frames(store: Any, pos: np.ndarray, neg: np.ndarray, frame_step_pos: int,
                     layer_position: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of (pos, neg) per-frame activations of one layer at one frame step, each
    (pairs, frames, width) with the padding removed."""
    n_frames = frame_counts(store)[layer_position]
    width = layer_widths(store)[layer_position]
    step = _block(n_frames * width * 4)
    for i in range(0, len(pos), step):
        a = read_rows(store.frames, pos[i:i + step], frame_step_pos, layer_position)
        c = read_rows(store.frames, neg[i:i + step], frame_step_pos, layer_position)
        yield a[:, :n_frames, :width], c[:, :n_frames, :width]


def iter_role_frames(store: Any, rows: np.ndarray, frame_step_pos: int, layer_position: int,
                     batch_rows: int = 64) -> Iterator[np.ndarray]:
    """Per-frame activations of `rows` at one frame step and layer, as (rows·frames, width) blocks."""
    n_frames = frame_counts(store)[layer_position]
    width = layer_widths(store)[layer_position]
    for i in range(0, len(rows), batch_rows):
        a = read_rows(store.frames, rows[i:i + batch_rows], frame_step_pos, layer_position)
        yield a[:, :n_frames, :width].reshape(-1, width)
