"""Counterfactual caption pairs for activation patching.

From MusicCaps-format captions, keep those that mention a localization concept (a keyword, whole
word, case-insensitive) and none of its exclude keywords, then rewrite them word for word with the
concept's lexicon. The original caption is the *target* (has the concept), the rewrite the
*source*. Every caption that is not kept is counted under exactly one drop reason.

Whole word: a term matches when it is not preceded or followed by a letter, digit or underscore,
and not glued to one by an apostrophe. So ``man`` matches "man" and "Man," but not "manly",
"woman" or "man's"; ``violin`` does not match "Violinist" or "violins"; hyphens separate words
("fast-paced" contains ``fast``). Longer lexicon entries win ("slow-paced" before "slow") and the
text is rewritten in a single pass, so replacements never chain.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from tada.io import write_text
from tada.prompts.concepts import LocalizationConcept

MUSICCAPS_COLUMNS = (
    "ytid",
    "start_s",
    "end_s",
    "audioset_positive_labels",
    "aspect_list",
    "caption",
    "author_id",
    "is_balanced_subset",
    "is_audioset_eval",
)
REQUIRED_COLUMNS = ("ytid", "caption")
PAIR_COLUMNS = ("concept", "pair_id", "ytid", "target", "source", "n_replacements")
DROP_REASONS = (
    "no_keyword",
    "has_excluded_keyword",
    "identical_rewrite",
    "keyword_not_rewritten",
    "over_max",
)

_APOSTROPHES = "'\u2019"
_LEFT = rf"(?<!\w)(?<!\w[{_APOSTROPHES}])"
_RIGHT = rf"(?!\w)(?![{_APOSTROPHES}]\w)"


@lru_cache(maxsize=256)
def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted({t.lower() for t in terms}, key=lambda t: (-len(t), t))
    alternation = "|".join(re.escape(t) for t in ordered)
    return re.compile(f"{_LEFT}(?:{alternation}){_RIGHT}", re.IGNORECASE)


def find_keywords(text: str, keywords: Iterable[str]) -> list[str]:
    """The keywords (lowercase, in order of occurrence) that occur in ``text`` as whole words."""
    terms = tuple(keywords)
    if not terms or not text:
        return []
    return [m.group(0).lower() for m in _pattern(terms).finditer(text)]


def match_case(original: str, replacement: str) -> str:
    """Give ``replacement`` the case pattern of ``original``: UPPER, Capitalised or as written."""
    letters = [c for c in original if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def rewrite_caption(text: str, replacements: Mapping[str, str]) -> tuple[str, int]:
    """Replace whole words by the lexicon, keeping case; returns (rewritten, n_replacements)."""
    if not replacements or not text:
        return text, 0
    lexicon = {k.lower(): v for k, v in replacements.items()}
    count = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        word = match.group(0)
        return match_case(word, lexicon[word.lower()])

    rewritten = _pattern(tuple(lexicon)).sub(substitute, text)
    return rewritten, count


def _source_name(df: pd.DataFrame, default: str = "captions_df") -> str:
    return str(df.attrs.get("source", default))


def check_columns(df: pd.DataFrame, required: Iterable[str], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column '{missing[0]}' (required: {', '.join(required)}; "
            f"found: {', '.join(map(str, df.columns))})"
        )


def read_captions(path: str | Path) -> pd.DataFrame:
    """Read a MusicCaps-format CSV; only ``ytid`` and ``caption`` are required.

    ``ytid`` and ``caption`` are read as strings (a blank caption becomes ""); the file path is
    kept in ``df.attrs["source"]`` for later messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    header = pd.read_csv(path, nrows=0)
    check_columns(header, REQUIRED_COLUMNS, str(path))
    df = pd.read_csv(path, dtype={"ytid": str, "caption": str})
    df["caption"] = df["caption"].fillna("")
    df.attrs["source"] = str(path)
    return df


def _selection_key(seed: int, concept_id: str, ytid: str, caption: str, position: int) -> tuple:
    digest = hashlib.sha256(f"{seed}\0{concept_id}\0{ytid}\0{caption}".encode("utf-8")).hexdigest()
    return digest, position


