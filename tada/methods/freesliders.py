"""FreeSliders: per step, velocity = CFG velocity of the neutral prompt + α·(v(pos) − v(neg)).

v(p) is the conditional prediction for prompt p. The positive and negative passes of the rows
with α ≠ 0 run once per step from ``start_step`` on (hyper-parameter of the artifact, config
``baselines.freesliders.start_step``), as one extra denoiser call holding both; in them the
variant's layers (all, or the functional ones for ``freesliders_localized``) read e(pos) /
e(neg) and the other layers the neutral states
(:class:`~tada.models.baseline_interventions.SliderVelocity`). With a linear CFG the
combination is exact; ACE-Step 1.5 guides with APG, whose projection then also acts on the
added term.
"""

from __future__ import annotations

from typing import Any, Sequence

from tada.models.baseline_interventions import SliderVelocity

from .base import SweepRow
from .baseline_variant import BaselineVariant, text_streams


class FreeSlidersVariant(BaselineVariant):
    """FreeSliders on all cross-attention layers or on a layer set."""

    def interventions(self, model: Any, rows: Sequence[SweepRow], steps: int) -> list[Any]:
        found = self.directional_encoders(model, rows)
        if found is None:
            return []
        alphas, pos, neg = found
        start = int(self.hyperparameters.get("start_step", 0))
        return [SliderVelocity(self.layers, lambda m: text_streams(pos(m)), lambda m: text_streams(neg(m)),
                               alphas, start_step=start)]
