"""MusicCaps-style captions of world clips.

A caption is drawn from a template and from synonym lists per attribute value. The "train"
and "heldout" splits use disjoint template sets and disjoint synonym phrases, so a model trained
on "train" captions can be tested on phrasings it never saw.

Templates are strings with ``{slot}`` placeholders; a ``[...]`` segment is kept only when every
slot inside it is filled, which is how optional attributes (omitted mood, no percussion, an
instrumental clip) disappear without breaking the sentence. Slots: ``lead``, ``tempo``
(adjective), ``mood`` (adjective), ``genre`` (modifier), ``noun`` (song/track/...),
``vocal`` (noun phrase), ``perc`` (drums and/or maracas noun phrase), ``inst`` (a sentence
saying the clip is instrumental), ``extra`` (a neutral descriptor sentence).

Every present attribute is mentioned, except that mood is left out with probability
:data:`OMIT["mood"]`, tempo, genre and percussion with smaller probabilities, and an
instrumental clip says so half of the time. Words that the concept filters of the
counterfactual pipeline look for in one concept (e.g. "energetic" for fast tempo, "percussion"
for drums, "blues" for jazz) are used only for that concept.
"""

from __future__ import annotations

import re

import numpy as np

from tada.world.attributes import ClipAttributes

SPLITS = ("train", "heldout")

OMIT = {"mood": 0.2, "tempo": 0.1, "genre": 0.15, "perc": 0.1}
"""Probability that a present attribute is left out of a caption."""

_W = {
    "train": {
        "lead": {
            "piano": ("piano", "grand piano", "upright piano"),
            "violin": ("violin", "solo violin", "bowed violin"),
            "acoustic_guitar": ("acoustic guitar", "nylon-string guitar", "steel-string acoustic guitar"),
            "electric_guitar": ("electric guitar", "overdriven electric guitar", "electric lead guitar"),
            "flute": ("flute", "airy flute", "concert flute"),
            "trumpet": ("trumpet", "solo trumpet", "brass trumpet"),
        },
        "tempo": {
            "slow": ("slow", "slow-paced", "leisurely", "laid-back", "slowly paced"),
            "fast": ("fast", "quick", "up-tempo", "rapid", "fast-paced"),
        },
        "mood": {
            "happy": ("happy", "cheerful", "joyful", "uplifting", "bright"),
            "sad": ("sad", "melancholic", "sorrowful", "gloomy", "depressing"),
        },
        "genre": {
            "classical": ("classical", "orchestral", "classical-style"),
            "electronic": ("electronic", "techno", "EDM", "synth-driven electronic"),
            "jazz": ("jazz", "jazzy", "swing jazz"),
            "rock": ("rock", "hard rock", "rock and roll"),
            "reggae": ("reggae", "Jamaican", "roots reggae"),
        },
        "drums": {True: ("drums", "a drum kit", "percussion", "a steady drum beat")},
        "maracas": {True: ("maracas", "shaking maracas")},
        # vocal phrases are built from a gender word and a style pattern
        "vocal": {
            "female": ("female", "woman"),
            "male": ("male", "man"),
        },
        "vocal_style": {
            "sung": ("{adj} vocal", "{adj} vocals", "a {adj} singer", "a {noun} singing",
                     "{adj} sing vocal"),
            "rap": ("{adj} rap vocal", "a {adj} rapper", "a {noun} rapping", "rap vocals by a {noun}"),
        },
        "instrumental": ("It is instrumental.", "There are no vocals.", "This is an instrumental."),
        "noun": ("song", "track", "tune", "piece", "recording"),
    },
    "heldout": {
        "lead": {
            "piano": ("pianoforte", "ivories"),
            "violin": ("fiddle", "fiddle strings"),
            "acoustic_guitar": ("unplugged guitar", "wooden six-string"),
            "electric_guitar": ("amplified guitar", "electrified six-string"),
            "flute": ("fife", "transverse flute"),
            "trumpet": ("cornet", "brass horn"),
        },
        "tempo": {
            "slow": ("unhurried", "languid", "sluggish"),
            "fast": ("brisk", "swift", "energetic"),
        },
        "mood": {
            "happy": ("merry", "jolly", "glad"),
            "sad": ("mournful", "somber", "dejected"),
        },
        "genre": {
            "classical": ("baroque", "symphonic"),
            "electronic": ("electronica", "club"),
            "jazz": ("bebop", "blues"),
            "rock": ("grunge", "garage"),
            "reggae": ("tropical", "island"),
        },
        "drums": {True: ("drumming", "a drummer")},
        "maracas": {True: ("maraca", "a maraca shaker")},
        "vocal": {
            "female": ("girlish", "lady"),
            "male": ("boyish", "gentleman"),
        },
        "vocal_style": {
            "sung": ("a crooning {noun}", "melodic {adj} crooning"),
            "rap": ("a {noun} spitting bars", "{adj} spoken-word rhymes"),
        },
        "instrumental": ("No one sings.", "It has no voice at all."),
        "noun": ("number", "composition", "cut"),
    },
}

