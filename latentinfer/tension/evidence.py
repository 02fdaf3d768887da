"""Evidence ratio R and suspiciousness S (Handley & Lemos 2019), from a joint run of both data sets.

With ``ln L_X`` the total log-likelihood of run X at its posterior samples (sum of its likelihoods):

    log R = ln Z_AB - ln Z_A - ln Z_B                               (needs the evidences)
    log S = <ln L_AB>_AB - <ln L_A>_A - <ln L_B>_B                 (= log R - log I, evidence-free)
    d     = d_A + d_B - d_AB,    d_X = 2 Var_X(ln L_X)              (Bayesian model dimensionality)
    d - 2 log S ~ chi^2(d)   ->  PTE,  n_sigma = Phi^-1(1 - PTE / 2)

``log I = D_A + D_B - D_AB`` with ``D_X = <ln L_X>_X - ln Z_X`` the Kullback-Leibler divergence (information).
For Gaussian posteriors ``d - 2 log S`` equals ``Delta^T (C_A + C_B)^-1 Delta`` whatever the prior.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

from ..errors import LatentInferError
from .base import MetricResult, TensionInputs, TensionMetric, register_metric, sigma_from_pte

__all__ = ["Suspiciousness", "EvidenceRatio", "total_loglike", "jeffreys"]


def total_loglike(post, label: str) -> tuple[np.ndarray, list[str]]:
    """Total log-likelihood ``(chain, draw)`` of a posterior (sum of its ``log_likelihood`` variables) and their names."""
    ll = getattr(post.idata, "log_likelihood", None)
    if ll is None or not list(ll.data_vars):
        raise LatentInferError(f"run {label}: its posterior has no log_likelihood group (needed for S and R)")
    names = list(ll.data_vars)
    total = sum(np.asarray(ll[n].values, dtype=float) for n in names)
    return total, names


def _mean_and_err(x: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, variance and their Monte-Carlo errors of a ``(chain, draw)`` series (arviz ESS)."""
    import arviz as az

    flat = x.reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = float(az.ess(x)) if flat.size >= 8 else float(flat.size)
    ess = ess if math.isfinite(ess) and ess > 1 else float(flat.size)
    m, v = float(flat.mean()), float(flat.var(ddof=1))
    m4 = float(((flat - m) ** 4).mean())
    return m, v, math.sqrt(v / ess), math.sqrt(max(m4 - v * v, 0.0) / ess)


def _check_likelihoods(inp: TensionInputs) -> dict[str, list[str]]:
    _, la = total_loglike(inp.post_a, "A")
    _, lb = total_loglike(inp.post_b, "B")
    _, lj = total_loglike(inp.joint, "joint")
    if set(la) & set(lb):
        raise LatentInferError(f"runs A and B share likelihoods {sorted(set(la) & set(lb))}: S and R need independent data sets")
    if set(lj) != set(la) | set(lb):
        raise LatentInferError(f"the joint run's likelihoods {lj} are not those of A {la} plus B {lb}")
    return {"a": la, "b": lb, "joint": lj}


def _sigma_of(chi2: float, d: float) -> tuple[float | None, float | None]:
    if not d > 0:
        return None, None
    pte = float(stats.chi2.sf(chi2, d))
    return sigma_from_pte(pte), pte


def suspiciousness(inp: TensionInputs) -> dict:
    """log S, d and their Monte-Carlo errors (see the module docstring)."""
    likes = _check_likelihoods(inp)
    parts = {}
    for key, post in (("a", inp.post_a), ("b", inp.post_b), ("joint", inp.joint)):
        x, _ = total_loglike(post, key)
        parts[key] = _mean_and_err(x)
    (ma, va, ema, eva), (mb, vb, emb, evb), (mj, vj, emj, evj) = parts["a"], parts["b"], parts["joint"]
    log_s = mj - ma - mb
    d = 2.0 * (va + vb - vj)
    return {
        "log_s": log_s,
        "log_s_err": math.sqrt(ema**2 + emb**2 + emj**2),
        "d": d,
        "d_err": 2.0 * math.sqrt(eva**2 + evb**2 + evj**2),
        "d_a": 2 * va,
        "d_b": 2 * vb,
        "d_joint": 2 * vj,
        "mean_loglike": {"a": ma, "b": mb, "joint": mj},
        "likelihoods": likes,
    }


def _result(name: str, value: float, value_err: float, s: dict, description: str, extra: dict) -> MetricResult:
    chi2 = s["d"] - 2.0 * s["log_s"]
    n_sigma, pte = _sigma_of(chi2, s["d"])
    err = None
    if n_sigma is not None:  # propagate the errors of log S and d in quadrature
        parts = []
        for dchi, dd in ((2 * s["log_s_err"], 0.0), (s["d_err"], s["d_err"])):
            hi, _ = _sigma_of(chi2 + dchi, s["d"] + dd)
            lo, _ = _sigma_of(max(chi2 - dchi, 0.0), max(s["d"] - dd, 1e-6))
            if hi is not None and lo is not None:
                parts.append(0.5 * abs(hi - lo))
        err = math.sqrt(sum(p * p for p in parts))
    details = {**s, "chi2": chi2, **extra}
    if n_sigma is None:
        details["note"] = f"model dimensionality d = {s['d']:.3g} <= 0: no significance (too few samples or no shared constraint)"
    return MetricResult(name, value=value, value_err=value_err, n_sigma=n_sigma, n_sigma_err=err, pte=pte, dof=s["d"], description=description, details=details)


def jeffreys(ln_b: float) -> str:
    """Reading of a log Bayes factor / log R on the Jeffreys scale (Kass & Raftery thresholds in ln)."""
    a = abs(ln_b)
    word = "inconclusive" if a < 1 else "weak" if a < 2.5 else "moderate" if a < 5 else "strong"
    side = "agreement" if ln_b > 0 else "disagreement"
    return "inconclusive" if word == "inconclusive" else f"{word} evidence for {side}"


@register_metric
class Suspiciousness(TensionMetric):
    """Suspiciousness S and the Bayesian model dimensionality d (no evidences needed)."""

    name = "suspiciousness"
    title = "suspiciousness log S"
    needs = ("joint",)

    def compute(self, inp: TensionInputs) -> MetricResult:
        s = suspiciousness(inp)
        return _result(self.name, s["log_s"], s["log_s_err"], s, "log S = log R - log I, d - 2 log S ~ chi2(d) (Handley & Lemos 2019)", {})


@register_metric
class EvidenceRatio(TensionMetric):
    """Evidence ratio R with the information ratio I; its sigma is that of S = R / I."""

    name = "evidence_ratio"
    title = "evidence ratio log R"
    needs = ("joint", "evidence")

    def compute(self, inp: TensionInputs) -> MetricResult:
        s = suspiciousness(inp)
        ev = {k: inp.evidence[k] for k in ("a", "b", "joint")}
        log_r = ev["joint"]["ln_z"] - ev["a"]["ln_z"] - ev["b"]["ln_z"]
        errs = [ev[k].get("ln_z_err") for k in ev]
        log_r_err = math.sqrt(sum(e * e for e in errs)) if all(e is not None and math.isfinite(e) for e in errs) else None
        log_i = log_r - s["log_s"]
        extra = {"log_r": log_r, "log_i": log_i, "ln_z": {k: ev[k]["ln_z"] for k in ev}, "reading": jeffreys(log_r)}
        desc = "log R = ln Z_AB - ln Z_A - ln Z_B (prior-dependent); its sigma is that of S = R / I (Handley & Lemos 2019)"
        return _result(self.name, log_r, log_r_err, s, desc, extra)
