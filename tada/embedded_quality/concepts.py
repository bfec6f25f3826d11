"""The concepts of the embedded model's quality bar and how generations are read for them.

* :class:`QualityConcept`, :data:`QUALITY_CONCEPTS`: the attribute change that adds a concept
  and the classifier head that reads it back;
* :func:`concept_prompts`: caption pairs with and without a concept (same template, other
  words alike) from a caption split;
* :func:`concept_score`, :func:`calibrated_threshold`: the classifiers' reading of generations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..world.attributes import LEADS, sample_attributes
from ..world.captions import caption

CLASSIFIER_TARGET = 0.85
FLUX_TARGET = 1.5
BOUNDARY_TARGET = 1.2
SCORER_TARGET = 0.80


@dataclass(frozen=True)
class QualityConcept:
    """A concept of the quality bar: the attribute change that adds it and how to read it back.

    `head` is a classifier head: a concept of CONCEPT_VALUES (read as the probability of `pos`
    against `neg` among that head's classes) or ``presence:<source>``.
    """

    name: str
    attribute: str
    pos: Any
    neg: Any  # a value, or None for "any other value"
    head: str


QUALITY_CONCEPTS: tuple[QualityConcept, ...] = (
    QualityConcept("piano", "lead", "piano", None, "presence:piano"),
    QualityConcept("violin", "lead", "violin", None, "presence:violin"),
    QualityConcept("guitar_type", "lead", "acoustic_guitar", "electric_guitar", "lead"),
    QualityConcept("mood", "mood", "happy", "sad", "mood"),
    QualityConcept("tempo", "tempo", "fast", "slow", "tempo"),
    QualityConcept("vocal_gender", "vocal", "female", "male", "vocal"),
    QualityConcept("vocal_style", "vocal_style", "rap", "sung", "vocal_style"),
    QualityConcept("classical_genre", "genre", "classical", "electronic", "genre"),
    QualityConcept("jazz_genre", "genre", "jazz", "rock", "genre"),
    QualityConcept("drums", "drums", True, False, "presence:drums"),
    QualityConcept("maracas", "maracas", True, False, "presence:maracas"),
)


def concept_prompts(concept: QualityConcept, n_pairs: int, seed: int, words: str | None = None,
                    split: str = "heldout") -> tuple[list[str], list[str], list[Any], list[Any]]:
    """`n_pairs` captions of `split` with and without the concept (same template and other words).

    `words="train"` keeps the held-out templates but takes the concept words from training.

    Returns (positive prompts, negative prompts, positive attributes, negative attributes).
    """
    rng = np.random.default_rng(seed)
    pos_p, neg_p, pos_a, neg_a = [], [], [], []
    while len(pos_p) < n_pairs:
        base = sample_attributes(rng)
        if concept.attribute in ("vocal", "vocal_style") and base.vocal == "none":
            base = base.replace(vocal=("female", "male")[int(rng.integers(2))])
        neg_value = concept.neg
        if neg_value is None:
            others = [v for v in LEADS if v != concept.pos]
            neg_value = others[int(rng.integers(len(others)))]
        a_pos = base.replace(**{concept.attribute: concept.pos})
        a_neg = base.replace(**{concept.attribute: neg_value})
        cap_seed = int(rng.integers(2**31))
        c_pos = caption(a_pos, np.random.default_rng(cap_seed), split=split, words=words)
        c_neg = caption(a_neg, np.random.default_rng(cap_seed), split=split, words=words)
        if concept.attribute in ("drums", "maracas"):
            if c_pos == c_neg:
                continue
        elif c_pos == c_neg:  # the caption left the concept out
            continue
        pos_p.append(c_pos)
        neg_p.append(c_neg)
        pos_a.append(a_pos)
        neg_a.append(a_neg)
    return pos_p, neg_p, pos_a, neg_a


def _separation(classifiers: Any, mels: np.ndarray, concept: QualityConcept, n_pos: int,
                threshold: float = 0.5) -> tuple[float, float, float]:
    """(accuracy at `threshold` (the classifier's own: 0.5), paired accuracy, AUC) of generations
    whose first `n_pos` rows were prompted with the concept and the rest (paired in order) without."""
    score = concept_score(classifiers, classifiers.features(mels), concept)
    truth = np.r_[np.ones(n_pos), np.zeros(len(score) - n_pos)]
    acc = float(((score > threshold) == truth).mean())
    paired = float(np.mean(score[:n_pos] > score[n_pos:]))
    # Mann-Whitney AUC: chance that a generation with the concept outscores one without it
    sp, sn = score[:n_pos][:, None], score[n_pos:][None, :]
    auc = float(np.mean((sp > sn) + 0.5 * (sp == sn)))
    return acc, paired, auc


def calibrated_threshold(classifiers: Any, mels: np.ndarray, concept: QualityConcept, n_pos: int) -> float:
    """A decision threshold for generated clips: the midpoint, in log-odds, of the median score of
    the first `n_pos` generations (prompted with the concept) and of the rest (without).

    The classifiers are fitted on rendered clips, and generated clips sit off that distribution,
    so a concept can be separated well (high AUC) and still fall on one side of 0.5. Fitting the
    threshold on generations from *training* captions (other prompts and seeds than the held-out
    test) measures separation without that shift; it is reported beside, not instead of, the bar.
    """
    score = np.clip(concept_score(classifiers, classifiers.features(mels), concept), 1e-9, 1 - 1e-9)
    logit = np.log(score) - np.log1p(-score)
    mid = 0.5 * (np.median(logit[:n_pos]) + np.median(logit[n_pos:]))
    return float(1.0 / (1.0 + np.exp(-mid)))


def concept_score(classifiers: Any, feats: np.ndarray, concept: QualityConcept) -> np.ndarray:
    """Score per clip that is > 0.5 when the classifiers read the concept as present."""
    if concept.head.startswith("presence:"):
        return classifiers.presence(feats, concept.head.split(":", 1)[1])
    classes = list(classifiers.classes(concept.head))
    proba = classifiers.predict_proba(feats, concept.head)
    p_pos = proba[:, classes.index(concept.pos)]
    if concept.neg is None:
        return p_pos
    p_neg = proba[:, classes.index(concept.neg)]
    return p_pos / np.maximum(p_pos + p_neg, 1e-12)
