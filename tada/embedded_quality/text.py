"""What the frozen text encoder alone makes of the quality bar's held-out words.

* :func:`text_separability`: each held-out word against the centroids of the training words;
* :func:`text_readout`: a reader of the per-token states, fitted on training captions the way one
  cross-attention head reads them, scored on held-out captions.

Both bound what the held-out-word accuracy of the bar can show about the audio model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..world.attributes import LEADS
from ..world.captions import CONCEPT_WORDS
from .concepts import QUALITY_CONCEPTS, QualityConcept, concept_prompts


def _contrast_classes(concept: QualityConcept) -> tuple[str, list[Any]]:
    """(word table, values) a concept's held-out words are told apart from (see
    :func:`text_separability`)."""
    if concept.attribute == "vocal":
        return "gender_word", [concept.pos, concept.neg]
    if concept.neg is None:
        return concept.attribute, list(LEADS)
    if concept.attribute in ("drums", "maracas"):
        return concept.attribute, [True]
    return concept.attribute, [concept.pos, concept.neg]


def text_separability(encoder: Any = None, concepts: Sequence[QualityConcept] = QUALITY_CONCEPTS
                      ) -> dict[str, dict[str, Any]]:
    """How far the frozen text encoder alone relates each concept's held-out words to the
    training words of the same value.

    Every held-out word (or phrase) of a concept's values is embedded alone with the encoder's
    sentence embedding and assigned to the nearest centroid of the training words' embeddings,
    among the concept's contrast values (the other value, or every lead for an instrument, whose
    own words are then the ones scored); for drums and maracas, whose absence has no words, among
    every value of the training vocabulary. ``recognised`` is the fraction assigned to its own
    value, ``margin`` the mean cosine to its own centroid minus the nearest other one. A word the
    encoder places nearer the opposite value gives a model trained on the training words nothing
    to map it by: this bounds what the held-out-word accuracy of the bar can show about the
    audio model.
    """
    import torch
    import torch.nn.functional as F

    if encoder is None:
        from ..embedded.model import TextEncoder  # torch and diffusers: imported when needed

        encoder = TextEncoder()
    train, held = CONCEPT_WORDS["train"], CONCEPT_WORDS["heldout"]
    vocabulary = [(a, v) for a in ("lead", "tempo", "mood", "genre", "drums", "maracas", "gender_word")
                  for v, words in train[a].items() if words]
    vocabulary += [("vocal_style", v) for v in ("sung", "rap")]
    centroid = {key: F.normalize(encoder.sentence_embedding(list(train[key[0]][key[1]])).mean(0), dim=0)
                for key in vocabulary}
    out: dict[str, dict[str, Any]] = {}
    for concept in concepts:
        table, values = _contrast_classes(concept)
        if values == [True]:
            candidates = [k for k in vocabulary if k != (table, True)] + [(table, True)]
        else:
            candidates = [(table, v) for v in values]
        words: dict[str, Any] = {}
        for value in values if concept.neg is not None else [concept.pos]:
            phrases = list(held[table][value])
            emb = encoder.sentence_embedding(phrases)
            sims = torch.stack([emb @ centroid[k] for k in candidates], dim=1)
            own = candidates.index((table, value))
            for phrase, row in zip(phrases, sims):
                best = candidates[int(row.argmax())]
                other = torch.cat([row[:own], row[own + 1:]]).max()
                words[phrase] = {"value": str(value), "nearest": f"{best[0]}:{best[1]}" if best[0] != table
                                 else str(best[1]), "recognised": best == (table, value),
                                 "margin": float(row[own] - other)}
        out[concept.name] = {"recognised": float(np.mean([w["recognised"] for w in words.values()])),
                             "margin": float(np.mean([w["margin"] for w in words.values()])),
                             "words": words}
    return out


def text_readout(encoder: Any = None, concepts: Sequence[QualityConcept] = QUALITY_CONCEPTS,
                 n_train: int = 300, n_test: int = 100, seed: int = 2024, iterations: int = 400
                 ) -> dict[str, dict[str, float]]:
    """How well the frozen encoder's per-token states, read the way one cross-attention head can
    read them, tell a concept's held-out captions apart when the reader only saw training captions.

    For each concept a reader is fitted on `n_train` pairs of training captions with and without
    the concept (:func:`concept_prompts` with ``split="train"``): two linear token scores, pooled
    over the real tokens of a caption with log-sum-exp (a soft "is some token like this present",
    which is what attention over the text does), and their difference is the logit. It is then
    scored on `n_test` pairs of held-out captions (``heldout``: unseen templates and words) and of
    held-out templates with training words (``train_words``).

    A model conditioned on this encoder and trained on training captions only has this access to
    the concept and more capacity, so the numbers are not a strict bound; but a concept the reader
    cannot tell apart on held-out words is one whose words the encoder does not relate to the
    training words in any direction a linear key sees. Written by hand because the pooled-token
    reader is not a model the usual libraries fit; full-batch Adam from zeros is deterministic.
    """
    import torch
    import torch.nn.functional as F

    if encoder is None:
        from ..embedded.model import TextEncoder  # torch and diffusers: imported when needed

        encoder = TextEncoder()

    def logits(w: torch.Tensor, b: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = (h @ w + b).masked_fill(~mask[..., None], float("-inf")).logsumexp(1)
        return s[:, 0] - s[:, 1]

    out: dict[str, dict[str, float]] = {}
    for k, concept in enumerate(concepts):
        tp, tn, _, _ = concept_prompts(concept, n_train, seed + 100 * k + 70, split="train")
        h, mask = encoder.token_states(tp + tn)
        y = torch.cat([torch.ones(len(tp)), torch.zeros(len(tn))])
        w = torch.zeros(h.shape[-1], 2, requires_grad=True)
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=1e-2)
        for _ in range(iterations):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(logits(w, b, h, mask), y) + 1e-3 * w.pow(2).sum()
            loss.backward()
            opt.step()
        entry = {}
        for key, words in (("heldout", None), ("train_words", "train")):
            hp, hn, _, _ = concept_prompts(concept, n_test, seed + 100 * k + 80, words=words)
            ht, mt = encoder.token_states(hp + hn)
            with torch.no_grad():
                pred = logits(w, b, ht, mt) > 0
            truth = torch.arange(len(hp) + len(hn)) < len(hp)
            entry[key] = round(float((pred == truth).float().mean()), 4)
        out[concept.name] = entry
    return out
