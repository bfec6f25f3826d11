"""Figures (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_impact_heatmap(matrix: pd.DataFrame, path: str | Path, *, layer_names: Sequence[str] | None = None,
                        chosen: Sequence[int] = (), title: str | None = None) -> Path:
    """Heatmap of layer impact per concept (the paper's figure 3): rows = concepts, columns =
    layers (0-based), colour = mean impact; a bottom row shows the mean over concepts and the
    `chosen` (functional) layers are outlined. NaN cells are grey. Written as PNG (or PDF by
    extension)."""
    from matplotlib.patches import Rectangle

    from tada.io import atomic_path

    plt = _pyplot()
    data = matrix.astype(float)
    mean_row = data.mean(axis=0, skipna=True).to_frame().T
    mean_row.index = ["mean"]
    full = pd.concat([data, mean_row])
    values = np.ma.masked_invalid(full.to_numpy())
    finite = full.to_numpy()[np.isfinite(full.to_numpy())]
    vmax = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    n_rows, n_cols = full.shape
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * n_cols + 3.0), max(3.0, 0.38 * n_rows + 1.6)))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    im = ax.imshow(values, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.axhline(n_rows - 1.5, color="black", linewidth=1.0)
    ax.set_yticks(range(n_rows), [str(i) for i in full.index])
    labels = [str(c) for c in full.columns]
    ax.set_xticks(range(n_cols), labels, rotation=90 if n_cols > 24 else 0)
    ax.set_xlabel("cross-attention layer" + (f" ({layer_names[0]} ... {layer_names[-1]})" if layer_names else ""))
    columns = list(full.columns)
    for layer in chosen:
        if layer in columns:
            j = columns.index(layer)
            ax.add_patch(Rectangle((j - 0.5, -0.5), 1, n_rows, fill=False, edgecolor="black", linewidth=2.0))
    if n_cols * n_rows <= 400:
        for i in range(n_rows):
            for j in range(n_cols):
                v = full.iat[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(v) > 0.6 * vmax else "black")
                else:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=6, color="0.4")
    fig.colorbar(im, ax=ax, label="impact I(l, c)")
    ax.set_title(title or "Activation patching: impact per layer and concept")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
