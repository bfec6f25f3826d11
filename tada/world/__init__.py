"""The synthetic music world: clips with ground-truth concepts.

* :mod:`~tada.world.attributes`: the concept attributes of a clip and their sampling;
* :mod:`~tada.world.render`: MIDI composition and FluidSynth rendering;
* :mod:`~tada.world.captions`: MusicCaps-style captions (train and held-out phrasings);
* :mod:`~tada.world.features`: the log-mel representation and its inversion;
* :mod:`~tada.world.dataset`: rendered datasets and the bundled caption CSV;
* :mod:`~tada.world.classifiers`: concept classifiers trained on rendered ground truth.
"""

from tada.world.attributes import CONCEPT_VALUES, ClipAttributes, sample_attributes

__all__ = ["CONCEPT_VALUES", "ClipAttributes", "sample_attributes"]
