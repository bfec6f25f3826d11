"""Scorer for the music world built on its ground-truth concept classifiers.

The text names concepts through keywords ("a piano song" -> the piano presence head, "a fast
track" -> tempo = fast, "This is a music of a female vocal singing" -> vocal = female, ...);
the similarity of a clip to a text is the mean, over the concepts the text names, of the
classifier probability of the named value. Clips are scored on their world log-mels
(``Generation.features`` when present, else :func:`tada.world.features.log_mel` of the audio).
A text that names no known concept is an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..world.classifiers import ConceptClassifiers
from ..world.descriptors import descriptor_names
from ..world.features import log_mel
from .base import Clips, Scorer

#: (pattern, head, value): head "presence:<source>" or a concept of CONCEPT_VALUES.
#: Checked in order; a later rule for a head already matched by an earlier one is skipped.
KEYWORDS: tuple[tuple[str, str, Any], ...] = (
    (r"acoustic guitar|unplugged guitar|nylon|steel-string|wooden six-string", "presence:acoustic_guitar", True),
    (r"electric guitar|electrified|amplified guitar|overdriven|distorted guitar", "presence:electric_guitar", True),
    (r"\bguitars?\b", "presence:guitar", True),
    (r"\bpiano|pianoforte|ivories|\bkeys\b", "presence:piano", True),
    (r"violin|fiddle", "presence:violin", True),
    (r"\bflutes?\b|\bfife\b", "presence:flute", True),
    (r"trumpet|cornet|brass horn", "presence:trumpet", True),
    (r"\bmaracas?\b|shaker", "presence:maracas", True),
    (r"without drums|no drums|no percussion", "presence:drums", False),
    (r"\bdrums?\b|drumming|drummer|percussion|drum kit|drum beat", "presence:drums", True),
    (r"\bslow|leisurely|laid-back|unhurried|languid|sluggish|slowly", "tempo", "slow"),
    (r"\bfast|quick|up-tempo|uptempo|rapid|brisk|swift|energetic|lively|dynamic", "tempo", "fast"),
    (r"\bsad\b|melanchol|sorrow|gloomy|depress|mournful|somber|dejected|gloom", "mood", "sad"),
    (r"happy|cheerful|joyful|uplifting|upbeat|bright|merry|jolly|\bglad\b", "mood", "happy"),
    (r"female|woman|women|girl|lady|feminine", "vocal", "female"),
    (r"\bmale\b|\bman\b|\bmen\b|\bboy|gentleman|masculine", "vocal", "male"),
    (r"\brap|rapper|rapping|spitting bars|spoken-word|rhymes", "vocal_style", "rap"),
    (r"instrumental|no vocals|no one sings|without vocals", "presence:vocal", False),
    (r"\bsung\b|\bsing\b|singer|crooning|\bvocals?\b|singing|voice", "presence:vocal", True),
    (r"classical|orchestral|baroque|symphonic", "genre", "classical"),
    (r"electronic|techno|\bedm\b|electronica|\bclub\b|synth", "genre", "electronic"),
    (r"jazz|bebop|blues|swing", "genre", "jazz"),
    (r"\brock\b|grunge|garage", "genre", "rock"),
    (r"reggae|jamaican|tropical|island", "genre", "reggae"),
)


def text_concepts(text: str) -> list[tuple[str, Any]]:
    """The (head, value) pairs a text names (see :data:`KEYWORDS`)."""
    low = text.lower()
    found: dict[str, Any] = {}
    for pattern, head, value in KEYWORDS:
        if head in found or (head == "presence:guitar" and any("guitar" in h for h in found)):
            continue
        if re.search(pattern, low):
            found[head] = value
    if "vocal" in found or "vocal_style" in found:
        found.pop("presence:vocal", None)  # the gender/style head is the more specific claim
    return list(found.items())


def check_classifiers(classifiers: Any, where: Any = "") -> None:
    """Fail clearly when saved classifiers were fitted on another descriptor layout."""
    mean = getattr(classifiers, "mean", None)
    if mean is not None and len(mean) != len(descriptor_names()):
        raise RuntimeError(
            f"the concept classifiers {where} were fitted on {len(mean)} descriptor features but "
            f"descriptor_vector now gives {len(descriptor_names())}; refit them with "
            "`python -m tada.embedded_quality --fit-classifiers`")


class WorldScorer(Scorer):
    """Similarity from :class:`~tada.world.classifiers.ConceptClassifiers` probabilities."""

    kind = "world"

    def __init__(self, path: str | Path | None = None, classifiers: Any = None, batch_size: int = 64):
        if classifiers is None:
            if path is None:
                raise ValueError("WorldScorer needs `path` (a saved ConceptClassifiers) or `classifiers`")
            p = Path(path)
            if not (p / "classifiers.json").exists() and not p.with_suffix(".json").exists():
                raise FileNotFoundError(f"no concept classifiers at '{p}' (expected classifiers.json + "
                                        "classifiers.safetensors)")
            classifiers = ConceptClassifiers.load(p)
            check_classifiers(classifiers, p)
        self.classifiers = classifiers
        self.batch_size = int(batch_size)

    def _probability(self, feats: np.ndarray, head: str, value: Any) -> np.ndarray:
        c = self.classifiers
        if head.startswith("presence:"):
            p = c.presence(feats, head.split(":", 1)[1])
            return p if value else 1.0 - p
        proba = c.predict_proba(feats, head)
        return proba[:, list(c.classes(head)).index(value)]

    def _similarity(self, clips: Clips, texts: list[str]) -> np.ndarray:
        mels = clips.features
        if mels is None:
            ms = [log_mel(a, sr=clips.sample_rate) for a in clips.audio]
            n = min(len(m) for m in ms)
            mels = np.stack([m[:n] for m in ms])
        feats = self.classifiers.features(np.asarray(mels, dtype=np.float32))
        out = np.zeros((len(feats), len(texts)), dtype=np.float32)
        for j, text in enumerate(texts):
            named = text_concepts(text)
            if not named:
                raise ValueError(f"the world scorer cannot read a concept from {text!r}; it knows instruments, "
                                 "tempo, mood, vocal gender/style and genre keywords")
            out[:, j] = np.mean([self._probability(feats, h, v) for h, v in named], axis=0)
        return out
