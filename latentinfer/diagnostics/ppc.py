"""Posterior predictive checks per likelihood: compute (:func:`run_ppc`), judge (:func:`check_ppc`), plot.

For each likelihood of the program, at ``n_draws`` posterior draws: the model data vector (the mean of the
observed site's distribution, nuisances included), residuals ``(data - <model>) / sigma`` with
``sigma = sqrt(diag C)``, the chi^2 at the best-fit draw (largest log posterior) with its probability to exceed
for ``n_data`` degrees of freedom, and the posterior predictive p-value of the chi^2 discrepancy
``p = Prob[chi2(y_rep | theta) >= chi2(y_obs | theta)]`` with ``y_rep`` drawn from the likelihood, and the
best-fit chi^2 of each spectrum's block of the covariance.
Spectra and multipoles come from ``lik.meta["spectrum"]`` and ``lik.meta["ell"]`` when the likelihood has them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ..errors import LatentInferError
from pyro import poutine
from scipy import stats

__all__ = ["run_ppc", "check_ppc", "plot_ppc"]


def _coord(meta, key, n):
    val = meta.get(key) if hasattr(meta, "get") else None
    if val is None:
        return None
    arr = np.asarray(val)
    return arr if arr.shape == (n,) else None


def run_ppc(analysis, post, n_draws: int = 200, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Posterior predictive numbers per likelihood (see the module docstring)."""
    names = analysis.parameter_names
    flat = {n: post.samples(n) for n in names if n in post.parameter_names}
    missing = [n for n in names if n not in flat]
    if missing:

        raise LatentInferError(f"the posterior lacks parameters {missing} of the program")
    n_total = len(next(iter(flat.values())))
    rng = np.random.default_rng(seed)
    idx = rng.choice(n_total, size=min(n_draws, n_total), replace=False)
    lp = None
    ss = getattr(post.idata, "sample_stats", None)
    if ss is not None and "lp" in ss:
        lp = np.asarray(ss["lp"].values).reshape(-1)
    best = int(np.argmax(lp)) if lp is not None else int(idx[0])
    idx = np.concatenate([[best], idx])
    values = {n: torch.as_tensor(v[idx], dtype=analysis.dtype) for n, v in flat.items()}
    torch.manual_seed(seed)
    with torch.no_grad():
        tr = poutine.trace(poutine.condition(analysis.model, data=values)).get_trace()
    out = {}
    for lik in analysis.likelihoods:
        fn = tr.nodes[lik.name]["fn"]
        pred = fn.mean.expand(len(idx), lik.n_data).numpy()
        data = lik.data.numpy()
        L = lik.scale_tril.numpy()
        sigma = np.sqrt(np.diag(lik.cov.numpy()))

        def chi2(r):
            w = np.linalg.solve(L, r.T)
            return (w**2).sum(0)

        chi2_obs = chi2(data[None, :] - pred)
        with torch.no_grad():
            y_rep = fn.sample().expand(len(idx), lik.n_data).numpy()
        chi2_rep = chi2(y_rep - pred)
        mean_pred = pred[1:].mean(0)
        spec = _coord(lik.meta, "spectrum", lik.n_data)
        by_spec = {}
        if spec is not None:  # chi2 of each spectrum's block of the covariance at the best fit
            cov = lik.cov.numpy()
            r_best = data - pred[0]
            for g in dict.fromkeys(spec.tolist()):
                sel = spec == g
                rg = r_best[sel]
                c2 = float(rg @ np.linalg.solve(cov[np.ix_(sel, sel)], rg))
                by_spec[str(g)] = {"chi2": c2, "n": int(sel.sum()), "pte": float(stats.chi2.sf(c2, int(sel.sum())))}
        out[lik.name] = {
            "chi2_by_spectrum": by_spec,
            "n_data": lik.n_data,
            "ell": None if (e := _coord(lik.meta, "ell", lik.n_data)) is None else e.astype(float).tolist(),
            "spectrum": None if (s := _coord(lik.meta, "spectrum", lik.n_data)) is None else [str(x) for x in s],
            "data": data.tolist(),
            "sigma": sigma.tolist(),
            "prediction_mean": mean_pred.tolist(),
            "prediction_lo": np.percentile(pred[1:], 16, 0).tolist(),
            "prediction_hi": np.percentile(pred[1:], 84, 0).tolist(),
            "residual_sigma": ((data - mean_pred) / sigma).tolist(),
            "chi2_best_fit": float(chi2_obs[0]),
            "pte_best_fit": float(stats.chi2.sf(chi2_obs[0], lik.n_data)),
            "chi2_posterior_mean": float(chi2_obs[1:].mean()),
            "ppc_p_value": float((chi2_rep[1:] >= chi2_obs[1:]).mean()),
            "n_draws": int(len(idx) - 1),
        }
    return out


