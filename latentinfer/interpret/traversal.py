"""Latent traversals: move one latent at a time and watch each spectrum change.

:func:`run_traversal` evaluates a :class:`~latentinfer.ForwardModel` along one latent (the others held at
``center``); :func:`traversal_change` expresses the change from the centre spectrum either in units of the
full-sky cosmic variance per multipole (``scale="cv"``) or relative to the centre spectrum (``"relative"``);
:func:`plot_traversals` draws them (PNG, matplotlib Agg).

Cosmic variance of D_ell (muK^2, any common normalisation, per multipole, f_sky = 1, no instrument noise)::

    sigma(D_XX) = sqrt(2 / (2 ell + 1)) |D_XX|        for XX in TT, EE, PP
    sigma(D_TE) = sqrt((D_TE^2 + D_TT D_EE) / (2 ell + 1))

so ``(D(z) - D(center)) / sigma`` is the shift in units of the best any experiment could measure at that ell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, LatentInferError

__all__ = ["run_traversal", "traversal_change", "cosmic_variance", "plot_traversals", "ell_grid"]

_AUTO = ("TT", "EE", "PP", "BB")


def _dtype(model) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None else torch.float64


def run_traversal(model, latent: int | str, values: Sequence[float], center: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Spectra along one latent.

    Parameters
    ----------
    model : ForwardModel with ``d`` inputs
    latent : index or name of the latent to move
    values : positions of that latent (in latent units), shape (m,)
    center : (d,) values of all latents (default zeros: the prior mean)

    Returns ``{output: (m, n)}`` and ``{"center/<output>": (n,)}`` at ``center``, as float64 numpy arrays.
    """
    names = list(model.latent_names)
    if isinstance(latent, str):
        if latent not in names:
            raise LatentInferError(f"unknown latent '{latent}' (model latents: {', '.join(names)})")
        latent = names.index(latent)
    if not 0 <= int(latent) < len(names):
        raise LatentInferError(f"latent index {latent} out of range for {len(names)} latents")
    c = np.zeros(len(names)) if center is None else np.asarray(center, dtype=float)
    if c.shape != (len(names),):
        raise LatentInferError(f"traversal center must have {len(names)} values, got shape {c.shape}")
    vals = np.asarray(values, dtype=float)
    grid = np.tile(c, (len(vals), 1))
    grid[:, int(latent)] = vals
    dt = _dtype(model)
    with torch.no_grad():
        out = model(torch.as_tensor(grid, dtype=dt))
        base = model(torch.as_tensor(c, dtype=dt))
    res = {k: v.double().cpu().numpy() for k, v in out.items()}
    res.update({f"center/{k}": v.double().cpu().numpy() for k, v in base.items()})
    return res


def cosmic_variance(spectra: Mapping[str, np.ndarray], ell: np.ndarray) -> dict[str, np.ndarray]:
    """Full-sky cosmic-variance sigma per multipole of each D_ell in ``spectra`` (see module docstring).

    Outputs other than TT, TE, EE, PP (and BB) have no cosmic variance and are left out. TE needs TT and EE.
    """
    ell = np.asarray(ell, dtype=float)
    out = {}
    for k, v in spectra.items():
        if k in _AUTO:
            out[k] = np.sqrt(2.0 / (2 * ell + 1)) * np.abs(v)
    if "TE" in spectra and "TT" in spectra and "EE" in spectra:
        out["TE"] = np.sqrt((spectra["TE"] ** 2 + np.abs(spectra["TT"] * spectra["EE"])) / (2 * ell + 1))
    return out


def traversal_change(trav: Mapping[str, np.ndarray], ell: np.ndarray, scale: str = "cv") -> dict[str, np.ndarray]:
    """Change of each output from the centre spectrum, ``{output: (m, n)}``.

    scale="cv": ``Delta D / sigma_CV`` (outputs without a cosmic variance fall back to relative);
    scale="relative": ``Delta D / |D_center|``, with TE divided by ``sqrt(D_TT D_EE)`` (TE crosses zero).
    """
    if scale not in ("cv", "relative"):
        raise ConfigError(f"traversal 'scale' must be 'cv' or 'relative', got {scale!r}")
    base = {k[len("center/"):]: v for k, v in trav.items() if k.startswith("center/")}
    tiny = np.finfo(float).tiny
    rel = dict(base)
    if "TE" in base and "TT" in base and "EE" in base:
        rel["TE"] = np.sqrt(np.abs(base["TT"] * base["EE"]))
    sigma = cosmic_variance(base, ell) if scale == "cv" else {}
    out = {}
    for k, b in base.items():
        denom = sigma.get(k, np.abs(rel[k]))
        out[k] = (trav[k] - b) / np.maximum(denom, tiny)
    return out


