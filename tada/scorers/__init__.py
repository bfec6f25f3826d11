"""Scorers: similarity between audio clips and texts, one interface (:class:`Scorer`).

``load_scorer(cfg)`` builds one from a config block with ``kind``:

* ``clap``: :class:`~tada.scorers.clap.ClapScorer` on a transformers ``ClapModel`` directory
  (``path``): the world CLAP trained here (``data/embedded_clap``) or the real LAION CLAP;
* ``world``: :class:`~tada.scorers.world.WorldScorer` on the world's concept classifiers
  (``path``, default ``data/embedded_classifiers``);
* ``muq``: MuQ-MuLan (needs the optional ``muq`` package, which does not import here).

Other keys: ``device`` (clap, muq), ``batch_size``; the keys each kind reads, and their defaults,
are the config schema's (``$defs.scorer``, checked by :func:`tada.config.check_block`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..config import check_block
from .base import Clips, Scorer, as_clips

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATHS = {"clap": ROOT / "data" / "embedded_clap", "world": ROOT / "data" / "embedded_classifiers"}

SCORERS: dict[str, str] = {
    "clap": "tada.scorers.clap:ClapScorer",
    "world": "tada.scorers.world:WorldScorer",
    "muq": "tada.scorers.muq:MuQScorer",
}


def _resolve(path: Any, kind: str) -> Path:
    p = Path(path) if path else DEFAULT_PATHS.get(kind, Path("."))
    if not p.is_absolute() and not p.exists() and (ROOT / p).exists():
        p = ROOT / p
    return p


def load_scorer(cfg: Mapping[str, Any] | str, key: str = "scorer") -> Scorer:
    """Build a scorer from a config block (or just its kind)."""
    cfg = {"kind": cfg} if isinstance(cfg, str) else dict(cfg)
    kind = cfg.get("kind")
    if kind not in SCORERS:
        raise ValueError(f"{key}.kind: unknown scorer {kind!r}; choose one of {sorted(SCORERS)}")
    cfg = check_block(cfg, "scorer", key)
    path = _resolve(cfg.get("path"), kind)
    kwargs: dict[str, Any] = {}
    if "batch_size" in cfg:
        kwargs["batch_size"] = int(cfg["batch_size"])
    if kind == "clap":
        from .clap import ClapScorer

        return ClapScorer(path, device=cfg["device"], **kwargs)
    if kind == "world":
        from .world import WorldScorer

        return WorldScorer(path, **kwargs)
    from .muq import MuQScorer

    return MuQScorer(cfg.get("path"), device=cfg["device"], **kwargs)


__all__ = ["Clips", "SCORERS", "Scorer", "as_clips", "load_scorer"]
