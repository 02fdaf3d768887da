"""PNG plots of a coverage study: SBC rank histograms, TARP curve, HPD expected coverage curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

__all__ = ["plot_all"]


def plot_all(out, sbc, tarp, hpd, title: str = "") -> list[str]:
    """Write ``sbc_ranks.png``, ``tarp.png``, ``hpd_coverage.png`` into ``out``; returns the file names."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    counts, edges = sbc.histogram()
    n, p = sbc.ranks.shape
    fig, axes = plt.subplots(1, p, figsize=(2.6 * p, 2.4), squeeze=False)
    expected = n / counts.shape[0]
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / counts.shape[0])
    for j, ax in enumerate(axes[0]):
        ax.axhspan(lo, hi, color="0.85", label="99% band")
        ax.stairs(counts[:, j], edges, color="C0")
        ax.axhline(expected, color="k", lw=0.8)
        ax.set_title(f"{sbc.names[j]} (KS p={sbc.ks_pvalues[j]:.2g})", fontsize=8)
        ax.set_xlabel("rank")
    fig.suptitle(f"SBC rank histograms {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sbc_ranks.png", dpi=110)
    plt.close(fig)

    for name, x, y, xl, yl, ttl in (
        ("tarp.png", tarp.alpha, tarp.ecp, "credibility level", "expected coverage", f"TARP (ATC={tarp.atc:+.3f}) {title}"),
        ("hpd_coverage.png", hpd.levels, hpd.coverage, "credibility level", "empirical coverage", f"HPD expected coverage {title}"),
    ):
        fig, ax = plt.subplots(figsize=(3.4, 3.2))
        m = len(y) if name == "tarp.png" else len(hpd.credibility)
        m = len(tarp.f) if name == "tarp.png" else m
        band = 3 * np.sqrt(np.clip(x * (1 - x), 0, None) / m)
        ax.fill_between(x, x - band, x + band, color="0.85", label="3 sigma (binomial)")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.plot(x, y, color="C1")
        ax.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1))
        ax.set_title(ttl, fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
    return ["sbc_ranks.png", "tarp.png", "hpd_coverage.png"]
