"""Text Embeddings: condition on e(neutral) + α·(e(pos) − e(neg)).

e(p) are the encoder states of prompt p, all three prompts padded to the same token count (the
generation's ``text_length``, the triple PCI uses). The layers of the variant (all
cross-attention layers, or the functional ones for ``textemb_localized``) read the combination;
the others read e(neutral). The edit adds α·(e(pos) − e(neg)) to the states each layer
receives (:class:`~tada.models.baseline_interventions.AddToCondition`), so a row with α = 0 is
plain generation of its neutral prompt, bit for bit.
"""

from __future__ import annotations

from typing import Any, Sequence

from tada.models.baseline_interventions import AddToCondition

from .base import SweepRow
from .baseline_variant import BaselineVariant, difference


class TextEmbeddingsVariant(BaselineVariant):
    """Text Embeddings on all cross-attention layers or on a layer set."""

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        found = self.directional_encoders(model, rows)
        if found is None:
            return []
        alphas, pos, neg = found
        return [AddToCondition(self.layers, lambda m: difference(pos(m), neg(m)), alphas)]