def check_ppc(ppc: dict[str, dict[str, Any]], alpha: float = 0.01) -> dict[str, dict[str, Any]]:
    """Flag a likelihood whose best-fit PTE or predictive p-value is below ``alpha`` or above ``1 - alpha``."""
    out = {}
    for name, r in ppc.items():
        bad = []
        if not alpha <= r["pte_best_fit"] <= 1 - alpha:
            bad.append(f"chi2 PTE {r['pte_best_fit']:.3g}")
        if r["ppc_p_value"] < alpha:
            bad.append(f"predictive p {r['ppc_p_value']:.3g}")
        out[name] = {"ok": not bad, "reasons": bad, "alpha": alpha}
    return out


def plot_ppc(name: str, r: dict[str, Any]):
    """Data with the posterior-predictive band (top) and residuals in sigma (bottom), one column per spectrum."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = r["n_data"]
    x = np.asarray(r["ell"]) if r["ell"] is not None else np.arange(n)
    spectra = np.asarray(r["spectrum"]) if r["spectrum"] is not None else np.full(n, "")
    groups = list(dict.fromkeys(spectra.tolist()))
    fig, axes = plt.subplots(2, len(groups), figsize=(max(4.2 * len(groups), 7), 5), squeeze=False, sharex="col", constrained_layout=True, gridspec_kw={"height_ratios": [2, 1]})
    data, sig = np.asarray(r["data"]), np.asarray(r["sigma"])
    mean, lo, hi, res = (np.asarray(r[k]) for k in ("prediction_mean", "prediction_lo", "prediction_hi", "residual_sigma"))
    for j, g in enumerate(groups):
        sel = spectra == g
        o = np.argsort(x[sel])
        xs = x[sel][o]
        top, bot = axes[0, j], axes[1, j]
        top.errorbar(xs, data[sel][o], yerr=sig[sel][o], fmt="o", ms=2.5, lw=0.8, color="k", label="data")
        top.fill_between(xs, lo[sel][o], hi[sel][o], color="C0", alpha=0.35, lw=0)
        top.plot(xs, mean[sel][o], color="C0", lw=1, label="posterior predictive (68%)")
        blk = r.get("chi2_by_spectrum", {}).get(str(g))
        extra = f": chi2 = {blk['chi2']:.1f} / {blk['n']}" if blk else ""
        top.set_title(f"{name} {g}".strip() + extra, fontsize=10)
        if j == 0:
            top.legend(fontsize=8)
            top.set_ylabel(r"$D_\ell$ [$\mu K^2$]" if r["ell"] is not None else "data")
            bot.set_ylabel(r"(data - model) / $\sigma$")
        bot.axhspan(-1, 1, color="0.85")
        bot.axhspan(-2, 2, color="0.93", zorder=-1)
        bot.plot(xs, res[sel][o], "o", ms=2.5, color="C3")
        bot.axhline(0, color="k", lw=0.5)
        bot.set_xlabel(r"$\ell$" if r["ell"] is not None else "data index")
    fig.suptitle(f"{name}: chi2 = {r['chi2_best_fit']:.1f} / {n} (best fit, PTE {r['pte_best_fit']:.3f}), predictive p = {r['ppc_p_value']:.2f}", fontsize=10)
    return fig
