"""Acoustic descriptors of clips (onset rate, spectral centroid, pitch register, tempo
periodicity, the classifier descriptor vector), as external scores of generations.

The formulas live in :mod:`tada.world.descriptors`, one layer down, because the world's concept
classifiers are built on them; this module re-exports them so that the scorers and the
evaluation read them from the scorer layer.
"""

from __future__ import annotations

from tada.world.descriptors import (MELODIC_BAND, MIN_ONSET_DB, SCALAR_NAMES, SILENCE_DB, as_mel,
                                    descriptor_names, descriptor_vector, onset_envelope, onset_frames,
                                    onset_rate, peak_pick, pitch_register, spectral_centroid,
                                    tempo_periodicity)

__all__ = ["MELODIC_BAND", "MIN_ONSET_DB", "SCALAR_NAMES", "SILENCE_DB", "as_mel", "descriptor_names",
           "descriptor_vector", "onset_envelope", "onset_frames", "onset_rate", "peak_pick",
           "pitch_register", "spectral_centroid", "tempo_periodicity"]
