"""Figures of a tension analysis (matplotlib, Agg): shifts per parameter and mode, posteriors, data-space pattern."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import latex

__all__ = ["plot_shifts", "plot_posteriors", "plot_data_pattern"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_shifts(attr: dict[str, Any], labels=("A", "B")):
    """Bar charts: shift per parameter and per eigen-direction of C_A + C_B, in units of the combined sigma."""
    plt = _plt()
    params, modes = attr["parameters"], attr["modes"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    names = list(params)
    vals = [params[n]["n_sigma"] for n in names]
    axes[0].bar(range(len(names)), vals, color=["C3" if abs(v) > 2 else "C0" for v in vals])
    axes[0].set_xticks(range(len(names)), [f"${latex(n)}$" for n in names], rotation=45 if len(names) > 6 else 0)
    axes[0].set_ylabel(rf"$(\bar\theta_{{{labels[0]}}} - \bar\theta_{{{labels[1]}}}) / \sigma$")
    axes[0].set_title("shift per parameter")
    s = [m["n_sigma"] for m in modes]
    axes[1].bar(range(len(s)), np.abs(s), color="C1")
    axes[1].set_xticks(range(len(s)), [f"mode {k + 1}\n{m['fraction']:.0%}" for k, m in enumerate(modes)], fontsize=8)
    axes[1].set_ylabel(r"$|u_k \cdot \Delta| / \sqrt{\lambda_k}$")
    axes[1].set_title(r"shift along eigen-directions of $C_A + C_B$")
    for ax in axes:
        ax.axhline(0, color="k", lw=0.5)
        for y in (1, 2, 3):
            ax.axhline(y, color="0.7", lw=0.5, ls=":")
            ax.axhline(-y, color="0.7", lw=0.5, ls=":") if ax is axes[0] else None
    return fig


def plot_posteriors(names, a: np.ndarray, b: np.ndarray, labels=("A", "B")):
    """Corner plot of the two posteriors of the compared parameters (corner package)."""
    _plt()
    import corner

    lab = [f"${latex(n)}$" for n in names]
    lo = np.minimum(np.percentile(a, 0.5, 0), np.percentile(b, 0.5, 0))
    hi = np.maximum(np.percentile(a, 99.5, 0), np.percentile(b, 99.5, 0))
    rng = [(float(x), float(y)) if y > x else (float(x) - 1, float(x) + 1) for x, y in zip(lo, hi)]
    kw = dict(labels=lab, range=rng, plot_datapoints=False, plot_density=False, levels=(0.393, 0.865), smooth=1.0, bins=30)
    fig = corner.corner(a, color="C0", hist_kwargs={"density": True}, **kw)
    corner.corner(b, fig=fig, color="C3", hist_kwargs={"density": True}, **kw)
    fig.legend(handles=[_patch("C0", labels[0]), _patch("C3", labels[1])], loc="upper right")
    return fig


def _patch(color, label):
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def plot_data_pattern(ds: dict[str, Any]):
    """Data-space pattern of the shift: decoder outputs (change per output vs ell) and, per likelihood of each
    run, the change of the model data vector in units of the data's errors."""
    plt = _plt()
    outs, liks = ds.get("outputs", {}), ds.get("likelihoods", {})
    n = len(outs) + len(liks)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n + 0.4), constrained_layout=True, squeeze=False)
    row = 0
    for name, o in outs.items():
        ax = axes[row, 0]
        x = np.asarray(o["ell"]) if o["ell"] is not None else np.arange(len(o["delta"]))
        ax.plot(x, o["delta"], color="C0", lw=1, label=r"$J\,\Delta$ (full shift)")
        ax.plot(x, o["delta_leading_mode"], color="C1", lw=1, ls="--", label="leading mode")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(f"$\\Delta$ {name}" + (r" [$\mu K^2$]" if name in ("TT", "TE", "EE", "BB") else ""))
        ax.set_xlabel(r"$\ell$" if o["ell"] is not None else "output index")
        ax.legend(fontsize=8, loc="upper right")
        ax.set_title(f"decoder output {name}: change from the shift A - B", fontsize=9)
        row += 1
    for key, l in liks.items():
        ax = axes[row, 0]
        x = np.asarray(l["ell"]) if l["ell"] is not None else np.arange(len(l["delta_sigma"]))
        y = np.asarray(l["delta_sigma"])
        spectra = np.asarray(l["spectrum"]) if l["spectrum"] is not None else np.full(len(y), "data")
        for k, spec in enumerate(dict.fromkeys(spectra.tolist())):
            sel = spectra == spec
            ax.plot(x[sel], y[sel], "o", ms=2.5, color=f"C{k}", label=str(spec))
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(r"$J_d\Delta / \sigma_d$")
        ax.set_xlabel(r"$\ell$" if l["ell"] is not None else "data index")
        top = l["bands"][0] if l["bands"] else None
        where = f"; largest share: {top['spectrum']} ell {top['ell_min']:.0f}-{top['ell_max']:.0f} ({top['fraction']:.0%})" if top and l["ell"] is not None else ""
        ax.set_title(f"run {l['run']}, {l['likelihood']}: shift in data-error units, chi2 = {l['chi2_of_shift']:.2f}{where}", fontsize=9)
        ax.legend(fontsize=8, loc="upper right", markerscale=2)
        row += 1
    return fig
