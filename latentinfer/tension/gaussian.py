"""Gaussian difference in means Q_DM with the effective number of constrained directions (Raveri & Hu 2019).

With ``Delta = mean_A - mean_B`` and ``C = C_A + C_B``, only directions that the data constrain better than the
prior carry information on a disagreement. The KL decomposition of ``C`` against the prior covariance of the
difference ``C_Pi = C_Pi,A + C_Pi,B`` (generalised eigenproblem ``C_Pi v = lambda C v``, ``v^T C v = 1``) gives
modes with prior-to-posterior variance ratio ``lambda``; modes with ``lambda > 1 + cutoff`` are kept:

    Q_DM = sum_kept (v^T Delta)^2  ~  chi^2(dof = number kept),     n_sigma = Phi^-1(1 - PTE / 2).

Without a recorded prior every direction is kept (``Q_DM = Delta^T C^-1 Delta``, ``dof = d``). The effective
number of constrained parameters of each run is ``N_eff = d - tr(C_Pi^-1 C_post)``.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, stats

from .base import MetricResult, TensionInputs, TensionMetric, register_metric, sigma_from_pte

__all__ = ["DifferenceInMeans", "q_dm", "n_eff"]


def n_eff(post_cov: np.ndarray, prior_cov: np.ndarray) -> float:
    """Effective number of parameters constrained by the data, ``d - tr(C_Pi^-1 C_post)`` (Raveri & Hu 2019)."""
    return float(post_cov.shape[0] - np.trace(np.linalg.solve(prior_cov, post_cov)))


def q_dm(shift: np.ndarray, cov: np.ndarray, prior_cov: np.ndarray | None = None, cutoff: float = 0.05) -> dict:
    """``{"q", "dof", "ratios", "kept"}``: Q_DM of a mean difference ``shift (d,)`` with covariance ``cov (d, d)``."""
    if prior_cov is None:
        q = float(shift @ np.linalg.solve(cov, shift))
        return {"q": q, "dof": int(shift.shape[0]), "ratios": None, "kept": list(range(shift.shape[0]))}
    lam, vecs = linalg.eigh(prior_cov, cov)  # prior_cov v = lam cov v, v^T cov v = 1
    kept = [i for i, x in enumerate(lam) if x > 1.0 + cutoff]
    proj = vecs.T @ shift
    q = float((proj[kept] ** 2).sum())
    return {"q": q, "dof": len(kept), "ratios": lam.tolist(), "kept": kept}


@register_metric
class DifferenceInMeans(TensionMetric):
    """Q_DM with the number of directions constrained beyond the prior as degrees of freedom."""

    name = "q_dm"
    title = "difference in means Q_DM"

    def __init__(self, cutoff: float = 0.05):
        self.cutoff = cutoff

    def compute(self, inp: TensionInputs) -> MetricResult:
        shift, cov = inp.shift, inp.cov_a + inp.cov_b
        prior_diff = None if inp.prior_cov is None else 2.0 * inp.prior_cov
        r = q_dm(shift, cov, prior_diff, self.cutoff)
        details = {"cutoff": self.cutoff, "prior_variance_ratios": r["ratios"], "kept_modes": r["kept"]}
        if inp.prior_cov is not None:
            details["n_eff_a"] = n_eff(inp.cov_a, inp.prior_cov)
            details["n_eff_b"] = n_eff(inp.cov_b, inp.prior_cov)
        else:
            details["note"] = "no prior recorded in the runs: all directions kept"
        if r["dof"] == 0:
            return MetricResult(self.name, value=0.0, n_sigma=None, dof=0, description="no direction constrained beyond the prior", details=details)
        pte = float(stats.chi2.sf(r["q"], r["dof"]))
        # Monte-Carlo error: of the means (dQ = 2 w^T dDelta, w = C^-1 Delta) and of the sample covariances
        # (dQ = -w^T dC w, Var(w^T C_hat w) = 2 (w^T C w)^2 / n for Wishart noise)
        ea, eb = max(inp.ess_a, 2.0), max(inp.ess_b, 2.0)
        w = np.linalg.solve(cov, shift)
        var_q = 4.0 * (w @ inp.cov_a @ w / ea + w @ inp.cov_b @ w / eb)
        var_q += 2.0 * (w @ inp.cov_a @ w) ** 2 / ea + 2.0 * (w @ inp.cov_b @ w) ** 2 / eb
        q_err = float(np.sqrt(var_q))
        s = sigma_from_pte(pte)
        s_hi = sigma_from_pte(float(stats.chi2.sf(r["q"] + q_err, r["dof"])))
        s_lo = sigma_from_pte(float(stats.chi2.sf(max(r["q"] - q_err, 0.0), r["dof"])))
        return MetricResult(
            self.name,
            value=r["q"],
            value_err=q_err,
            n_sigma=s,
            n_sigma_err=0.5 * (s_hi - s_lo),
            pte=pte,
            dof=r["dof"],
            description="Gaussian difference in means over the directions constrained beyond the prior (Raveri & Hu 2019)",
            details=details,
        )
