"""The embedded text-to-music model: a small rectified-flow transformer over world log-mels,
conditioned on frozen MiniLM token states through cross-attention only, trained in-project on
the synthetic music world (see docs/embedded.md).

* :mod:`tada.embedded.model`: the network, the text encoder, saving/loading, the Euler sampler;
* :mod:`tada.embedded.train`: rendering the training set, resumable training, ``train_from_config``;
* :mod:`tada.embedded.metrics`: mel measurements shared with the quality bar (flux, onset
  rates) and the world classifiers' fitting.

The backend that wraps it is :class:`tada.models.embedded.EmbeddedModel`; the quality bar,
which generates through that backend and scores with the scorers, is :mod:`tada.embedded_quality`
(one layer up: nothing here imports the models or the scorers).
"""

from .model import EmbeddedConfig, EmbeddedTransformer, TextEncoder, euler_sample, load_network, save_network

__all__ = ["EmbeddedConfig", "EmbeddedTransformer", "TextEncoder", "euler_sample", "load_network", "save_network"]
