"""The playground's engine: the model, the steering vectors a run left on disk, a clip cache and
a single model worker.

A request names a prompt, a seed, a method variant (``caa_localized``...) and one to three
concepts, each with an α. The first concept's slider has ``n = 2k + 1`` stops (7 by default)
over its calibrated range ``[-a⁻, +a⁺]`` (``calibration/<concept>.json``,
``variants.<method>.{neg,pos}.alpha_max``)::

    α_j = a⁻·(j − k)/k  for j < k,    α_k = 0,    α_j = a⁺·(j − k)/k  for j > k

and the other concepts stay at their own α. Stop j is generated from ``[prompt] * rows`` with
the same seed on every row, steered at every layer of each concept's vector by
``h ← h + Σ_c α_c · v_c`` (one additive intervention per concept, α per row of the batch, so a
row whose α are all 0 is plain generation, bit for bit).

The stops go through the model in two batches: first the stop under the slider (the first
sound), then the other six together. Every clip is cached in memory under the key

    sha256(weights hash, prompt, seed, steps, guidance, duration, [(vector sha256, α), ...])

so a repeated request costs nothing; each clip also remembers the exact batch it was rendered
in, which its sidecar records so ``tada steer --from-sidecar`` repeats that batch bit for bit.
One worker thread runs the model; requests queue on it and never run the model concurrently.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tada.methods import FAMILIES, LAYER_SET_SUFFIX, VectorVariant, parse_variant_name, variant_name

#: stops of the first concept's slider (α = 0 included)
STOPS = 7
#: concepts steered at once
MAX_AXES = 3
#: characters of a prompt
MAX_PROMPT_CHARS = 300
#: |α| of either side when a concept has no calibrated range for the method
UNCALIBRATED_ALPHA = 1.0
#: method variant selected first when it exists
DEFAULT_METHOD = "caa_localized"
#: clips kept in memory
CACHE_CLIPS = 512
#: the families whose artifact is a steering vector applied as h ← h + α·v
VECTOR_FAMILIES = tuple(sorted(f for f, (cls, _reads) in FAMILIES.items() if cls is VectorVariant))


class PlayError(ValueError):
    """A request the playground refuses; `status` is the HTTP status (4xx) to answer with."""

    def __init__(self, reason: str, status: int = 422):
        super().__init__(reason)
        self.status = int(status)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def alpha_stops(neg: float, pos: float, n: int = STOPS) -> list[float]:
    """The `n` (odd) slider stops from −`neg` to +`pos`, α = 0 in the middle."""
    if n < 3 or n % 2 == 0:
        raise ValueError(f"the number of stops must be odd and >= 3, not {n}")
    k = n // 2
    return [float(neg) * (j - k) / k if j < k else float(pos) * (j - k) / k for j in range(n)]


@dataclass(frozen=True)
class VectorEntry:
    """One steering vector on disk: method variant, concept and calibrated α range."""

    method: str
    concept: str
    path: Path
    neg: float
    pos: float
    calibrated: bool

    def stops(self, n: int = STOPS) -> list[float]:
        return alpha_stops(self.neg, self.pos, n)


class Catalog:
    """The steering vectors of a run folder (``results/<model>``):
    ``vectors/<family>/<layer set>/<concept>.safetensors`` for every vector family, with the
    α ranges of ``calibration/<concept>.json`` (±:data:`UNCALIBRATED_ALPHA` where none)."""

    def __init__(self, results_dir: str | Path):
        self.results_dir = Path(results_dir)
        root = self.results_dir / "vectors"
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no steering vectors (run the workflow, or pass --results)")
        self.entries: dict[tuple[str, str], VectorEntry] = {}
        calibration: dict[str, dict[str, Any]] = {}
        for family in VECTOR_FAMILIES:
            for layer_set in LAYER_SET_SUFFIX:
                for path in sorted((root / family / layer_set).glob("*.safetensors")):
                    method, concept = variant_name(family, layer_set), path.stem
                    if concept not in calibration:
                        calibration[concept] = self._calibration(concept)
                    sides = calibration[concept].get(method, {})
                    neg, pos = (sides.get(s, {}).get("alpha_max") for s in ("neg", "pos"))
                    self.entries[(method, concept)] = VectorEntry(
                        method, concept, path.resolve(),
                        float(neg) if neg else UNCALIBRATED_ALPHA, float(pos) if pos else UNCALIBRATED_ALPHA,
                        bool(neg and pos))
        if not self.entries:
            raise FileNotFoundError(f"{root}: no steering vector of the families {list(VECTOR_FAMILIES)}")

    def _calibration(self, concept: str) -> dict[str, Any]:
        path = self.results_dir / "calibration" / f"{concept}.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text()).get("variants", {})
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: unreadable calibration ({exc})") from exc

    def methods(self) -> list[str]:
        return sorted({m for m, _ in self.entries})

    def default_method(self) -> str:
        methods = self.methods()
        return DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0]

    def entry(self, method: str, concept: str) -> VectorEntry:
        if method not in self.methods():
            raise PlayError(f"method: unknown method variant {method!r} (available: {', '.join(self.methods())})")
        found = self.entries.get((method, concept))
        if found is None:
            raise PlayError(f"concept: no {method} vector for concept {concept!r}")
        return found

    def menu(self) -> dict[str, Any]:
        """Methods and, per method, its concepts with their stops (for the page)."""
        out: dict[str, Any] = {"methods": self.methods(), "default_method": self.default_method(), "concepts": {}}
        for (method, concept), e in sorted(self.entries.items()):
            out["concepts"].setdefault(method, []).append(
                {"concept": concept, "neg": e.neg, "pos": e.pos, "calibrated": e.calibrated, "stops": e.stops()})
        return out


@dataclass
class Plan:
    """A checked request: the vectors, the α of every stop (rows × concepts) and the cache keys."""

    prompt: str
    seed: int
    entries: list[VectorEntry]
    rows: list[list[float]]
    keys: list[str]
    first: int


@dataclass
class Clip:
    key: str
    audio: np.ndarray
    sample_rate: int
    wav: bytes
    batch: list[list[float]]
    row: int
    plan: Plan = field(repr=False)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of (channels, samples) float audio, for the browser."""
    import soundfile as sf

    data = np.asarray(audio, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    buf = io.BytesIO()
    sf.write(buf, np.clip(data, -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def render_batch(model: Any, vectors: Sequence[Any], prompt: str, seed: int, rows: Sequence[Sequence[float]], *,
                 steps: int, guidance: float, duration: float) -> Any:
    """One generation of ``[prompt] * len(rows)`` (one seed) with row r steered by
    ``Σ_c rows[r][c] · vectors[c]``; a vector with per-step vectors for another step count is
    resampled linearly. Returns the model's :class:`~tada.models.base.Generation`."""
    interventions = []
    for c, vec in enumerate(vectors):
        alphas = [float(row[c]) for row in rows]
        if any(alphas):
            interventions.append(vec.intervention(alphas, resample_steps=vec.steps > 1 and vec.steps != steps))
    return model.generate([prompt] * len(rows), seeds=[int(seed)] * len(rows), steps=steps, guidance=guidance,
                          duration=duration, interventions=interventions)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PlayError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


class Engine:
    """Checks requests, serves clips from the cache and queues the rest on one model worker."""

    def __init__(self, model: Any, catalog: Catalog, *, model_name: str = "model",
                 steps: int | None = None, guidance: float | None = None, duration: float | None = None,
                 stops: int = STOPS, split_first: bool = True, cache_clips: int = CACHE_CLIPS):
        self.model, self.catalog, self.model_name = model, catalog, str(model_name)
        self.steps = int(steps or model.default_steps)
        self.guidance = float(model.default_guidance if guidance is None else guidance)
        self.duration = float(duration or model.default_duration)
        self.n_stops, self.split_first, self.cache_clips = int(stops), bool(split_first), int(cache_clips)
        alpha_stops(1.0, 1.0, self.n_stops)  # checks the count
        self.weights = model.weights_sha256()
        self._vectors: dict[Path, tuple[Any, str]] = {}
        self._cache: OrderedDict[str, Clip] = OrderedDict()
        self._pending: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tada-play-model")
        self.batches = 0  # model calls made

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    # ----- requests -------------------------------------------------------------------------
    def vector(self, entry: VectorEntry) -> tuple[Any, str]:
        """The loaded vector of `entry` and its file hash (checked against the model once)."""
        from tada.steering.vectors import SteeringVector

        with self._lock:
            if entry.path not in self._vectors:
                try:
                    vec = SteeringVector.load(entry.path)
                    vec.check_compatible(self.model)
                except (OSError, ValueError) as exc:  # a vector of another model, or a broken file
                    raise PlayError(f"{entry.method}/{entry.concept}: {exc}", status=409) from exc
                self._vectors[entry.path] = (vec, file_sha256(entry.path))
            return self._vectors[entry.path]

    def plan(self, request: Any) -> Plan:
        """Check a request (a dict from JSON); raises :class:`PlayError` naming the bad field."""
        if not isinstance(request, dict):
            raise PlayError("the request must be a JSON object")
        unknown = set(request) - {"prompt", "seed", "method", "axes"}
        if unknown:
            raise PlayError(f"unknown field(s): {', '.join(sorted(unknown))}")
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PlayError("prompt: must be a non-empty string")
        prompt = " ".join(prompt.split())
        if len(prompt) > MAX_PROMPT_CHARS:
            raise PlayError(f"prompt: {len(prompt)} characters, at most {MAX_PROMPT_CHARS}")
        seed = request.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31:
            raise PlayError(f"seed: expected an integer in [0, 2^31), got {seed!r}")
        method = request.get("method", self.catalog.default_method())
        if not isinstance(method, str):
            raise PlayError("method: must be a string")
        axes = request.get("axes")
        if not isinstance(axes, list) or not 1 <= len(axes) <= MAX_AXES:
            raise PlayError(f"axes: expected a list of 1 to {MAX_AXES} concepts")
        entries, alphas = [], []
        for i, axis in enumerate(axes):
            if not isinstance(axis, dict) or not isinstance(axis.get("concept"), str):
                raise PlayError(f"axes[{i}]: expected {{\"concept\": name, \"alpha\": number}}")
            entry = self.catalog.entry(method, axis["concept"])
            if entry in entries:
                raise PlayError(f"axes[{i}]: concept {entry.concept!r} appears twice")
            alpha = _number(axis.get("alpha", 0.0), f"axes[{i}].alpha")
            if not -entry.neg * (1 + 1e-9) <= alpha <= entry.pos * (1 + 1e-9):
                raise PlayError(f"axes[{i}].alpha: {alpha:g} is outside {entry.concept}'s range "
                                f"[{-entry.neg:g}, {entry.pos:g}]")
            entries.append(entry)
            alphas.append(alpha)
        stops = entries[0].stops(self.n_stops)
        rows = [[a] + alphas[1:] for a in stops]
        first = int(np.argmin([abs(a - alphas[0]) for a in stops]))
        hashes = [self.vector(e)[1] for e in entries]
        keys = [self._key(prompt, seed, hashes, row) for row in rows]
        return Plan(prompt, seed, entries, rows, keys, first)

    def _key(self, prompt: str, seed: int, hashes: Sequence[str], row: Sequence[float]) -> str:
        # α = 0 of a concept is no steering at all: drop it, so equal clips share a key
        steer = sorted((h, repr(float(a))) for h, a in zip(hashes, row) if a != 0)
        text = json.dumps([self.weights, prompt, int(seed), self.steps, repr(self.guidance), repr(self.duration),
                           steer])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    # ----- rendering ------------------------------------------------------------------------
    def submit(self, plan: Plan) -> list[Future]:
        """One future per stop (a clip); cached stops are done already, the others are queued:
        the first stop alone, then the rest in one batch (or all in one batch)."""
        futures: list[Future | None] = [None] * len(plan.keys)
        missing = []
        with self._lock:
            for j, key in enumerate(plan.keys):
                if key in self._cache:
                    self._cache.move_to_end(key)
                    fut: Future = Future()
                    fut.set_result(self._cache[key])
                    futures[j] = fut
                elif key in self._pending:
                    futures[j] = self._pending[key]
                else:
                    fut = Future()
                    fut.set_running_or_notify_cancel()  # shared by every waiter: never cancelled
                    futures[j] = self._pending[key] = fut
                    missing.append(j)
        if missing:
            groups = [missing]
            if self.split_first and plan.first in missing and len(missing) > 1:
                groups = [[plan.first], [j for j in missing if j != plan.first]]
            for group in groups:
                self._worker.submit(self._run, plan, group, [futures[j] for j in group])
        return futures  # type: ignore[return-value]

    def _run(self, plan: Plan, group: list[int], futures: list[Future]) -> None:
        rows = [plan.rows[j] for j in group]
        try:
            vectors = [self.vector(e)[0] for e in plan.entries]
            gen = render_batch(self.model, vectors, plan.prompt, plan.seed, rows, steps=self.steps,
                               guidance=self.guidance, duration=self.duration)
            self.batches += 1
            clips = [Clip(plan.keys[j], np.asarray(gen.audio[r]), gen.sample_rate,
                          wav_bytes(gen.audio[r], gen.sample_rate), rows, r, plan) for r, j in enumerate(group)]
        except BaseException as exc:  # the futures must learn of any failure
            with self._lock:
                for j in group:
                    self._pending.pop(plan.keys[j], None)
            for fut in futures:
                fut.set_exception(exc)
            return
        with self._lock:
            for clip in clips:
                self._cache[clip.key] = clip
                self._pending.pop(clip.key, None)
            while len(self._cache) > self.cache_clips:
                self._cache.popitem(last=False)
        for fut, clip in zip(futures, clips):
            fut.set_result(clip)

    def generate(self, request: Any, timeout: float | None = None) -> list[Clip]:
        """Every stop of a request, waiting for them (for scripts and tests)."""
        return [f.result(timeout) for f in self.submit(self.plan(request))]

    def future(self, key: str) -> Future | None:
        """The clip of `key`: done when cached, pending while queued, None when unknown."""
        with self._lock:
            if key in self._cache:
                fut: Future = Future()
                fut.set_result(self._cache[key])
                return fut
            return self._pending.get(key)

    # ----- saving ---------------------------------------------------------------------------
    def sidecar(self, clip: Clip) -> dict[str, Any]:
        """Everything `tada steer --from-sidecar` needs to render `clip` again, bit for bit."""
        import tada

        plan, row = clip.plan, clip.batch[clip.row]
        vectors = []
        for c, entry in enumerate(plan.entries):
            vec, digest = self.vector(entry)
            family, layer_set = parse_variant_name(entry.method)
            vectors.append({"concept": entry.concept, "method": entry.method, "family": family,
                            "layer_set": layer_set, "layers": vec.layers, "vector_steps": vec.steps,
                            "file": str(entry.path), "sha256": digest, "alpha": float(row[c])})
        return {"format": "tada.play.clip", "version": 1, "tada_version": tada.__version__,
                "model": {"name": self.model_name, **self.model.describe()},
                "prompt": plan.prompt, "seed": plan.seed, "steps": self.steps, "guidance": self.guidance,
                "duration": self.duration, "vectors": vectors,
                "batch": {"alphas": [[float(a) for a in r] for r in clip.batch], "row": clip.row},
                "sample_rate": clip.sample_rate,
                "audio_sha256": hashlib.sha256(np.ascontiguousarray(clip.audio, dtype=np.float32)).hexdigest()}

    def save(self, key: str, out_dir: str | Path) -> tuple[Path, Path]:
        """Write the cached clip `key` as ``<name>.wav`` and ``<name>.json`` under `out_dir`."""
        from tada.io import write_audio, write_json

        with self._lock:
            clip = self._cache.get(key)
        if clip is None:
            raise PlayError(f"key: no finished clip {key!r} (generate it first)", status=404)
        meta = self.sidecar(clip)
        slug = "-".join(f"{v['concept']}{v['alpha']:+.3g}" for v in meta["vectors"])
        name = f"{key[:12]}_{slug}"
        out = Path(out_dir)
        write_audio(out / f"{name}.wav", clip.audio, clip.sample_rate)
        meta["wav"] = f"{name}.wav"
        write_json(out / f"{name}.json", meta)
        return out / f"{name}.wav", out / f"{name}.json"
