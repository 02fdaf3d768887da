"""Heatmaps of an :class:`~latentinfer.interpret.table.MITable` (PNG, matplotlib Agg)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .table import MITable

__all__ = ["plot_mi_heatmap"]


def _heat(ax, mat, err, rows, cols, title, vmax):
    im = ax.imshow(np.nan_to_num(mat, nan=0.0), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            if np.isfinite(mat[i, j]):
                light = mat[i, j] < 0.6 * vmax
                v = 0.0 if abs(mat[i, j]) < 5e-3 else mat[i, j]  # MC noise can dip below 0; show 0.00, not -0.00
                ax.text(j, i, f"{v:.2f}\n±{err[i, j]:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if light else "black")
    return im


def plot_mi_heatmap(table: MITable, path: str | os.PathLike, labels: Mapping[str, str] | None = None) -> Path:
    """Two panels: MI(latent, parameter) (latents x parameters) and MI(latent, latent), in nats, with errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    d, p = table.latent_parameter.shape
    rows = [f"{n} ({labels[n]})" if labels and n in labels else n for n in table.latent_names]
    vmax = float(np.nanmax(np.concatenate([table.latent_parameter.ravel(), np.nan_to_num(table.latent_latent, nan=0.0).ravel(), [0.1]])))
    fig, axes = plt.subplots(1, 2, figsize=(0.55 * (p + d) + 4.5, 0.45 * d + 2.2), gridspec_kw={"width_ratios": [max(p, 1), max(d, 1)]})
    im = _heat(axes[0], table.latent_parameter, table.latent_parameter_err, rows, table.parameter_names, "MI(latent, parameter) [nat]", vmax)
    _heat(axes[1], table.latent_latent, table.latent_latent_err, table.latent_names, table.latent_names, "MI(latent, latent) [nat]", vmax)
    axes[1].set_yticks(range(d), table.latent_names, fontsize=7)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="MI [nat]")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
