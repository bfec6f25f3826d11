"""MuQ-MuLan scorer (optional): needs the ``muq`` package (extra ``tada[muq]``), which does not
import in this environment (its torchaudio dependency fails with torch 2.13 CPU), and a local
MuQ-MuLan weights directory (``path``; no hub download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Clips, Scorer

#: how to install the optional dependency (the ``muq`` extra of pyproject.toml)
INSTALL_HINT = 'pip install "tada[muq]"'


class MuQScorer(Scorer):
    """Joint music-text embedding similarity of MuQ-MuLan, loaded from a local directory."""

    kind = "muq"

    def __init__(self, path: str | Path | None = None, device: str = "cpu", batch_size: int = 8):
        try:
            from muq import MuQMuLan  # type: ignore[import-not-found]
        except Exception as exc:  # ImportError, or torchaudio failing inside muq
            raise ImportError(
                f"the 'muq' scorer needs the optional `muq` package (MuQ-MuLan): install the extra with "
                f"`{INSTALL_HINT}` in an environment where muq and its torchaudio import (they do not with "
                f"torch 2.13 CPU here); otherwise use kind 'clap' (ClapScorer) or 'world'. Import error: {exc}"
            ) from exc
        if not path:
            raise ValueError("the 'muq' scorer needs `path`: set `path` to a local MuQ-MuLan directory "
                             "(e.g. a downloaded copy of OpenMuQ/MuQ-MuLan-large); hub ids are not fetched")
        local = Path(path)
        if not local.is_dir():
            raise ValueError(f"the 'muq' scorer's path '{local}' is not a directory: set `path` to a local "
                             "MuQ-MuLan directory (hub ids are not fetched)")
        import torch

        self.path = local
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = MuQMuLan.from_pretrained(str(local)).to(self.device).eval()
        self.sample_rate = 24000

    def _similarity(self, clips: Clips, texts: list[str]) -> np.ndarray:
        import librosa
        import torch

        wavs = [librosa.resample(a, orig_sr=clips.sample_rate, target_sr=self.sample_rate) for a in clips.audio]
        n = min(len(w) for w in wavs)
        with torch.no_grad():
            a = self.model(wavs=torch.tensor(np.stack([w[:n] for w in wavs])).to(self.device))
            t = self.model(texts=texts)
            return self.model.calc_similarity(a, t).cpu().numpy()
