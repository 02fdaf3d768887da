"""Calibration diagnostics of posteriors over many (true parameter, data) pairs: compute, then judge.

All take ``thetas`` ``(N, p)`` (the true parameters of N simulated data sets) and ``samples`` ``(N, L, p)``
(L posterior draws for each data set). Each ``run_*`` computes a statistic; each ``check_*`` turns it into a
verdict with explicit, recorded thresholds. A calibrated posterior passes every check with probability about
``1 - alpha``; over-confident and biased posteriors fail.

- SBC (Talts et al. 2018): rank of each true parameter among its posterior draws; uniform if calibrated.
  Judged with a Kolmogorov-Smirnov test per parameter (Bonferroni over parameters).
- TARP (Lemos et al. 2023): fraction ``f_i`` of draws closer to a random reference point than the truth;
  the expected coverage probability ``ECP(a) = mean_i[f_i < a]`` equals ``a`` if calibrated. Judged by a KS
  test of ``f`` and the area statistic ``ATC = int (ECP(a) - a) da = 1/2 - mean(f)`` against its 3-sigma
  Monte-Carlo bound ``3 / sqrt(12 N)``.
- HPD expected coverage (Hermans et al. 2022): credibility ``c_i`` of the smallest highest-density region that
  contains the truth; coverage at level ``c`` is ``mean_i[c_i <= c]``. Judged at several levels with a
  binomial 3-sigma band: below the band is over-confident (fail), above is conservative (pass, flagged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from ..errors import LatentInferError

__all__ = [
    "SBCResult",
    "TARPResult",
    "HPDResult",
    "run_sbc",
    "check_sbc",
    "run_tarp",
    "check_tarp",
    "run_hpd_coverage",
    "check_hpd_coverage",
    "HPD_LEVELS",
]

HPD_LEVELS = (0.5, 0.68, 0.8, 0.9, 0.95)


def _check_shapes(thetas, samples) -> tuple[np.ndarray, np.ndarray]:
    thetas = np.asarray(thetas, dtype=np.float64)
    samples = np.asarray(samples, dtype=np.float64)
    if thetas.ndim == 1:
        thetas = thetas[:, None]
    if samples.ndim == 2:
        samples = samples[..., None]
    if samples.ndim != 3 or thetas.shape != (samples.shape[0], samples.shape[2]):
        raise LatentInferError(f"coverage: thetas (N, p) and samples (N, L, p) disagree: {thetas.shape} vs {samples.shape}")
    if not (np.isfinite(thetas).all() and np.isfinite(samples).all()):
        raise LatentInferError("coverage: NaN/inf in true parameters or posterior samples")
    return thetas, samples


# -- SBC -------------------------------------------------------------------------------------------------------
@dataclass
class SBCResult:
    ranks: np.ndarray  # (N, p) integers in 0..L
    num_draws: int  # L
    ks_pvalues: np.ndarray  # (p,)
    names: list[str] = field(default_factory=list)

    def histogram(self, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Counts ``(bins, p)`` and edges of the rank histograms (default ~N/10 bins, at most 20)."""
        n = self.ranks.shape[0]
        bins = bins or int(np.clip(n // 10, 2, 20))
        edges = np.linspace(0, self.num_draws + 1, bins + 1)
        counts = np.stack([np.histogram(self.ranks[:, j], edges)[0] for j in range(self.ranks.shape[1])], -1)
        return counts, edges


def run_sbc(thetas, samples, *, names=None, seed: int = 0) -> SBCResult:
    """Ranks of the truth among the L draws; KS p-value of the (randomised, continuous) ranks per parameter."""
    thetas, samples = _check_shapes(thetas, samples)
    L = samples.shape[1]
    ranks = (samples < thetas[:, None, :]).sum(1)
    u = (ranks + np.random.default_rng(seed).uniform(size=ranks.shape)) / (L + 1)  # exact U(0, 1) if calibrated
    pvals = np.array([stats.kstest(u[:, j], "uniform").pvalue for j in range(u.shape[1])])
    return SBCResult(ranks=ranks, num_draws=L, ks_pvalues=pvals, names=list(names or [f"theta{j}" for j in range(u.shape[1])]))


def check_sbc(res: SBCResult, alpha: float = 0.01) -> dict:
    """Pass if every parameter's KS p-value exceeds ``alpha / p`` (Bonferroni)."""
    p = len(res.ks_pvalues)
    thr = alpha / p
    per = {n: {"ks_pvalue": float(v), "pass": bool(v > thr)} for n, v in zip(res.names, res.ks_pvalues)}
    return {
        "pass": all(v["pass"] for v in per.values()),
        "per_parameter": per,
        "thresholds": {"alpha": alpha, "ks_pvalue_min": thr, "correction": "Bonferroni over parameters"},
        "num_runs": int(res.ranks.shape[0]),
        "num_draws": int(res.num_draws),
    }


# -- TARP ------------------------------------------------------------------------------------------------------
@dataclass
class TARPResult:
    alpha: np.ndarray  # (K,) credibility grid
    ecp: np.ndarray  # (K,) expected coverage probability
    f: np.ndarray  # (N,) fraction of draws closer to the reference than the truth
    atc: float  # int (ECP - alpha) d alpha
    ks_pvalue: float


def run_tarp(thetas, samples, *, seed: int = 0, references=None, grid: int = 101) -> TARPResult:
    """TARP coverage with references drawn uniformly in the box spanned by the true parameters (standardised)."""
    thetas, samples = _check_shapes(thetas, samples)
    mu, sd = thetas.mean(0), thetas.std(0) + 1e-12
    t, s = (thetas - mu) / sd, (samples - mu) / sd
    if references is None:
        rng = np.random.default_rng(seed)
        references = rng.uniform(t.min(0), t.max(0), size=t.shape)
    else:
        references = (np.asarray(references, dtype=np.float64) - mu) / sd
    d_truth = np.linalg.norm(t - references, axis=-1)  # (N,)
    d_samp = np.linalg.norm(s - references[:, None, :], axis=-1)  # (N, L)
    f = (d_samp < d_truth[:, None]).mean(1)
    alpha = np.linspace(0.0, 1.0, grid)
    ecp = (f[None, :] < alpha[:, None]).mean(1)
    atc = float(0.5 - f.mean())  # = int_0^1 (ECP(a) - a) da exactly
    pval = float(stats.kstest(f, "uniform").pvalue)
    return TARPResult(alpha=alpha, ecp=ecp, f=f, atc=atc, ks_pvalue=pval)


def check_tarp(res: TARPResult, alpha: float = 0.01, atc_sigmas: float = 3.0) -> dict:
    """Pass if the KS p-value of ``f`` exceeds ``alpha`` and ``|ATC|`` is within ``atc_sigmas / sqrt(12 N)``.

    The sign of ATC says on which side of the diagonal the ECP curve lies; it does not by itself tell
    over-confidence from bias (both can move it either way, depending on the reference points), so the reading
    names the side only. Over-confidence with no bias mostly shows in the KS test (ATC stays near 0).
    """
    n = len(res.f)
    atc_max = atc_sigmas / np.sqrt(12.0 * n)
    ok_ks, ok_atc = res.ks_pvalue > alpha, abs(res.atc) < atc_max
    return {
        "pass": bool(ok_ks and ok_atc),
        "ks_pvalue": res.ks_pvalue,
        "atc": res.atc,
        "reading": _tarp_reading(ok_ks, ok_atc, res.atc),
        "thresholds": {"ks_pvalue_min": alpha, "abs_atc_max": float(atc_max), "atc_rule": f"{atc_sigmas} sigma of 1/sqrt(12 N)"},
        "num_runs": int(n),
    }


def _tarp_reading(ok_ks: bool, ok_atc: bool, atc: float) -> str:
    if ok_ks and ok_atc:
        return "calibrated"
    if not ok_atc:
        return "ECP above the diagonal (e.g. under-confident)" if atc > 0 else "ECP below the diagonal (e.g. over-confident)"
    return "miscalibrated: f not uniform (KS), ECP crosses the diagonal"


# -- HPD expected coverage -------------------------------------------------------------------------------------
@dataclass
class HPDResult:
    credibility: np.ndarray  # (N,) credibility of the smallest HPD region containing the truth
    levels: np.ndarray  # (K,) grid for the curve
    coverage: np.ndarray  # (K,) empirical expected coverage at each level


def run_hpd_coverage(log_density_truth, log_density_samples, grid: int = 101) -> HPDResult:
    """Expected coverage of highest-posterior-density regions.

    ``log_density_truth`` ``(N,)`` and ``log_density_samples`` ``(N, L)``: the posterior's log density (any
    constant offset per run, e.g. an unnormalised log posterior) at the truth and at its own draws.
    ``c_i`` = fraction of draws denser than the truth.
    """
    lt = np.asarray(log_density_truth, dtype=np.float64).reshape(-1)
    ls = np.asarray(log_density_samples, dtype=np.float64)
    if ls.ndim != 2 or ls.shape[0] != lt.shape[0]:
        raise LatentInferError(f"coverage: log densities of truth (N,) and draws (N, L) disagree: {lt.shape} vs {ls.shape}")
    if not np.isfinite(ls).all():
        raise LatentInferError("coverage: non-finite log density at posterior draws")
    cred = (ls > lt[:, None]).mean(1)  # -inf at the truth (outside support) -> 1: not covered at any level < 1
    levels = np.linspace(0.0, 1.0, grid)
    cov = (cred[None, :] <= levels[:, None]).mean(1)
    return HPDResult(credibility=cred, levels=levels, coverage=cov)


def check_hpd_coverage(res: HPDResult, levels=HPD_LEVELS, sigmas: float = 3.0) -> dict:
    """At each credibility level ``c``: fail if coverage < ``c - sigmas * sqrt(c (1 - c) / N)`` (over-confident);
    coverage above ``c + ...`` is flagged conservative but passes (Hermans et al. 2022)."""
    n = len(res.credibility)
    per = {}
    for c in levels:
        cov = float((res.credibility <= c).mean())
        band = sigmas * np.sqrt(c * (1 - c) / n)
        reading = "over-confident" if cov < c - band else ("conservative" if cov > c + band else "calibrated")
        per[f"{c:g}"] = {"coverage": cov, "band": float(band), "reading": reading, "pass": reading != "over-confident"}
    return {
        "pass": all(v["pass"] for v in per.values()),
        "levels": per,
        "thresholds": {"sigmas": sigmas, "rule": "fail if coverage < level - sigmas * sqrt(level (1 - level) / N)"},
        "num_runs": int(n),
    }


def to_record(obj) -> dict:
    """A JSON-able dict of a result dataclass (arrays as lists)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(obj).items()}