_GENDER_NOUN = {
    "train": {"female": {"female": "woman", "woman": "woman"}, "male": {"male": "man", "man": "man"}},
    "heldout": {"female": {"girlish": "girl", "lady": "lady"}, "male": {"boyish": "boy", "gentleman": "gentleman"}},
}
_GENDER_ADJ = {
    "train": {"female": {"female": "female", "woman": "female"}, "male": {"male": "male", "man": "male"}},
    "heldout": {"female": {"girlish": "girlish", "lady": "feminine"}, "male": {"boyish": "boyish", "gentleman": "masculine"}},
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "train": (
        "A [{tempo} ][{mood} ][{genre} ]{noun} with {lead}[ and {perc}][, featuring {vocal}].",
        "This is a [{genre} ]{noun} featuring {lead}.[ It is {tempo}.][ The mood is {mood}.][ {vocal} can be heard.][ {perc} can be heard too.][ {inst}]",
        "[{tempo} ][{mood} ][{genre} ]music played by {lead}[, with {vocal}][ and {perc}].",
        "The {lead} plays a [{tempo} ][{mood} ]melody[ over {perc}] in this [{genre} ]{noun}.[ It has {vocal}.][ {inst}]",
        "[{tempo} ][{genre} ]{noun}[ that sounds {mood}], led by {lead}[, with {perc} in the background][ and {vocal}].",
        "[{vocal} over ]{lead} in a [{mood} ][{tempo} ][{genre} ]{noun}[; {perc} accompany].",
        "In this [{tempo} ]{noun}, {lead} carries the tune.[ It feels {mood}.][ The style is {genre}.][ You can hear {perc}.][ It has {vocal}.][ {inst}]",
        "[{genre} ]{noun} with {lead}[ and {vocal}][, {perc}][, {tempo}][, {mood}].",
        "A {lead} melody[ with {vocal}][ and {perc}].[ The {noun} is {tempo}.][ It feels {mood}.][ Genre: {genre}.]",
        "[{tempo} ][{mood} ]{lead} {noun}[ in a {genre} style][ with {perc}][, with {vocal}].[ {inst}]",
        "This [{genre} ]{noun} is built around {lead}[ and {perc}].[ It is {tempo}.][ It sounds {mood}.][ {vocal} is present.]",
        "Here {lead} leads a [{tempo} ][{genre} ]{noun}[ with a {mood} feel].[ Listen for {perc}.][ It features {vocal}.]",
        "[{vocal}, ]{lead}[ and {perc}]: a [{mood} ][{tempo} ][{genre} ]{noun}.",
        "The {noun} is a [{mood} ][{genre} ]piece with {lead}.[ There are {perc}.][ {vocal} joins in.][ The {noun} is {tempo}.][ {inst}]",
        "A [{tempo} ]{noun}[ in the {genre} genre][, {mood} in character], where {lead} plays the melody[ over {perc}][ next to {vocal}].[ {extra}]",
        "[{genre} ][{tempo} ]{noun}.[ {mood} atmosphere.][ {vocal} on top.][ {perc} in the mix.] Main instrument: {lead}.[ {extra}]",
    ),
    "heldout": (
        "Picture a [{tempo} ][{genre} ]{noun} where {lead} takes the spotlight[ beside {perc}][ with {vocal}].[ The vibe is {mood}.][ {inst}]",
        "{lead} front and center[, {mood}][, {tempo}][, in a {genre} vein][; {perc} underneath][; {vocal} up top].",
        "What you hear: {lead}[, {perc}][, {vocal}].[ Feel: {mood}.][ Pace: {tempo}.][ Style: {genre}.][ {inst}]",
        "An arrangement for {lead}[ and {perc}][, {tempo} at heart][, with a {mood} tone][, rooted in {genre} music].[ It also has {vocal}.][ {extra}]",
        "[Rooted in {genre}, ]this [{mood} ]{noun} moves at a [{tempo} ]clip with {lead}[ plus {perc}][ and {vocal}].",
        "Listeners get {lead}[ accompanied by {perc}] in a [{tempo} ][{mood} ][{genre} ]{noun}[, topped with {vocal}].[ {inst}]",
        "Built on {lead}, this [{tempo} ][{mood} ][{genre} ]{noun} unfolds[ with {perc} along the way][ and {vocal} on the lead line].",
    ),
}

EXTRAS = {
    "train": ("The recording quality is clean.", "This could be used in a film soundtrack.",
              "The mix is wide and clear.", "It would suit a video game."),
    "heldout": ("Perfect for a road trip playlist.", "The production feels polished.",
                "It could score a documentary."),
}


def _vocal_words(split: str) -> dict[str, tuple[str, ...]]:
    """Every vocal phrase a split can produce, per (gender, style)."""
    out: dict[str, tuple[str, ...]] = {}
    w = _W[split]
    for gender, gwords in w["vocal"].items():
        for style, patterns in w["vocal_style"].items():
            phrases = []
            for gw in gwords:
                for pat in patterns:
                    phrases.append(pat.format(adj=_GENDER_ADJ[split][gender][gw],
                                              noun=_GENDER_NOUN[split][gender][gw]))
            out[f"{gender}_{style}"] = tuple(dict.fromkeys(phrases))
    return out