def ell_grid(model, n: int) -> np.ndarray:
    """Multipoles of an output of length ``n``: the model's ``ell`` attribute, the card's ``ell`` (a list, or
    ``{"min": ..}``) or ``ell_min``, else 2, 3, ..."""
    own = getattr(model, "ell", None)
    if own is not None and not callable(own) and len(own) == n:
        return np.asarray(own, dtype=float)
    card = model.meta.get("card", {}) if hasattr(model, "meta") else {}
    ell = card.get("ell")
    if isinstance(ell, Sequence) and len(ell) == n:
        return np.asarray(ell, dtype=float)
    if isinstance(ell, Mapping):
        lo = ell.get("min", ell.get("ell_min", 2))
    else:
        lo = card.get("ell_min", 2)
    return np.arange(int(lo), int(lo) + n, dtype=float)


def plot_traversals(
    model,
    out_dir: str | os.PathLike,
    *,
    sigmas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    scale_per_latent: Sequence[float] | None = None,
    center: Sequence[float] | None = None,
    outputs: Sequence[str] | None = None,
    scale: str = "cv",
    labels: Mapping[str, str] | None = None,
) -> list[Path]:
    """One PNG per latent (``traversal_<latent>.png``) and a grid of all (``traversals.png``).

    Latent ``i`` moves to ``center_i + s * scale_per_latent[i]`` for ``s`` in ``sigmas`` (default scale 1, the
    prior's sigma); panels show each output's change (see :func:`traversal_change`) against ell on a log axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(model.latent_names)
    d = len(names)
    widths = np.ones(d) if scale_per_latent is None else np.asarray(scale_per_latent, dtype=float)
    if widths.shape != (d,) or not np.all(widths > 0):
        raise LatentInferError(f"traversal scale_per_latent must be {d} positive numbers")
    c = np.zeros(d) if center is None else np.asarray(center, dtype=float)
    sig = np.asarray(sigmas, dtype=float)
    cmap = plt.get_cmap("coolwarm")
    colors = cmap((sig - sig.min()) / max(np.ptp(sig), 1e-12))
    unit = "ΔD_ℓ / σ_CV" if scale == "cv" else "ΔD_ℓ / D_ℓ"
    changes = []
    for i in range(d):
        trav = run_traversal(model, i, c[i] + sig * widths[i], c)
        outs = list(outputs or [k for k in trav if not k.startswith("center/")])
        missing = [o for o in outs if o not in trav]
        if missing:
            raise LatentInferError(f"model has no output(s) {missing} (has {', '.join(k for k in trav if '/' not in k)})")
        n = trav[outs[0]].shape[-1]
        ell = ell_grid(model, n)
        changes.append((outs, ell, traversal_change(trav, ell, scale)))
    files = []
    grid, gax = plt.subplots(d, len(changes[0][0]), figsize=(3.2 * len(changes[0][0]), 2.2 * d), squeeze=False, sharex=True)
    for i, (outs, ell, ch) in enumerate(changes):
        title = names[i] + (f" ({labels[names[i]]})" if labels and names[i] in labels else "")
        fig, axes = plt.subplots(1, len(outs), figsize=(3.6 * len(outs), 3.0), squeeze=False)
        for in_grid, ax_row in ((False, axes[0]), (True, gax[i])):
            for a, o in zip(ax_row, outs):
                for s, col in zip(sig, colors):
                    a.plot(ell, ch[o][list(sig).index(s)], color=col, lw=1.0, label=f"{s:+g}σ")
                a.set_xscale("log")
                a.axhline(0, color="0.6", lw=0.5)
                a.set_title(f"{o}: {title}" if in_grid else o, fontsize=8)
                a.tick_params(labelsize=7)
            ax_row[0].set_ylabel(f"{names[i]}\n{unit}" if in_grid else unit, fontsize=8)
        for a in axes[0]:
            a.set_xlabel("ℓ")
        axes[0][-1].legend(fontsize=6, title=names[i], title_fontsize=7)
        fig.suptitle(f"traversal of {title}", fontsize=9)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
        path = out_dir / f"traversal_{re.sub(r'[^A-Za-z0-9_.-]', '_', names[i])}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    for a in gax[-1]:
        a.set_xlabel("ℓ")
    grid.subplots_adjust(left=0.07, right=0.98, bottom=0.3 / d, top=1 - 0.2 / d, wspace=0.3, hspace=0.45)
    path = out_dir / "traversals.png"
    grid.savefig(path, dpi=90)
    plt.close(grid)
    files.append(path)
    return files
