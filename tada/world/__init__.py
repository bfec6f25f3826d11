"""The synthetic music world: clips with ground-truth concepts.

The lowest layer of the evaluation stack: nothing here imports the scorers, models or steering.

* :mod:`~tada.world.attributes`: the concept attributes of a clip and their sampling;
* :mod:`~tada.world.compose`: MIDI composition of a clip (note events per concept);
* :mod:`~tada.world.effects`: the voice formants, consonant bursts and spectral tilt of the mix;
* :mod:`~tada.world.render`: FluidSynth rendering;
* :mod:`~tada.world.captions`: MusicCaps-style captions (train and held-out phrasings);
* :mod:`~tada.world.features`: the log-mel representation and its inversion;
* :mod:`~tada.world.descriptors`: acoustic descriptors of clips (onset rate, centroid, register,
  tempo periodicity) and the descriptor vector the classifiers read;
* :mod:`~tada.world.dataset`: rendered datasets and the bundled caption CSV;
* :mod:`~tada.world.classifiers`: concept classifiers trained on rendered ground truth.
"""

from tada.world.attributes import CONCEPT_VALUES, ClipAttributes, sample_attributes

__all__ = ["CONCEPT_VALUES", "ClipAttributes", "sample_attributes"]
