"""MuQ-MuLan scorer (optional): needs the ``muq`` package, which does not import in this
environment (its torchaudio dependency fails with torch 2.13 CPU)."""

from __future__ import annotations

import numpy as np

from .base import Clips, Scorer


class MuQScorer(Scorer):
    """Joint music-text embedding similarity of MuQ-MuLan (``OpenMuQ/MuQ-MuLan-large``)."""

    kind = "muq"

    def __init__(self, path: str | None = None, device: str = "cpu", batch_size: int = 8):
        try:
            from muq import MuQMuLan  # type: ignore[import-not-found]
        except Exception as exc:  # ImportError, or torchaudio failing inside muq
            raise ImportError(
                "the 'muq' scorer needs the optional `muq` package (MuQ-MuLan) and a working torchaudio; "
                "neither imports with torch 2.13 CPU here. Use kind 'clap' (ClapScorer) or 'world' instead, "
                f"or install muq in an environment where it imports. Import error: {exc}") from exc
        import torch

        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = MuQMuLan.from_pretrained(path or "OpenMuQ/MuQ-MuLan-large").to(self.device).eval()
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
