"""The quality bar of the embedded model: generations from held-out captions, read by the world's
concept classifiers and the scorers (see docs/embedded.md).

It sits above :mod:`tada.models` (it generates with :class:`~tada.models.embedded.EmbeddedModel`)
and :mod:`tada.scorers`; the network and its training (:mod:`tada.embedded`) do not import it.

* :mod:`tada.embedded_quality.concepts`: the bar's concepts, caption pairs and their reading;
* :mod:`tada.embedded_quality.text`: what the frozen text encoder alone makes of held-out words;
* :mod:`tada.embedded_quality.bar`: :func:`run_quality`, the figure and the command line
  (``python -m tada.embedded_quality [--fit-classifiers]``).

The mel measurements shared with training (flux, onset rates) and the classifiers' fitting are in
:mod:`tada.embedded.metrics`. ``run_quality`` and ``plot_generated_vs_rendered`` are imported on
first use (the bar imports the models and scorers; the concepts do not).
"""

from __future__ import annotations

import importlib
from typing import Any

from .concepts import (BOUNDARY_TARGET, CLASSIFIER_TARGET, FLUX_TARGET, QUALITY_CONCEPTS, SCORER_TARGET,
                       QualityConcept, calibrated_threshold, concept_prompts, concept_score)
from .text import text_readout, text_separability

_LAZY = {"run_quality": "tada.embedded_quality.bar", "plot_generated_vs_rendered": "tada.embedded_quality.bar"}

__all__ = ["BOUNDARY_TARGET", "CLASSIFIER_TARGET", "FLUX_TARGET", "QUALITY_CONCEPTS", "SCORER_TARGET",
           "QualityConcept", "calibrated_threshold", "concept_prompts", "concept_score",
           "plot_generated_vs_rendered", "run_quality", "text_readout", "text_separability"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tada.embedded_quality' has no attribute {name!r}")
