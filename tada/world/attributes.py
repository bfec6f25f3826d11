"""Ground-truth concept attributes of a clip in the synthetic music world.

Every clip is fully described by one :class:`ClipAttributes`; the renderer turns it into audio
and the caption generator into text, so each concept has an exact label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

LEADS: tuple[str, ...] = ("piano", "violin", "acoustic_guitar", "electric_guitar", "flute", "trumpet")

CONCEPT_VALUES: dict[str, tuple[Any, ...]] = {
    "lead": LEADS,
    "tempo": ("slow", "fast"),
    "mood": ("happy", "sad"),
    "vocal": ("none", "female", "male"),
    "vocal_style": ("none", "sung", "rap"),
    "genre": ("classical", "electronic", "jazz", "rock", "reggae"),
    "drums": (False, True),
    "maracas": (False, True),
}
"""Attribute name -> allowed values, in a fixed order (class index = position).

`drums` and `maracas` are booleans; every other attribute is a string.
"""

INSTRUMENTS: tuple[str, ...] = LEADS + ("drums", "maracas", "vocal")
"""Sources whose presence the world labels exactly (see :func:`presence_labels`)."""


@dataclass(frozen=True)
class ClipAttributes:
    """The concepts present in one clip.

    `vocal` and `vocal_style` are tied: both are "none" or neither is.
    """

    lead: str
    tempo: str
    mood: str
    vocal: str
    vocal_style: str
    genre: str
    drums: bool
    maracas: bool

    def __post_init__(self) -> None:
        for name in ("drums", "maracas"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
                object.__setattr__(self, name, bool(v))
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = CONCEPT_VALUES[f.name]
            if value not in allowed or type(value) is not type(allowed[0]):
                raise ValueError(f"{f.name}={value!r} is not one of {allowed}")
        if (self.vocal == "none") != (self.vocal_style == "none"):
            raise ValueError(
                f"vocal={self.vocal!r} and vocal_style={self.vocal_style!r} disagree: "
                "both must be 'none' or neither"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipAttributes":
        kw = {f.name: d[f.name] for f in fields(cls)}
        for name in ("drums", "maracas"):
            v = kw[name]
            if isinstance(v, str):
                kw[name] = v.strip().lower() in ("1", "true", "yes")
            else:
                kw[name] = bool(v)
        return cls(**kw)

    def replace(self, **changes: Any) -> "ClipAttributes":
        """A copy with some attributes changed (vocal_style follows vocal when needed)."""
        d = self.to_dict()
        d.update(changes)
        if "vocal" in changes and "vocal_style" not in changes:
            if d["vocal"] == "none":
                d["vocal_style"] = "none"
            elif d["vocal_style"] == "none":
                d["vocal_style"] = "sung"
        if "vocal_style" in changes and "vocal" not in changes:
            if d["vocal_style"] == "none":
                d["vocal"] = "none"
            elif d["vocal"] == "none":
                d["vocal"] = "female"
        return ClipAttributes.from_dict(d)


def sample_attributes(rng: np.random.Generator) -> ClipAttributes:
    """Draw attributes independently and uniformly.

    Lead (6), tempo (2), mood (2), genre (5), drums (2) and maracas (2) are uniform and
    independent; vocal is none/female/male with probability 1/3 each and, when present, its
    style is sung or rap with probability 1/2. Independence keeps concepts disentangled, so every
    combination occurs and no concept can be predicted from another.
    """
    lead = LEADS[int(rng.integers(len(LEADS)))]
    tempo = ("slow", "fast")[int(rng.integers(2))]
    mood = ("happy", "sad")[int(rng.integers(2))]
    vocal = ("none", "female", "male")[int(rng.integers(3))]
    style = "none" if vocal == "none" else ("sung", "rap")[int(rng.integers(2))]
    genre = CONCEPT_VALUES["genre"][int(rng.integers(5))]
    drums = bool(rng.integers(2))
    maracas = bool(rng.integers(2))
    return ClipAttributes(lead, tempo, mood, vocal, style, genre, drums, maracas)


def presence_labels(attrs: ClipAttributes) -> dict[str, bool]:
    """Ground-truth presence of each source in :data:`INSTRUMENTS`."""
    out = {name: attrs.lead == name for name in LEADS}
    out["drums"] = attrs.drums
    out["maracas"] = attrs.maracas
    out["vocal"] = attrs.vocal != "none"
    return out
