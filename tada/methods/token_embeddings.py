"""Token Embeddings: add a direction to the encoder states at the concept token only.

Direction. For the concept token w (``concept_token`` of the concept table: "instrument" for the
instruments, "vocal" for the vocal axes, "song" for tempo, mood and the genres, ...) and every
base prompt b, ``s(p)`` = the encoder states at w's token(s) in prompt p (mean over the
occurrences of w; a word may span several tokens, kept apart: shape (pieces, width));
``d = mean_b [ s(pos(b)) − s(neg(b)) ]``, pos / neg the concept's templates filled with b.
A prompt without w gets the carrier (config ``baselines.tokenemb.carrier``, default
``"{prompt}, {token}"``) first; with the carrier null that is an error naming the prompt and w.

Application. At every occurrence of w in the test (neutral) prompt, the variant's layers (all,
or the functional ones for ``tokenemb_localized``) read ``c + α·d`` at w's positions; every other
position and layer is unchanged. A test prompt without w is an error naming the prompt and the
token, unless the carrier is set: then the rows with α ≠ 0 of that prompt read the carrier
prompt's states plus α·d at w's positions in it (so as α → 0 those layers tend to the carrier
prompt, not to the neutral one; every such prompt is logged and listed by the variant's
``carried``). Rows with α = 0 are plain generation. On AudioLDM2 the direction lives in the T5
stream and only the layers reading it are edited (the GPT-2 stream has no token positions).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch

from tada.models.baseline_interventions import AddToCondition

from .base import SweepRow
from .baseline_variant import BaselineVariant, encoder, text_streams

log = logging.getLogger(__name__)
DEFAULT_CARRIER = "{prompt}, {token}"
#: the stream that carries token positions on backends with several text streams
TOKEN_STREAM = "t5"


def with_token(model: Any, prompt: str, token: str, carrier: str | None) -> tuple[str, bool]:
    """`prompt` itself if it holds `token`, else the carrier prompt (True); error without carrier."""
    if model.token_positions(prompt, token):
        return prompt, False
    if carrier is None:
        raise ValueError(f"the prompt {prompt!r} has no token {token!r} (concept_token) and "
                         "baselines.tokenemb.carrier is null")
    out = carrier.format(prompt=prompt, token=token)
    if not model.token_positions(out, token):
        raise ValueError(f"the carrier {carrier!r} does not put the token {token!r} into {prompt!r}")
    return out, True


def _token_states(states: Any) -> torch.Tensor:
    states = text_streams(states)
    if isinstance(states, Mapping):
        if TOKEN_STREAM not in states:
            raise ValueError(f"no '{TOKEN_STREAM}' stream among {sorted(states)}: no token positions")
        return states[TOKEN_STREAM]
    return states


def token_direction(model: Any, concept: Any, bases: Sequence[str], carrier: str | None = DEFAULT_CARRIER,
                    text_length: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """(d of shape (pieces, width), info) for `concept` (a SteeringConcept) over the base prompts."""
    token = concept.concept_token
    if not bases:
        raise ValueError("the token direction needs at least one base prompt")
    pairs, carried = [], []
    for base in bases:
        pair = []
        for prompt in (concept.positive(base), concept.negative(base)):
            text, used = with_token(model, prompt, token, carrier)
            pair.append(text)
            if used:
                carried.append(prompt)
        pairs.append(pair)
    texts = [p for pair in pairs for p in pair]
    if text_length is None and not getattr(model, "text_length", None):
        text_length = max(int(model.token_count(t)) for t in texts)
    with torch.inference_mode():
        states = _token_states(model.encode_prompts(texts, text_length=text_length)).float().cpu()
    per_prompt = []
    for i, text in enumerate(texts):
        spans = [s for s in model.token_positions(text, token) if max(s) < states.shape[1]]
        if not spans:
            raise ValueError(f"the token {token!r} of {text!r} lies beyond the {states.shape[1]} encoder states")
        per_prompt.append(torch.stack([states[i, s] for s in spans]).mean(0))
    pieces = {p.shape[0] for p in per_prompt}
    if len(pieces) != 1:
        raise ValueError(f"the token {token!r} is split into different numbers of pieces: {sorted(pieces)}")
    diffs = torch.stack([per_prompt[2 * j] - per_prompt[2 * j + 1] for j in range(len(pairs))])
    info = {"token": token, "pieces": int(diffs.shape[1]), "bases": len(pairs), "carrier": carrier,
            "carried": carried, "direction_norm": float(diffs.mean(0).norm())}
    return diffs.mean(0), info


class TokenEmbeddingsVariant(BaselineVariant):
    """Token Embeddings on all cross-attention layers or on a layer set."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.direction = self.artifact.tensors["direction"].float()
        self.token = str(self.artifact.info["token"])
        self.carrier = self.hyperparameters.get("carrier", DEFAULT_CARRIER)
        self.carried: set[str] = set()

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        alphas = [float(r.alpha) for r in rows]
        if not any(alphas):
            return []
        self.check_model(model)
        texts, replaced = [], []
        for i, row in enumerate(rows):
            text, used = with_token(model, row.neutral, self.token, self.carrier) if row.alpha else (row.neutral, False)
            texts.append(text)
            if used:
                replaced.append(i)
                if row.neutral not in self.carried:
                    self.carried.add(row.neutral)
                    log.warning("%s: %r has no token %r; its steered rows use the carrier prompt %r",
                                self.name, row.neutral, self.token, text)
        spans = [model.token_positions(t, self.token) if a else [] for t, a in zip(texts, alphas)]
        direction, layers = self.direction, self.layers

        def delta(m: Any) -> Any:
            states = m.encode_prompts([texts[0]], text_length=getattr(m, "run_text_length", None))
            ref = _token_states(states)
            out = torch.zeros(len(rows), *ref.shape[1:], dtype=ref.dtype, device=ref.device)
            for i, row_spans in enumerate(spans):
                for span in row_spans:
                    if max(span) < out.shape[1]:
                        out[i, span] += direction.to(out.device, out.dtype)
            return {TOKEN_STREAM: out} if isinstance(text_streams(states), Mapping) else out

        replace = encoder(texts) if replaced else None
        return [AddToCondition(layers, delta, alphas, replace=(lambda m: text_streams(replace(m))) if replace else None,
                               replace_rows=replaced)]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(token=self.token, carrier=self.carrier)
        return out
