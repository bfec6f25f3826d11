"""Concept classifiers of the music world, trained on rendered ground truth.

Input: world log-mels ``(n, frames, n_mels)``. Each clip becomes the descriptor vector of
:func:`tada.world.descriptors.descriptor_vector` (cepstral timbre statistics, band-wise level,
attack, roughness and vibrato, per-band-group onset-envelope autocorrelation and modulation
spectra, onset decay, onset rate, tempo periodicity, centroid, register percentiles, high-band
noisiness), standardised with the training mean and deviation.

Model: a small multi-task network written in torch, an ensemble of ``n_models`` members (mean
of their probabilities). Each member has input dropout (0.1), one shared hidden layer
(``hidden`` units, GELU, dropout 0.5) and one linear softmax head per task; all heads are
trained together with the sum of their class-balanced cross-entropies, AdamW (lr 2e-3, weight
decay 0.1), full batch, ``steps`` steps, one torch thread. Tasks:

* one head per attribute of :data:`~tada.world.attributes.CONCEPT_VALUES` (lead, tempo, mood,
  vocal, vocal_style, genre, drums, maracas); ``predict_proba`` gives the class probabilities
  in ``CONCEPT_VALUES`` order;
* one presence head per source of :data:`~tada.world.attributes.INSTRUMENTS` (the six lead
  instruments, drums, maracas, vocal) plus ``guitar`` (either guitar); ``presence`` gives the
  probability that the source plays. These are independent binary detectors, so a clip that
  mixes two lead instruments (as a steered generation may) can score high on both, which the
  one-of-six ``lead`` head cannot express.

Saved as ``classifiers.safetensors`` (weights, feature mean/std) and ``classifiers.json``
(settings, tasks, classes, feature names) in a directory, or as ``<name>.safetensors`` +
``<name>.json`` when given such a name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tada.io import atomic_path, write_text
from tada.world.attributes import CONCEPT_VALUES, INSTRUMENTS, ClipAttributes, presence_labels
from tada.world.descriptors import descriptor_names, descriptor_vector
from tada.world.features import N_MELS

PRESENCE = INSTRUMENTS + ("guitar",)


def _presence(attrs: ClipAttributes, name: str) -> bool:
    if name == "guitar":
        return attrs.lead in ("acoustic_guitar", "electric_guitar")
    return presence_labels(attrs)[name]


def _tasks() -> dict[str, tuple]:
    """Task name -> class values (concept heads, then ``presence:<source>`` heads)."""
    out: dict[str, tuple] = {c: tuple(v) for c, v in CONCEPT_VALUES.items()}
    for name in PRESENCE:
        out[f"presence:{name}"] = (False, True)
    return out


def _labels(attributes: Sequence[ClipAttributes], task: str) -> np.ndarray:
    if task.startswith("presence:"):
        name = task.split(":", 1)[1]
        return np.array([int(_presence(a, name)) for a in attributes], dtype=np.int64)
    values = CONCEPT_VALUES[task]
    return np.array([values.index(getattr(a, task)) for a in attributes], dtype=np.int64)


class _Net(torch.nn.Module):
    def __init__(self, d_in: int, hidden: int, tasks: dict[str, tuple]) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(d_in, hidden),
                                        torch.nn.GELU(), torch.nn.Dropout(0.5))
        self.names = list(tasks)
        self.heads = torch.nn.ModuleList([torch.nn.Linear(hidden, len(v)) for v in tasks.values()])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.body(x)
        return {n: h(z) for n, h in zip(self.names, self.heads)}


class ConceptClassifiers:
    """Per-concept and per-source classifiers on world log-mels (see the module docstring)."""

    def __init__(self, hidden: int = 128, steps: int = 300, n_models: int = 3, seed: int = 0) -> None:
        self.hidden = int(hidden)
        self.steps = int(steps)
        self.n_models = int(n_models)
        self.seed = int(seed)
        self.tasks = _tasks()
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.nets: list[_Net] = []

    # -- features --------------------------------------------------------------------------
    @staticmethod
    def features(mels: Any) -> np.ndarray:
        """Descriptor vectors ``(n, D)`` of log-mels ``(n, frames, n_mels)`` (or one mel)."""
        m = np.asarray(mels, dtype=np.float32)
        if m.ndim == 2:
            m = m[None]
        return np.stack([descriptor_vector(x) for x in m]).astype(np.float32)

    def _standardise(self, feats: np.ndarray) -> torch.Tensor:
        if self.mean is None:
            raise RuntimeError("ConceptClassifiers is not fitted")
        return torch.from_numpy(((feats - self.mean) / self.std).astype(np.float32))

    def _as_x(self, mels_or_features: Any) -> torch.Tensor:
        """Standardised features of log-mels, or of already computed :meth:`features`."""
        arr = np.asarray(mels_or_features, dtype=np.float32)
        if self.mean is not None and arr.ndim == 2 and arr.shape[1] == len(self.mean) \
                and not _looks_like_mel(arr):
            return self._standardise(arr)
        return self._standardise(self.features(arr))

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, mels: Any, attributes: Sequence[ClipAttributes], features: np.ndarray | None = None
            ) -> "ConceptClassifiers":
        """Fit every head on log-mels and their ground-truth attributes; returns self.

        `features` may pass precomputed :meth:`features` of `mels` (then `mels` is unused).
        """
        feats = self.features(mels) if features is None else np.asarray(features, dtype=np.float32)
        if len(feats) != len(attributes):
            raise ValueError(f"{len(feats)} clips but {len(attributes)} attribute sets")
        self.mean = feats.mean(axis=0)
        self.std = feats.std(axis=0) + 1e-6
        x = self._standardise(feats)
        ys = {t: torch.from_numpy(_labels(attributes, t)) for t in self.tasks}
        self.nets = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small matrices; one thread stays fast on a busy machine
        try:
            self._train(x, ys)
        finally:
            torch.set_num_threads(threads)
        return self

    def _train(self, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> None:
        weights = {}
        for t, y in ys.items():  # class-balanced: a rare source counts as much as its absence
            counts = torch.bincount(y, minlength=len(self.tasks[t])).float().clamp(min=1.0)
            weights[t] = len(y) / (len(counts) * counts)
        for k in range(self.n_models):
            torch.manual_seed(self.seed * 1009 + k)
            net = _Net(x.shape[1], self.hidden, self.tasks)
            opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.1)
            net.train()
            for _ in range(self.steps):
                out = net(x)
                loss = sum(torch.nn.functional.cross_entropy(out[t], ys[t], weight=weights[t])
                           for t in self.tasks)
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            self.nets.append(net)

    # -- prediction --------------------------------------------------------------------------
    def classes(self, concept: str) -> tuple:
        """Class order of :meth:`predict_proba` for `concept` (or ``presence:<source>``)."""
        if concept in CONCEPT_VALUES:
            return tuple(CONCEPT_VALUES[concept])
        return self.tasks[self._task(concept)]

    def _task(self, name: str) -> str:
        if name in self.tasks:
            return name
        if f"presence:{name}" in self.tasks:
            return f"presence:{name}"
        raise KeyError(f"unknown concept {name!r}; choose from {list(CONCEPT_VALUES)} or {list(PRESENCE)}")

    def _proba_all(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        if not self.nets:
            raise RuntimeError("ConceptClassifiers is not fitted")
        total: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for net in self.nets:
                for t, logits in net(x).items():
                    p = torch.softmax(logits, dim=1)
                    total[t] = total[t] + p if t in total else p
        return {t: (v / len(self.nets)).numpy().astype(np.float64) for t, v in total.items()}

    def predict_proba(self, mels: Any, concept: str) -> np.ndarray:
        """Class probabilities ``(n, n_values)`` in ``CONCEPT_VALUES[concept]`` order.

        `concept` may also be a source of :data:`PRESENCE` (probabilities of absent, present).
        `mels` may also be precomputed :meth:`features`.
        """
        task = self._task(concept)
        return self._proba_all(self._as_x(mels))[task]

    def predict(self, mels: Any, concept: str) -> list:
        """Most probable value per clip."""
        p = self.predict_proba(mels, concept)
        values = self.classes(concept)
        return [values[i] for i in p.argmax(axis=1)]

    def presence(self, mels: Any, instrument: str) -> np.ndarray:
        """Probability ``(n,)`` that `instrument` plays (one of :data:`PRESENCE`)."""
        if instrument not in PRESENCE:
            raise KeyError(f"unknown instrument {instrument!r}; choose from {PRESENCE}")
        return self.predict_proba(mels, instrument)[:, 1]

    def evaluate(self, mels: Any, attributes: Sequence[ClipAttributes]) -> dict[str, float]:
        """Accuracy of every head on labelled clips (concept names and ``presence:<source>``),
        plus ``balanced:<task>``, the mean per-class recall (chance = 1 / classes)."""
        probs = self._proba_all(self._as_x(mels))
        out: dict[str, float] = {}
        for t in self.tasks:
            y = _labels(attributes, t)
            pred = probs[t].argmax(axis=1)
            out[t] = float((pred == y).mean())
        for t in self.tasks:
            y = _labels(attributes, t)
            pred = probs[t].argmax(axis=1)
            recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
            out[f"balanced:{t}"] = float(np.mean(recalls))
        return out

    # -- persistence ---------------------------------------------------------------------------
    @staticmethod
    def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
        p = Path(path)
        if p.suffix in (".safetensors", ".json"):
            return p.with_suffix(".safetensors"), p.with_suffix(".json")
        return p / "classifiers.safetensors", p / "classifiers.json"

    def save(self, path: str | os.PathLike) -> Path:
        """Save to ``path`` (a directory, or a ``.safetensors``/``.json`` name for the pair);
        returns the weights file."""
        from safetensors.torch import save_file

        if not self.nets:
            raise RuntimeError("ConceptClassifiers is not fitted")
        st, js = self._paths(path)
        st.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": torch.from_numpy(self.mean.astype(np.float32)),
                   "std": torch.from_numpy(self.std.astype(np.float32))}
        for k, net in enumerate(self.nets):
            for name, v in net.state_dict().items():
                tensors[f"net{k}.{name}"] = v.detach().contiguous()
        meta = {"hidden": self.hidden, "steps": self.steps, "n_models": len(self.nets), "seed": self.seed,
                "tasks": {t: list(v) for t, v in self.tasks.items()},
                "feature_names": descriptor_names()}
        with atomic_path(st) as tmp:
            save_file(tensors, str(tmp))
        write_text(js, json.dumps(meta, indent=1))
        return st

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptClassifiers":
        from safetensors.torch import load_file

        st, js = cls._paths(path)
        tensors = load_file(str(st))
        meta = json.loads(js.read_text())
        obj = cls(hidden=meta["hidden"], steps=meta["steps"], n_models=meta["n_models"], seed=meta["seed"])
        saved = {t: tuple(v) for t, v in meta["tasks"].items()}
        if saved != obj.tasks:
            raise ValueError(f"{st} was saved with other tasks than this version defines")
        obj.mean = tensors["mean"].numpy()
        obj.std = tensors["std"].numpy()
        for k in range(meta["n_models"]):
            net = _Net(len(obj.mean), obj.hidden, obj.tasks)
            net.load_state_dict({n[len(f"net{k}."):]: v for n, v in tensors.items() if n.startswith(f"net{k}.")})
            net.eval()
            obj.nets.append(net)
        return obj


def _looks_like_mel(arr: np.ndarray) -> bool:
    """A 2-D array whose last axis is the mel axis and whose values are in [-1, 1]."""
    return arr.shape[1] == N_MELS and float(np.abs(arr).max(initial=0.0)) <= 1.0 + 1e-6
