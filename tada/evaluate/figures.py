"""Evaluation figures: alignment–preservation curves, spectrogram sweep sheets, descriptor scatter.

All are matplotlib (Agg) PNGs written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tada.figures import _pyplot
from tada.io import atomic_path

#: the paper's external checks (appendix G): concept -> descriptor it should move
DESCRIPTOR_FOR = {"tempo": "onset_rate", "mood": "spectral_centroid", "vocal_gender": "pitch_register"}


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)


def plot_curves(per_alpha: pd.DataFrame, cutoffs: pd.DataFrame, path: str | Path, *, scorer: str,
                methods: Sequence[str] | None = None) -> Path:
    """δ (alignment gain of `scorer`) against the preservation distance d, per concept (rows) and
    direction (columns), every method variant overlaid; the dashed line is the cutoff."""
    plt = _pyplot()
    col = f"align_{scorer}"
    concepts = list(dict.fromkeys(per_alpha["concept"]))
    methods = list(methods or dict.fromkeys(per_alpha["method"]))
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(concepts), 2, figsize=(8.5, 2.3 * len(concepts)), squeeze=False)
    for r, concept in enumerate(concepts):
        for c, (direction, sign) in enumerate((("neg", -1), ("pos", 1))):
            ax = axes[r, c]
            for m in methods:
                f = per_alpha[(per_alpha["method"] == m) & (per_alpha["concept"] == concept)]
                side = f[(np.sign(f["alpha"]) == sign) | (f["alpha"] == 0)].copy()
                if side.empty:
                    continue
                side = side.reindex(side["alpha"].abs().sort_values().index)
                s0 = float(f.loc[f["alpha"] == 0, col].iloc[0]) if (f["alpha"] == 0).any() else np.nan
                ax.plot(side["preservation"], sign * (side[col] - s0), marker="o", ms=3, lw=1.2,
                        color=colors[m], ls="--" if m.endswith("_ablated") else "-", label=m)
            cut = cutoffs[(cutoffs["concept"] == concept) & (cutoffs["direction"] == direction)]["cutoff"]
            if len(cut) and np.isfinite(cut.iloc[0]):
                ax.axvline(float(cut.iloc[0]), color="grey", ls=":", lw=1)
            ax.axhline(0, color="black", lw=0.5)
            ax.set_title(f"{concept} ({'−' if sign < 0 else '+'})", fontsize=9)
            ax.tick_params(labelsize=7)
            if r == len(concepts) - 1:
                ax.set_xlabel("preservation distance d (LPAPS)", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"δ ({scorer})", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 1.0 + 0.25 / len(concepts)))
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep_sheet(mels: Mapping[str, Sequence[tuple[float, np.ndarray]]], path: str | Path, *,
                     title: str = "") -> Path:
    """Rows = method variants, columns = α stops (ordered, α = 0 included): log-mel images."""
    plt = _pyplot()
    rows = list(mels)
    n_cols = max(len(v) for v in mels.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.4 * n_cols, 1.1 * len(rows) + 0.4), squeeze=False)
    for r, name in enumerate(rows):
        stops = sorted(mels[name], key=lambda t: t[0])
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(stops):
                alpha, mel = stops[c]
                ax.imshow(np.asarray(mel).T, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1)
                ax.set_title(f"α={alpha:+.3g}", fontsize=6)
            if c == 0:
                ax.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_descriptor_scatter(clips: Mapping[str, pd.DataFrame], path: str | Path, *, scorer: str) -> Path:
    """Alignment score against the descriptor each concept should move (appendix G), per clip."""
    plt = _pyplot()
    pairs = [(c, d) for c, d in DESCRIPTOR_FOR.items() if c in clips and d in clips[c]]
    if not pairs:
        pairs = [(c, "onset_rate") for c in list(clips)[:1]]
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3), squeeze=False)
    for ax, (concept, desc) in zip(axes[0], pairs):
        f = clips[concept]
        x, y = f[desc].to_numpy(float), f[f"align_{scorer}"].to_numpy(float)
        ax.scatter(x, y, s=6, alpha=0.5)
        ok = np.isfinite(x) & np.isfinite(y)
        r = np.corrcoef(x[ok], y[ok])[0, 1] if ok.sum() > 2 and np.std(x[ok]) > 0 else np.nan
        ax.set_title(f"{concept}: r = {r:.2f}", fontsize=9)
        ax.set_xlabel(desc, fontsize=8)
        ax.set_ylabel(f"align_{scorer}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)
