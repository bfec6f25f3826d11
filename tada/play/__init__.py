"""The steering playground (``tada play``): type a prompt, pick concepts, drag α, hear the change.

:mod:`.engine` holds the model, the steering vectors on disk, the clip cache and the rendering of
α stops; :mod:`.sidecar` turns a saved clip back into the batch that made it (``tada steer
--from-sidecar``); :mod:`.server` is the FastAPI app and its page (``static/``), which plays the
stops through the listening study's crossfade player.
"""
