"""Prompt lists and contrastive (+ / −) prompts for the steering axes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from tada.prompts.concepts import SteeringConcept

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "prompts"
BASE_PROMPTS_PATH = DATA_DIR / "base_prompts.txt"
EVAL_PROMPTS_PATH = DATA_DIR / "eval_prompts.txt"

CONTRASTIVE_COLUMNS = ("concept", "base", "positive", "negative")


class PromptFileError(ValueError):
    """A problem in a prompt list; the message names the file and line."""


def _normalise(prompt: str) -> str:
    return " ".join(prompt.split()).casefold()


def load_prompt_list(path: str | Path) -> list[str]:
    """Read one prompt per line: stripped, blank lines and ``#`` comment lines skipped.

    Two prompts that differ only in case or spacing are duplicates; a duplicate is an error
    naming the file and both line numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt list not found: {path}")
    prompts: list[str] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        prompt = raw.strip()
        if not prompt or prompt.startswith("#"):
            continue
        key = _normalise(prompt)
        if key in first_line:
            raise PromptFileError(
                f"{path}:{number}: duplicate prompt '{prompt}' (first on line {first_line[key]})"
            )
        first_line[key] = number
        prompts.append(prompt)
    if not prompts:
        raise PromptFileError(f"{path}: no prompts")
    return prompts


def contrastive_prompts(concept: SteeringConcept, base_prompts: Sequence[str]) -> pd.DataFrame:
    """One row per base prompt: the base and its + / − variants from the concept's templates."""
    if isinstance(base_prompts, str):
        raise TypeError("base_prompts must be a sequence of prompts, not one string")
    bases = [str(b).strip() for b in base_prompts]
    if not bases:
        raise ValueError(f"no base prompts given for concept '{concept.id}'")
    empty = [i for i, b in enumerate(bases) if not b]
    if empty:
        raise ValueError(f"empty base prompt at position {empty[0]} for concept '{concept.id}'")
    return pd.DataFrame(
        {
            "concept": [concept.id] * len(bases),
            "base": bases,
            "positive": [concept.positive(b) for b in bases],
            "negative": [concept.negative(b) for b in bases],
        },
        columns=list(CONTRASTIVE_COLUMNS),
    )