def build_pairs(
    captions_df: pd.DataFrame,
    concept: LocalizationConcept,
    max_pairs: int | None = 256,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Filter and rewrite captions into counterfactual pairs for one localization concept.

    Checks, in order (the first that fails is the drop reason): the caption has a keyword
    ("no_keyword"; blank captions too), it has no exclude keyword ("has_excluded_keyword"), the
    lexicon changes it ("identical_rewrite"), the rewrite has none of the concept's keywords left
    ("keyword_not_rewritten"). If more than ``max_pairs`` remain, a seeded subsample is kept
    ("over_max" counts the rest): captions are ranked by a SHA-256 hash of (seed, concept,
    ytid, caption), so the choice does not depend on row order or library versions, and a larger
    ``max_pairs`` keeps a superset. Kept pairs stay in input order; ``pair_id`` is
    ``{concept}_{k:04d}``.

    Returns ``(pairs_df, report)``; ``pairs_df`` has columns :data:`PAIR_COLUMNS`, ``report`` is
    ``{"concept", "total", "kept", "dropped": {reason: count}, "max_pairs", "seed"}`` with
    ``total == kept + sum(dropped.values())``.
    """
    if not isinstance(concept, LocalizationConcept):
        raise TypeError(f"concept must be a LocalizationConcept, got {type(concept).__name__}")
    if max_pairs is not None and (not isinstance(max_pairs, int) or max_pairs < 0):
        raise ValueError(f"max_pairs must be a non-negative integer or None, got {max_pairs!r}")
    check_columns(captions_df, REQUIRED_COLUMNS, _source_name(captions_df))

    dropped = {reason: 0 for reason in DROP_REASONS}
    candidates: list[tuple[int, str, str, str, int]] = []
    ytids = captions_df["ytid"].tolist()
    captions = captions_df["caption"].tolist()
    for position, (ytid, caption) in enumerate(zip(ytids, captions)):
        text = caption if isinstance(caption, str) else ""
        if not find_keywords(text, concept.keywords):
            dropped["no_keyword"] += 1
            continue
        if find_keywords(text, concept.exclude_keywords):
            dropped["has_excluded_keyword"] += 1
            continue
        rewritten, n_replacements = rewrite_caption(text, concept.replacements)
        if rewritten == text:
            dropped["identical_rewrite"] += 1
            continue
        if find_keywords(rewritten, concept.keywords):
            dropped["keyword_not_rewritten"] += 1
            continue
        candidates.append((position, str(ytid), text, rewritten, n_replacements))

    if max_pairs is not None and len(candidates) > max_pairs:
        ranked = sorted(
            candidates, key=lambda c: _selection_key(seed, concept.id, c[1], c[2], c[0])
        )
        chosen = sorted(ranked[:max_pairs], key=lambda c: c[0])
        dropped["over_max"] = len(candidates) - max_pairs
    else:
        chosen = candidates

    pairs = pd.DataFrame(
        {
            "concept": [concept.id] * len(chosen),
            "pair_id": [f"{concept.id}_{k:04d}" for k in range(len(chosen))],
            "ytid": [c[1] for c in chosen],
            "target": [c[2] for c in chosen],
            "source": [c[3] for c in chosen],
            "n_replacements": pd.Series([c[4] for c in chosen], dtype="int64"),
        },
        columns=list(PAIR_COLUMNS),
    )
    report = {
        "concept": concept.id,
        "total": len(captions),
        "kept": len(chosen),
        "dropped": dropped,
        "max_pairs": max_pairs,
        "seed": seed,
    }
    return pairs, report


def write_pairs(
    path_csv: str | Path, path_report_json: str | Path, pairs_df: pd.DataFrame, report: dict
) -> None:
    """Write the pairs CSV and the report JSON, each atomically (temp file + ``os.replace``)."""
    check_columns(pairs_df, PAIR_COLUMNS, "pairs_df")
    csv_text = pairs_df.loc[:, list(PAIR_COLUMNS)].to_csv(index=False, lineterminator="\n")
    json_text = json.dumps(report, indent=2) + "\n"
    write_text(path_csv, csv_text)
    write_text(path_report_json, json_text)


def read_pairs(path_csv: str | Path) -> pd.DataFrame:
    """Read a pairs CSV written by :func:`write_pairs`."""
    df = pd.read_csv(
        path_csv,
        dtype={"concept": str, "pair_id": str, "ytid": str, "target": str, "source": str},
        keep_default_na=False,
    )
    check_columns(df, PAIR_COLUMNS, str(path_csv))
    df["n_replacements"] = df["n_replacements"].astype("int64")
    return df


def common_text_length(model_token_count: Callable[[str], int], a: str, b: str) -> int:
    """The token count both prompts are padded to: the larger of the two counts."""
    counts = []
    for prompt in (a, b):
        count = model_token_count(prompt)
        try:
            value = operator.index(count)
        except TypeError:
            value = -1
        if isinstance(count, bool) or value < 0:
            raise ValueError(
                f"token count for {prompt!r} must be a non-negative int, got {count!r}"
            )
        counts.append(value)
    return max(counts)
