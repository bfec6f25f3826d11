"""The one scorer interface: similarity between clips and texts.

A scorer takes clips either as a :class:`~tada.models.base.Generation` or as an audio array
``(B, C, N)`` (or ``(B, N)``) with its sample rate, and texts, and returns a float array of
shape ``(n_clips, n_texts)``; higher means more similar. Scorers that work on log-mels read
``Generation.features`` when the generation carries world log-mels (no vocoding for scoring).
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np


class Clips:
    """Normalised view of scorer input: audio and/or world log-mel features."""

    def __init__(self, audio: np.ndarray | None, sample_rate: int | None, features: np.ndarray | None,
                 source: Any = None):
        self._audio = audio
        self.sample_rate = sample_rate
        self.features = features
        self.source = source

    @property
    def audio(self) -> np.ndarray:
        """(B, N) mono float32 audio (channels averaged)."""
        if self._audio is None:
            self._audio = self.source.audio
        a = np.asarray(self._audio, dtype=np.float32)
        if a.ndim == 3:
            a = a.mean(axis=1)
        elif a.ndim == 1:
            a = a[None]
        return a

    def __len__(self) -> int:
        if self.features is not None:
            return len(self.features)
        return len(self._audio if self._audio is not None else self.source.prompts)


def as_clips(clips: Any, sample_rate: int | None = None) -> Clips:
    """Accept a Generation, or an audio array (B, C, N) / (B, N) with `sample_rate`."""
    if hasattr(clips, "prompts") and hasattr(clips, "sample_rate"):
        feats = getattr(clips, "features", None)
        world = feats is not None and getattr(clips, "info", {}).get("backend", "embedded") == "embedded"
        audio = clips.__dict__.get("_audio")
        return Clips(audio, clips.sample_rate, feats if world else None, source=clips)
    if isinstance(clips, Clips):
        return clips
    arr = np.asarray(clips, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"audio clips must have shape (B, C, N) or (B, N), got {arr.shape}")
    if sample_rate is None:
        raise ValueError("scoring an audio array needs its sample_rate")
    return Clips(arr, int(sample_rate), None)


class Scorer(abc.ABC):
    """Similarity of audio clips to texts."""

    #: registry name (``kind`` in the config)
    kind: str = "base"
    #: scorer batch size (clips per forward pass)
    batch_size: int = 16

    @abc.abstractmethod
    def _similarity(self, clips: Clips, texts: list[str]) -> np.ndarray:
        """(n_clips, n_texts) similarities for one batch of clips."""

    def similarity(self, clips: Any, texts: Sequence[str] | str, sample_rate: int | None = None) -> np.ndarray:
        """Similarity matrix (n_clips, n_texts), computed in batches of ``batch_size`` clips."""
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        if not texts:
            raise ValueError("similarity() needs at least one text")
        view = as_clips(clips, sample_rate)
        n = len(view)
        out = []
        for start in range(0, n, self.batch_size):
            out.append(np.asarray(self._similarity(_slice(view, start, start + self.batch_size), texts),
                                  dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(texts)), np.float32)

    def score(self, clips: Any, text: str, sample_rate: int | None = None) -> np.ndarray:
        """Similarity of each clip to one text: shape (n_clips,)."""
        return self.similarity(clips, [text], sample_rate)[:, 0]

    def rank(self, clips: Any, texts: Sequence[str], sample_rate: int | None = None) -> np.ndarray:
        """Index of the most similar text for each clip."""
        return self.similarity(clips, texts, sample_rate).argmax(axis=1)


def _slice(view: Clips, start: int, stop: int) -> Clips:
    feats = None if view.features is None else view.features[start:stop]
    if view.features is not None:
        audio = None if view._audio is None else view.audio[start:stop]
        src = None if view.source is None else _SliceSource(view, start, stop)
        return Clips(audio, view.sample_rate, feats, source=src)
    return Clips(view.audio[start:stop], view.sample_rate, None)


class _SliceSource:
    """Lazily decoded audio of a slice of a generation."""

    def __init__(self, view: Clips, start: int, stop: int):
        self.view, self.start, self.stop = view, start, stop
        self.prompts = list(range(stop - start))

    @property
    def audio(self) -> np.ndarray:
        return self.view.audio[self.start:self.stop]
