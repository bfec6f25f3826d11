"""Activation cache: cross-attention outputs of many generations in one resumable Zarr v3 store.

Store layout (every array has ``dimension_names``, so ``xarray.open_zarr(path)`` names the dims)::

    means      (sample, step, layer, branch, dim)        time-averaged layer outputs, all CFG branches
    frames     (sample, frame_step, layer, frame, dim)   per-frame outputs of the "cond" branch
                                                         (only when frame steps were asked for)
    done       (sample,) bool                            set once the sample's chunk is written
    sample     (sample,) int64                           0..n-1
    prompt, seed, <metadata columns>   (sample,)         the samples table, one array per column
    step       (step,) int64; layer (layer,) int64; layer_name (layer,) str; branch (branch,) str;
    frame_step (frame_step,) int64

Layers narrower than the widest one are zero-padded along ``dim`` (``attrs["layer_widths"]``);
layers with fewer frames are zero-padded along ``frame`` (``attrs["frame_counts"]``).
Arrays are chunked along ``sample`` by ``chunk_samples`` (``means`` also by layer, ``frames`` by
frame step and layer), and the store is written chunk by chunk: a chunk's ``done`` flags are set
only after all its data is written. Building again into the same path skips finished chunks,
after checking that the store was made with the same model, settings and samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

STORE_VERSION = 1
#: array names that sample-metadata columns may not take
RESERVED = ("means", "frames", "done", "sample", "step", "layer", "layer_name", "branch", "frame_step")
#: group attributes that must match when a build resumes into an existing store
FINGERPRINT_KEYS = ("store_version", "model", "layers", "layer_widths", "steps", "guidance",
                    "duration", "text_length", "branches", "frame_steps", "frame_stride", "dtype",
                    "chunk_samples", "n_samples", "sample_columns", "prompts_hash")


class StoreMismatchError(RuntimeError):
    """An existing store was built with other settings or samples than the requested build."""


class IncompleteStoreError(RuntimeError):
    """The store exists but not every sample has been written yet."""


# --------------------------------------------------------------------------------------------
# sample tables
# --------------------------------------------------------------------------------------------
def contrastive_samples(contrastive: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """Samples of a ``contrastive_{concept}`` promptset.

    `contrastive` has columns concept, base, positive, negative (one row per base prompt, see
    :func:`tada.prompts.contrastive_prompts`). The result has one row per (base prompt, seed,
    role): columns prompt, seed, role ("pos"/"neg"), base (0-based index of the base prompt),
    base_prompt and concept. Rows with the same (base, seed) form a contrastive pair.
    """
    missing = [c for c in ("concept", "base", "positive", "negative") if c not in contrastive.columns]
    if missing:
        raise ValueError(f"contrastive table lacks column(s) {missing}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("contrastive_samples needs at least one seed")
    rows = []
    for i, row in enumerate(contrastive.itertuples(index=False)):
        for seed in seeds:
            for role, prompt in (("pos", row.positive), ("neg", row.negative)):
                rows.append({"prompt": str(prompt), "seed": seed, "role": role, "base": i,
                             "base_prompt": str(row.base), "concept": str(row.concept)})
    return pd.DataFrame(rows, columns=["prompt", "seed", "role", "base", "base_prompt", "concept"])


def prompts_hash(samples: pd.DataFrame) -> str:
    """SHA-256 of the samples table (columns in order, values as text)."""
    text = json.dumps({"columns": [str(c) for c in samples.columns],
                       "rows": samples.astype(str).values.tolist()}, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_samples(samples: pd.DataFrame) -> pd.DataFrame:
    for col in ("prompt", "seed"):
        if col not in samples.columns:
            raise ValueError(f"samples table needs columns 'prompt' and 'seed' (missing '{col}')")
    clash = [c for c in samples.columns if c in RESERVED]
    if clash:
        raise ValueError(f"sample column name(s) {clash} are reserved by the store; rename them")
    if len(samples) == 0:
        raise ValueError("samples table is empty")
    out = samples.reset_index(drop=True).copy()
    out["prompt"] = out["prompt"].astype(str)
    out["seed"] = out["seed"].astype("int64")
    return out


def _column_array(values: pd.Series) -> tuple[np.ndarray, Any]:
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(bool), bool
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy("int64"), "int64"
    if pd.api.types.is_float_dtype(values):
        return values.to_numpy("float64"), "float64"
    return np.array([str(v) for v in values], dtype=object).astype(str), str


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
def build_store(model: Any, samples: pd.DataFrame, path: str | Path, *,
                frame_steps: Sequence[int] | None = None, frame_stride: int = 1,
                dtype: str = "float16", chunk_samples: int = 32, steps: int | None = None,
                guidance: float | None = None, duration: float | None = None,
                text_length: int | None = None, progress: bool = True,
                overwrite: bool = False) -> "ActivationStore":
    """Generate every sample with a :class:`~tada.models.interventions.Capture` and store the
    cross-attention activations in a Zarr v3 store at `path` (see the module docstring).

    `samples` has columns ``prompt`` and ``seed`` plus any metadata (role, base, pair_id, ...),
    all stored as arrays along ``sample``. Generation runs in batches of ``model.batch_size``
    within chunks of `chunk_samples` samples. If `path` already holds a store built with the
    same model, settings and samples, finished chunks are skipped (resume); if it holds a
    different one, :class:`StoreMismatchError` is raised unless `overwrite` is set, in which
    case it is deleted and rebuilt. Returns the opened store.
    """
    from tada.models.interventions import Capture

    samples = _check_samples(samples)
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    if int(chunk_samples) < 1 or int(frame_stride) < 1:
        raise ValueError("chunk_samples and frame_stride must be >= 1")
    steps = int(steps or model.default_steps)
    guidance = float(model.default_guidance if guidance is None else guidance)
    duration = float(duration or model.default_duration)
    fsteps = sorted({int(s) for s in (frame_steps or [])})
    bad = [s for s in fsteps if not 0 <= s < steps]
    if bad:
        raise ValueError(f"frame_steps {bad} outside 0..{steps - 1}")
    layers = model.layers
    widths = [int(layer.width) for layer in layers]
    attrs = {
        "tada_store": "activations",
        "store_version": STORE_VERSION,
        "model": _jsonable(model.describe()),
        "layers": [layer.name for layer in layers],
        "layer_widths": widths,
        "steps": steps,
        "guidance": guidance,
        "duration": duration,
        "text_length": None if text_length is None else int(text_length),
        "branches": list(model.cfg_branches(guidance)),
        "seeds": sorted({int(s) for s in samples["seed"]}),
        "frame_steps": fsteps,
        "frame_stride": int(frame_stride),
        "dtype": dtype,
        "chunk_samples": int(chunk_samples),
        "n_samples": len(samples),
        "sample_columns": [str(c) for c in samples.columns],
        "prompts_hash": prompts_hash(samples),
    }
    path = Path(path)
    group = _open_or_create(path, attrs, samples, overwrite)
    n, chunk = len(samples), int(chunk_samples)
    n_chunks = math.ceil(n / chunk)
    done = group["done"][:]
    todo = [c for c in range(n_chunks) if not done[c * chunk:(c + 1) * chunk].all()]
    if len(todo) < n_chunks:
        log.info("%s: resuming, %d of %d chunks already written", path, n_chunks - len(todo), n_chunks)
    t0 = time.perf_counter()
    for k, c in enumerate(todo):
        lo, hi = c * chunk, min(n, (c + 1) * chunk)
        for b0 in range(lo, hi, model.batch_size):
            b1 = min(hi, b0 + model.batch_size)
            cap = Capture(frame_steps=fsteps or None, frame_stride=frame_stride)
            model.generate(samples["prompt"].iloc[b0:b1].tolist(), samples["seed"].iloc[b0:b1].tolist(),
                           steps=steps, guidance=guidance, duration=duration, interventions=[cap],
                           text_length=text_length)
            _write_batch(group, cap, b0, b1, attrs, max(widths))
        group["done"][lo:hi] = True
        if progress:
            rate = (k + 1) / max(time.perf_counter() - t0, 1e-9)
            log.info("%s: chunk %d/%d written (samples %d-%d), %.2f chunks/s", path.name, c + 1, n_chunks,
                     lo, hi - 1, rate)
    if not group.attrs.get("complete", False):
        group.attrs["complete"] = True
    return open_store(path)


def _open_or_create(path: Path, attrs: dict[str, Any], samples: pd.DataFrame, overwrite: bool):
    import zarr

    if path.exists():
        try:
            group = zarr.open_group(path, mode="r+")
            existing = dict(group.attrs)
        except Exception as exc:  # not a zarr group at all
            raise StoreMismatchError(f"{path} exists but is not an activation store ({exc}); "
                                     "delete it or choose another path") from exc
        diff = [k for k in FINGERPRINT_KEYS if _jsonable(existing.get(k)) != _jsonable(attrs[k])]
        if existing.get("tada_store") != "activations":
            diff = ["tada_store"] + diff
        if not diff and "means" in group and "done" in group:
            return group
        if not diff:  # interrupted while being created: nothing written yet
            shutil.rmtree(path)
            return _open_or_create(path, attrs, samples, overwrite)
        details = "; ".join(_describe_difference(k, existing.get(k), attrs.get(k)) for k in diff)
        if not overwrite:
            raise StoreMismatchError(
                f"the activation store at {path} was built with different {', '.join(diff)} than this "
                f"build asks for ({details}); delete the store (rm -r it), build into another path, "
                "or set cache.rebuild_stale: true")
        log.warning("%s: rebuilding (stale store differs in %s)", path, details)
        shutil.rmtree(path)
    group = zarr.open_group(path, mode="w", attributes={**attrs, "complete": False})
    n, chunk = len(samples), attrs["chunk_samples"]
    group.create_array("done", shape=(n,), chunks=(chunk,), dtype=bool, fill_value=False,
                       dimension_names=["sample"])
    _small(group, "sample", np.arange(n, dtype="int64"), "sample", chunk)
    for col in samples.columns:
        values, _ = _column_array(samples[col])
        _small(group, str(col), values, "sample", chunk)
    _small(group, "step", np.arange(attrs["steps"], dtype="int64"), "step")
    _small(group, "layer", np.arange(len(attrs["layers"]), dtype="int64"), "layer")
    _small(group, "layer_name", np.array(attrs["layers"]).astype(str), "layer")
    _small(group, "branch", np.array(attrs["branches"]).astype(str), "branch")
    if attrs["frame_steps"]:
        _small(group, "frame_step", np.array(attrs["frame_steps"], dtype="int64"), "frame_step")
    width = max(attrs["layer_widths"])
    group.create_array("means", shape=(n, attrs["steps"], len(attrs["layers"]), len(attrs["branches"]), width),
                       chunks=(chunk, attrs["steps"], 1, len(attrs["branches"]), width),
                       dtype=attrs["dtype"], fill_value=0,
                       dimension_names=["sample", "step", "layer", "branch", "dim"])
    return group


def _describe_difference(key: str, stored: Any, wanted: Any) -> str:
    """'model.weights_sha256: store has 'ab12…', build has 'cd34…'' for each differing entry."""
    stored, wanted = _jsonable(stored), _jsonable(wanted)
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
        return "; ".join(_describe_difference(f"{key}.{k}", stored.get(k), wanted.get(k)) for k in keys)

    def short(v: Any) -> str:
        text = json.dumps(v)
        return text if len(text) <= 80 else text[:77] + "..."

    return f"{key}: store has {short(stored)}, build has {short(wanted)}"


def _small(group, name: str, values: np.ndarray, dim: str, chunk: int | None = None) -> None:
    dtype = str if values.dtype.kind in "OUT" else values.dtype
    arr = group.create_array(name, shape=values.shape, chunks=(chunk or max(1, len(values)),),
                             dtype=dtype, dimension_names=[dim])
    arr[:] = values


def _write_batch(group, cap, b0: int, b1: int, attrs: dict[str, Any], width: int) -> None:
    n_layers, nb, steps = len(attrs["layers"]), len(attrs["branches"]), attrs["steps"]
    np_dtype = np.dtype(attrs["dtype"])
    captured_steps = sorted({s for s, _ in cap.means})
    if captured_steps != list(range(steps)):
        raise RuntimeError(f"captured steps {captured_steps[:3]}... do not match the {steps} sampler steps")
    if tuple(cap.branches) != tuple(attrs["branches"]):
        raise RuntimeError(f"generation ran with CFG branches {cap.branches}, expected {attrs['branches']}")
    bsz = b1 - b0
    means = np.zeros((bsz, steps, n_layers, nb, width), dtype=np_dtype)
    for (s, l), m in cap.means.items():
        m = m.numpy().reshape(nb, bsz, -1)
        means[:, s, l, :, : m.shape[-1]] = m.transpose(1, 0, 2)
    group["means"][b0:b1] = means
    if not attrs["frame_steps"]:
        return
    counts = [0] * n_layers
    for (_, l), f in cap.frames.items():
        counts[l] = max(counts[l], int(f.shape[1]))
    if "frames" not in group:
        group.attrs["frame_counts"] = counts
        group.create_array("frames", shape=(attrs["n_samples"], len(attrs["frame_steps"]), n_layers, max(counts), width),
                           chunks=(attrs["chunk_samples"], 1, 1, max(counts), width), dtype=attrs["dtype"],
                           fill_value=0, dimension_names=["sample", "frame_step", "layer", "frame", "dim"])
    elif list(group.attrs["frame_counts"]) != counts:
        raise RuntimeError(f"frame counts {counts} differ from the store's {group.attrs['frame_counts']}")
    frames_arr = group["frames"]
    index = {s: i for i, s in enumerate(attrs["frame_steps"])}
    for (s, l), f in cap.frames.items():
        block = np.zeros((bsz, frames_arr.shape[3], width), dtype=np_dtype)
        block[:, : f.shape[1], : f.shape[2]] = f.numpy()
        frames_arr[b0:b1, index[s], l] = block


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def store_path(path: str | Path) -> Path:
    """The store directory for a store path or for the JSON manifest written beside it."""
    path = Path(path)
    if path.suffix == ".json":
        manifest = json.loads(path.read_text())
        return (path.parent / manifest["store"]).resolve() if not Path(manifest["store"]).is_absolute() \
            else Path(manifest["store"])
    return path


def write_manifest(store: "ActivationStore", manifest_path: str | Path, **extra: Any) -> dict[str, Any]:
    """Write the small JSON that marks a finished store (the workflow's declared output)."""
    from tada.io import write_json

    manifest_path = Path(manifest_path)
    try:
        rel = store.path.resolve().relative_to(manifest_path.parent.resolve())
        where = str(rel)
    except ValueError:
        where = str(store.path.resolve())
    info = {"store": where, "n_samples": store.n_samples, "complete": store.complete,
            "shape_means": list(store.means.shape),
            "shape_frames": None if store.frames is None else list(store.frames.shape),
            **{k: store.attrs.get(k) for k in ("layers", "steps", "guidance", "branches", "seeds",
                                               "frame_steps", "prompts_hash")},
            **extra}
    write_json(manifest_path, info)
    return info


def open_store(path: str | Path, *, require_complete: bool = True) -> "ActivationStore":
    """Open an activation store (its directory, or the JSON manifest beside it)."""
    return ActivationStore(store_path(path), require_complete=require_complete)


class ActivationStore:
    """Read access to a store written by :func:`build_store`.

    ``means`` and ``frames`` are the zarr arrays (nothing is loaded until indexed); ``samples``
    is the samples table (index = sample number); ``attrs`` the group attributes.
    """

    def __init__(self, path: str | Path, require_complete: bool = True):
        import zarr

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"activation store not found: {self.path}")
        self.group = zarr.open_group(self.path, mode="r")
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        if self.attrs.get("tada_store") != "activations":
            raise ValueError(f"{self.path} is not an activation store (no tada_store attribute)")
        self.means = self.group["means"]
        self.frames = self.group["frames"] if "frames" in self.group else None
        self.done = np.asarray(self.group["done"][:], dtype=bool)
        if require_complete and not self.done.all():
            raise IncompleteStoreError(
                f"{self.path}: only {int(self.done.sum())} of {len(self.done)} samples are written; "
                "run the cache job again to finish it")
        cols = {c: self.group[c][:] for c in self.attrs["sample_columns"]}
        self.samples = pd.DataFrame({c: ([str(x) for x in v.tolist()] if v.dtype.kind in "OUT" else v)
                                     for c, v in cols.items()})
        self.samples.index.name = "sample"

    # ----- description ------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.attrs["n_samples"])

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    @property
    def layers(self) -> list[str]:
        return list(self.attrs["layers"])

    @property
    def branches(self) -> list[str]:
        return list(self.attrs["branches"])

    @property
    def layer_widths(self) -> list[int]:
        return [int(w) for w in self.attrs["layer_widths"]]

    def branch_index(self, branch: str) -> int:
        if branch not in self.branches:
            raise KeyError(f"branch '{branch}' not in this store's CFG branches {self.branches}")
        return self.branches.index(branch)

    def to_xarray(self):
        """The store as an ``xarray.Dataset`` (lazy)."""
        import xarray as xr

        return xr.open_zarr(self.path, consolidated=False)

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, samples={self.n_samples}, "
                f"means={tuple(self.means.shape)}, frames={None if self.frames is None else tuple(self.frames.shape)})")

    # ----- means --------------------------------------------------------------------------------
    def _rows(self, where: Any) -> np.ndarray:
        if where is None:
            return np.flatnonzero(self.done)
        where = np.asarray(where)
        if where.dtype == bool:
            if where.shape != (self.n_samples,):
                raise ValueError(f"boolean selection must have {self.n_samples} entries")
            return np.flatnonzero(where & self.done)
        return np.asarray(where, dtype=np.int64)

    def load_means(self, samples: Any = None, branch: str = "cond") -> np.ndarray:
        """Means of the selected samples (indices or boolean mask; None = all written) on one CFG
        branch, as float32 (n, steps, layers, dim)."""
        rows = self._rows(samples)
        b = self.branch_index(branch)
        if len(rows) == 0:
            return np.zeros((0,) + tuple(self.means.shape[1:3]) + (self.means.shape[4],), np.float32)
        return np.asarray(self.means.oindex[rows, :, :, b, :], dtype=np.float32)

    def mean_by(self, role: str, branch: str = "cond", column: str = "role") -> np.ndarray:
        """Average of ``means`` over the samples whose `column` equals `role`: (steps, layers, dim),
        float32. Read chunk by chunk along ``sample``."""
        if column not in self.samples.columns:
            raise KeyError(f"the samples table has no column '{column}' (columns: {list(self.samples.columns)})")
        select = (self.samples[column].astype(str).to_numpy() == str(role)) & self.done
        if not select.any():
            raise ValueError(f"no written samples with {column} == {role!r}")
        b = self.branch_index(branch)
        chunk = int(self.attrs["chunk_samples"])
        total = np.zeros(tuple(self.means.shape[1:3]) + (self.means.shape[4],), np.float64)
        for lo in range(0, self.n_samples, chunk):
            rows = np.flatnonzero(select[lo:lo + chunk])
            if len(rows):
                block = np.asarray(self.means[lo:lo + chunk, :, :, b, :], dtype=np.float64)
                total += block[rows].sum(axis=0)
        return (total / select.sum()).astype(np.float32)

    # ----- frames -------------------------------------------------------------------------------
    def iter_frames(self, layer: int, batch_size: int, seed: int = 0, *, samples: Any = None,
                    frame_steps: Sequence[int] | None = None, shuffle: bool = True,
                    buffer_blocks: int = 8) -> Iterator[np.ndarray]:
        """Stream per-frame vectors of one layer as float32 batches (batch_size, width).

        Reads one (sample chunk, frame step) block at a time; with `shuffle`, blocks are visited
        in a seeded random order and rows are shuffled within a buffer of `buffer_blocks`
        blocks, so memory stays at a few blocks whatever the store's size. The last batch may
        be smaller. `samples` (indices or boolean mask) and `frame_steps` restrict the data.
        """
        if self.frames is None:
            raise ValueError(f"{self.path} has no per-frame activations (built without frame_steps)")
        if not 0 <= int(layer) < len(self.layers):
            raise IndexError(f"layer {layer} out of range 0..{len(self.layers) - 1}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        layer = int(layer)
        keep = np.zeros(self.n_samples, bool)
        keep[self._rows(samples)] = True
        keep &= self.done
        stored = [int(s) for s in self.attrs["frame_steps"]]
        wanted = stored if frame_steps is None else [int(s) for s in frame_steps]
        missing = sorted(set(wanted) - set(stored))
        if missing:
            raise KeyError(f"frame steps {missing} are not stored (stored: {stored})")
        n_frames = int(self.attrs["frame_counts"][layer])
        width = self.layer_widths[layer]
        chunk = int(self.attrs["chunk_samples"])
        blocks = [(lo, stored.index(s)) for lo in range(0, self.n_samples, chunk) for s in wanted
                  if keep[lo:lo + chunk].any()]
        rng = np.random.default_rng(seed)
        if shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        buffer: list[np.ndarray] = []
        held = 0
        for k, (lo, si) in enumerate(blocks):
            data = np.asarray(self.frames[lo:lo + chunk, si, layer, :n_frames, :width], dtype=np.float32)
            data = data[keep[lo:lo + chunk]].reshape(-1, width)
            buffer.append(data)
            held += len(data)
            last = k == len(blocks) - 1
            if len(buffer) >= buffer_blocks or last:
                pool = np.concatenate(buffer)
                if shuffle:
                    pool = pool[rng.permutation(len(pool))]
                n_full = len(pool) if last else (len(pool) // batch_size) * batch_size
                for start in range(0, n_full, batch_size):
                    yield pool[start:start + batch_size]
                buffer = [pool[n_full:]] if n_full < len(pool) else []
                held = len(pool) - n_full

    def n_frame_vectors(self, layer: int, samples: Any = None) -> int:
        """How many vectors :meth:`iter_frames` yields for `layer` (all stored frame steps)."""
        keep = np.zeros(self.n_samples, bool)
        keep[self._rows(samples)] = True
        return int((keep & self.done).sum()) * len(self.attrs["frame_steps"]) * int(self.attrs["frame_counts"][layer])