def _build_concept_words() -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for split in SPLITS:
        w = _W[split]
        vocal = _vocal_words(split)
        d: dict[str, dict] = {k: dict(w[k]) for k in ("lead", "tempo", "mood", "genre")}
        d["drums"] = {True: w["drums"][True], False: ()}
        d["maracas"] = {True: w["maracas"][True], False: ()}
        d["vocal"] = {
            "none": w["instrumental"],
            "female": vocal["female_sung"] + vocal["female_rap"],
            "male": vocal["male_sung"] + vocal["male_rap"],
        }
        d["vocal_style"] = {
            "none": w["instrumental"],
            "sung": vocal["female_sung"] + vocal["male_sung"],
            "rap": vocal["female_rap"] + vocal["male_rap"],
        }
        d["gender_word"] = {g: w["vocal"][g] for g in ("female", "male")}
        d["noun"] = {"any": w["noun"]}
        out[split] = d
    return out


CONCEPT_WORDS: dict[str, dict[str, dict]] = _build_concept_words()
"""``CONCEPT_WORDS[split][attribute][value]`` -> the phrases a caption of that split uses for it.

Attributes are those of :class:`ClipAttributes` (``vocal`` and ``vocal_style`` list the full
vocal phrases; the "none" value lists the instrumental sentences, which appear in about half
of the instrumental captions), plus ``gender_word`` (the gender words inside the vocal
phrases) and ``noun``. ``drums``/``maracas`` are keyed by booleans; ``False`` has no words.
"""

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, slots: dict[str, str | None]) -> str:
    """Fill a template; drop ``[...]`` segments that contain an empty slot."""

    def seg(match: re.Match) -> str:
        body = match.group(1)
        names = _SLOT.findall(body)
        if any(not slots.get(n) for n in names):
            return ""
        return _SLOT.sub(lambda m: slots[m.group(1)] or "", body)

    text = re.sub(r"\[([^\[\]]*)\]", seg, template)
    text = _SLOT.sub(lambda m: slots.get(m.group(1)) or "", text)
    return _tidy(text)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"([,;:])(?=[,.;:])", "", text)
    text = re.sub(r"\.\s*\.", ".", text)
    text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)
    text = re.sub(r"\b([Aa])n (?=(?:uni|one|Eur)\w*)", r"\1 ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    if text and text[-1] not in ".!?":
        text += "."
    return text


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(attrs: ClipAttributes, rng: np.random.Generator, split: str = "train", words: str | None = None) -> str:
    """One caption of a clip with these attributes, in the phrasing of `split`.

    `words` takes the concept words (synonyms) from another split than the templates, e.g.
    held-out templates with training words, to tell the two kinds of novelty apart.
    """
    words = split if words is None else words
    for name, value in (("split", split), ("words", words)):
        if value not in SPLITS:
            raise ValueError(f"{name} must be one of {SPLITS}, got {value!r}")
    w = _W[words]
    template = _pick(rng, TEMPLATES[split])
    keep = {k: rng.random() >= p for k, p in OMIT.items()}
    slots: dict[str, str | None] = {
        "lead": _pick(rng, w["lead"][attrs.lead]),
        "tempo": _pick(rng, w["tempo"][attrs.tempo]) if keep["tempo"] else None,
        "mood": _pick(rng, w["mood"][attrs.mood]) if keep["mood"] else None,
        "genre": _pick(rng, w["genre"][attrs.genre]) if keep["genre"] else None,
        "noun": _pick(rng, w["noun"]),
        "vocal": None,
        "perc": None,
        "inst": None,
        "extra": _pick(rng, EXTRAS[split]) if rng.random() < 0.3 else None,
    }
    drums = _pick(rng, w["drums"][True]) if attrs.drums else None
    maracas = _pick(rng, w["maracas"][True]) if attrs.maracas else None
    if keep["perc"] and (drums or maracas):
        slots["perc"] = " and ".join(p for p in (drums, maracas) if p)
    if attrs.vocal == "none":
        if rng.random() < 0.5:
            slots["inst"] = _pick(rng, w["instrumental"])
    else:
        gw = _pick(rng, w["vocal"][attrs.vocal])
        pattern = _pick(rng, w["vocal_style"][attrs.vocal_style])
        slots["vocal"] = pattern.format(adj=_GENDER_ADJ[words][attrs.vocal][gw],
                                        noun=_GENDER_NOUN[words][attrs.vocal][gw])
    text = _fill(template, slots)
    if attrs.vocal == "none" and slots["inst"] and slots["inst"] not in text:
        text = f"{text} {slots['inst']}"
    if slots["perc"] and slots["perc"] not in text:
        text = f"{text} {_tidy('There are ' + slots['perc'] + '.')}"
    if slots["vocal"] and slots["vocal"].split()[-1] not in text:
        text = f"{text} {_tidy('It features ' + slots['vocal'] + '.')}"
    return text
