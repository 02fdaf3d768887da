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

Joint statistics. SBC ranks each parameter on its own, so it is blind by construction to a posterior with the
right marginals and the wrong joint (wrong correlations, a degeneracy along the wrong direction). TARP with
references drawn from the box of true parameters sees the joint only through 1-d projections onto directions
set by far-away references, and HPD judged one-sided at five levels sees a wrong joint late when it makes
coverage too high at low levels and too low at high ones. A degeneracy along the wrong direction puts the
truth far out in the posterior's own density: HPD fails at every level while SBC passes and box-TARP passes at
small N, the pattern seen on a real NPE. Two statistics look at the joint directly:

- Density rank (SBC of the posterior log density, "data-averaged posterior density rank"): rank of
  ``log q(theta_true | x)`` among ``log q(draws | x)``; uniform if calibrated. Two-sided KS test. Reading:
  both tails over-populated is a wrong shape; else the mean normalised rank reads the side (below 1/2: the
  truth sits in low-density regions, over-confident or biased; above: under-confident). Needs the same log
  densities as HPD.
- Local TARP: TARP with data-dependent references ``N(mean_q(x), inflate^2 cov_q(x))`` (mean and covariance
  of the posterior's own draws, pooled with the truth) and distances whitened by ``cov_q(x)``; calibrated iff
  ``f`` is uniform, like TARP with any references. It needs no density. References near the posterior make
  ``f`` a joint, ellipsoidal statistic, and the ATC sign is read: below the diagonal is over-confident (or
  biased), above is under-confident.

Which diagnostic sees a wrong joint, and at which N (tests/coverage/test_coverage_joint.py: a 2-d Gaussian posterior
with marginal sds 0.2, 0.3 and correlation 0.9, L = 200 draws; the broken posterior keeps the exact marginals
and is either independent or has correlation -0.9; each cell is the fraction of 400 studies that fail the
check, Monte-Carlo sd <= 0.025; on the exact posterior every check fails in <= 0.018 of studies):

=====================  =====  =====  =====  =====  ============  ==========
wrong joint            N      SBC    TARP   HPD    density rank  local TARP
=====================  =====  =====  =====  =====  ============  ==========
independent            200    0.010  0.078  0.145  0.833         0.403
independent            500    0.010  0.388  0.435  1.000         0.848
independent            1000   0.005  0.808  0.805  1.000         0.993
correlation flipped    200    0.008  0.245  1.000  1.000         1.000
correlation flipped    500    0.010  0.933  1.000  1.000         1.000
correlation flipped    1000   0.005  1.000  1.000  1.000         1.000
=====================  =====  =====  =====  =====  ============  ==========
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
    "DensityRankResult",
    "run_density_rank",
    "check_density_rank",
    "run_tarp_local",
    "check_tarp_local",
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


def _rank_moments(ranks: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Mean and variance of the mid-point normalised ranks ``(r + 1/2) / (L + 1)`` over runs, with their values
    ``1/2`` and ``(1 - 1/(L+1)^2) / 12`` for uniform ranks in ``0..L``."""
    u = (np.asarray(ranks, dtype=np.float64) + 0.5) / (L + 1)
    return u.mean(0), u.var(0, ddof=1), 0.5, (1.0 - 1.0 / (L + 1) ** 2) / 12.0


def _moment_z(ranks: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """z-scores of the rank mean and variance against uniform ranks. The mean's Monte-Carlo sd is
    ``sqrt(var / N)`` with the observed variance (``1 / (12 N)`` for uniform ranks; a U-shaped histogram has a
    larger one, which would otherwise read as a shifted mean); the variance's is ``sqrt(1 / (180 N))`` (the
    variance of ``(u - 1/2)^2`` for ``u ~ U(0, 1)`` is ``1/80 - 1/144 = 1/180``)."""
    n = ranks.shape[0]
    mean, var, m0, v0 = _rank_moments(ranks, L)
    return mean, var, (mean - m0) / np.sqrt(np.maximum(var, 1e-12) / n), (var - v0) / np.sqrt(1.0 / (180.0 * n))


TAIL = 0.05  #: tail fraction of the joint statistics' "both tails over-populated" (wrong shape) reading


def _tail_z(ranks: np.ndarray, L: int, tail: float = TAIL) -> tuple[float, float, float]:
    """Binomial z-scores of the fractions of runs in the lowest and highest ``k = round(tail (L + 1))`` ranks
    (each has probability ``k / (L + 1)`` when the ranks are uniform on ``0..L``); returns ``(z_low, z_high, p0)``."""
    ranks = np.asarray(ranks).reshape(-1)
    k = max(1, int(round(tail * (L + 1))))
    p0 = k / (L + 1)
    sd = np.sqrt(p0 * (1 - p0) / len(ranks))
    return float(((ranks < k).mean() - p0) / sd), float(((ranks > L - k).mean() - p0) / sd), p0


def _rank_reading(ok: bool, z_mean: float, z_var: float, z_max: float, *, tails: tuple[float, float] | None = None) -> str:
    """Reading of a rank statistic that failed (or passed) its KS test, from its mean and variance z-scores.

    Marginal ranks (``tails=None``): a mean off 1/2 is a bias (below 1/2: draws above the truth), a
    U-shaped histogram (variance above 1/12) is over-confidence, a hump (below) under-confidence. Joint ranks
    (``tails``: z-scores of the low and high tails, where low means the truth is in the posterior's outskirts):
    both tails over-populated is a wrong shape ("miscalibrated": e.g. wrong correlations put the truth too
    often both near the mode and far out); otherwise a mean below 1/2 puts the truth in low-density regions
    (over-confident, or biased), above 1/2 in high-density ones (under-confident)."""
    if ok:
        return "calibrated"
    if tails is not None:
        if min(tails) > z_max:
            return "miscalibrated"
        if z_mean < -z_max:
            return "over-confident"
        if z_mean > z_max:
            return "under-confident"
        return "miscalibrated"
    if abs(z_mean) > z_max:
        return "biased"
    if z_var > z_max:
        return "over-confident"
    if z_var < -z_max:
        return "under-confident"
    return "miscalibrated"


def check_sbc(res: SBCResult, alpha: float = 0.01) -> dict:
    """Pass if every parameter's KS p-value exceeds ``alpha / p`` (Bonferroni).

    Each parameter also gets a reading from the mean and variance of its normalised ranks, judged at
    ``z_max = Phi^-1(1 - alpha / (4 p))`` (two-sided, Bonferroni over parameters and the two moments): a
    failing parameter whose mean rank is off is "biased" (``direction``: the draws lie above or below the
    truth), one with too many extreme ranks (U shape) "over-confident", too few (hump) "under-confident",
    otherwise "miscalibrated". A passing parameter reads "calibrated".
    """
    p = len(res.ks_pvalues)
    thr = alpha / p
    z_max = float(stats.norm.isf(alpha / (4 * p)))
    mean, var, z_mean, z_var = _moment_z(res.ranks, res.num_draws)
    per = {}
    for j, (n, v) in enumerate(zip(res.names, res.ks_pvalues)):
        ok = bool(v > thr)
        reading = _rank_reading(ok, z_mean[j], z_var[j], z_max)
        per[n] = {
            "ks_pvalue": float(v),
            "pass": ok,
            "mean_rank": float(mean[j]),
            "rank_variance": float(var[j]),
            "z_mean": float(z_mean[j]),
            "z_variance": float(z_var[j]),
            "reading": reading,
        }
        if reading == "biased":
            per[n]["direction"] = "draws above the truth" if z_mean[j] < 0 else "draws below the truth"
    return {
        "pass": all(v["pass"] for v in per.values()),
        "per_parameter": per,
        "reading": _worst_reading([v["reading"] for v in per.values()]),
        "thresholds": {
            "alpha": alpha,
            "ks_pvalue_min": thr,
            "correction": "Bonferroni over parameters",
            "reading_z_max": z_max,
            "reading_rule": "mean rank z (sd sqrt(var / N)) and variance z (sd 1/sqrt(180 N)) beyond z_max = Phi^-1(1 - alpha/(4 p))",
        },
        "num_runs": int(res.ranks.shape[0]),
        "num_draws": int(res.num_draws),
    }


_READING_ORDER = ("biased", "over-confident", "miscalibrated", "under-confident", "calibrated")


def _worst_reading(readings) -> str:
    readings = list(readings)
    return next((r for r in _READING_ORDER if r in readings), "calibrated")


# -- TARP ------------------------------------------------------------------------------------------------------
@dataclass
class TARPResult:
    alpha: np.ndarray  # (K,) credibility grid
    ecp: np.ndarray  # (K,) expected coverage probability
    f: np.ndarray  # (N,) fraction of draws closer to the reference than the truth
    atc: float  # int (ECP - alpha) d alpha
    ks_pvalue: float
    num_draws: int = 0  # L (f takes the values k / L)


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
    return TARPResult(alpha=alpha, ecp=ecp, f=f, atc=atc, ks_pvalue=pval, num_draws=samples.shape[1])


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


def _check_log_densities(log_density_truth, log_density_samples) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` log densities at the truths and ``(N, L)`` at the draws, checked: shapes agree, draws finite."""
    lt = np.asarray(log_density_truth, dtype=np.float64).reshape(-1)
    ls = np.asarray(log_density_samples, dtype=np.float64)
    if ls.ndim != 2 or ls.shape[0] != lt.shape[0]:
        raise LatentInferError(f"coverage: log densities of truth (N,) and draws (N, L) disagree: {lt.shape} vs {ls.shape}")
    if not np.isfinite(ls).all():
        raise LatentInferError("coverage: non-finite log density at posterior draws")
    return lt, ls


def run_hpd_coverage(log_density_truth, log_density_samples, grid: int = 101) -> HPDResult:
    """Expected coverage of highest-posterior-density regions.

    ``log_density_truth`` ``(N,)`` and ``log_density_samples`` ``(N, L)``: the posterior's log density (any
    constant offset per run, e.g. an unnormalised log posterior) at the truth and at its own draws.
    ``c_i`` = fraction of draws denser than the truth.
    """
    lt, ls = _check_log_densities(log_density_truth, log_density_samples)
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
    rs = {v["reading"] for v in per.values()}
    if "over-confident" in rs and "conservative" in rs:
        reading = "miscalibrated"  # too much coverage at some levels, too little at others: wrong shape
    elif "over-confident" in rs:
        reading = "over-confident"
    elif "conservative" in rs:
        reading = "under-confident"
    else:
        reading = "calibrated"
    return {
        "pass": all(v["pass"] for v in per.values()),
        "levels": per,
        "reading": reading,
        "thresholds": {"sigmas": sigmas, "rule": "fail if coverage < level - sigmas * sqrt(level (1 - level) / N)"},
        "num_runs": int(n),
    }


# -- Density rank (SBC of the posterior log density) -----------------------------------------------------------
@dataclass
class DensityRankResult:
    ranks: np.ndarray  # (N,) number of draws less dense than the truth, 0..L (ties split at random)
    num_draws: int  # L
    ks_pvalue: float


def run_density_rank(log_density_truth, log_density_samples, *, seed: int = 0) -> DensityRankResult:
    """Rank of ``log q(theta_true | x)`` among ``log q(draws | x)`` for each run (the SBC rank of the posterior
    log density); uniform on ``0..L`` if the posterior is calibrated, whatever its dimension.

    Inputs as :func:`run_hpd_coverage` (any constant offset per run). Ties are split at random, and the KS
    test uses the randomised continuous rank ``(r + U) / (L + 1)``, exactly ``U(0, 1)`` if calibrated.
    """
    lt, ls = _check_log_densities(log_density_truth, log_density_samples)
    if np.isnan(lt).any():
        raise LatentInferError("coverage: NaN log density at a true parameter")
    rng = np.random.default_rng(seed)
    below = (ls < lt[:, None]).sum(1)
    ties = (ls == lt[:, None]).sum(1)
    ranks = below + rng.integers(0, ties + 1)  # -inf at the truth (outside support) -> rank 0
    L = ls.shape[1]
    u = (ranks + rng.uniform(size=ranks.shape)) / (L + 1)
    return DensityRankResult(ranks=ranks, num_draws=L, ks_pvalue=float(stats.kstest(u, "uniform").pvalue))


def check_density_rank(res: DensityRankResult, alpha: float = 0.01) -> dict:
    """Pass if the KS p-value of the density ranks exceeds ``alpha`` (one test, no correction).

    Reading: the mean normalised rank against 1/2 at ``z_max = Phi^-1(1 - alpha / 2)`` (sd ``sqrt(var / N)``):
    below is "over-confident" (the truth is less dense than the draws: too narrow, or shifted), above
    "under-confident"; before that, both tails over-populated (binomial z of the runs in the lowest and highest
    5 % of ranks above ``z_max``) is "miscalibrated" (wrong shape), and so is a failing test with the mean in
    the band."""
    ranks = res.ranks[:, None]
    mean, var, z_mean, z_var = _moment_z(ranks, res.num_draws)
    z_max = float(stats.norm.isf(alpha / 2))
    z_lo, z_hi, p0 = _tail_z(res.ranks, res.num_draws)
    ok = bool(res.ks_pvalue > alpha)
    return {
        "pass": ok,
        "ks_pvalue": float(res.ks_pvalue),
        "mean_rank": float(mean[0]),
        "rank_variance": float(var[0]),
        "z_mean": float(z_mean[0]),
        "z_tails": {"truth_least_dense": z_lo, "truth_most_dense": z_hi},
        "reading": _rank_reading(ok, float(z_mean[0]), float(z_var[0]), z_max, tails=(z_lo, z_hi)),
        "thresholds": {
            "ks_pvalue_min": alpha,
            "reading_z_max": z_max,
            "tail_fraction": p0,
            "reading_rule": (
                "both tails (binomial z of the runs in the lowest / highest tail_fraction of ranks) above z_max: miscalibrated "
                "(wrong shape); else mean normalised rank z (sd sqrt(var / N)) below -z_max: over-confident, above z_max: under-confident"
            ),
        },
        "num_runs": int(len(res.ranks)),
        "num_draws": int(res.num_draws),
    }


# -- TARP with data-dependent references -----------------------------------------------------------------------
def _whitening(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-run mean ``(N, p)`` and lower Cholesky factor ``(N, p, p)`` of the points' covariance."""
    mean = samples.mean(1)
    c = samples - mean[:, None, :]
    cov = np.einsum("nli,nlj->nij", c, c) / (samples.shape[1] - 1)
    p = samples.shape[2]
    cov = cov + 1e-12 * np.trace(cov, axis1=1, axis2=2)[:, None, None] / p * np.eye(p)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as e:
        raise LatentInferError("coverage: posterior draws of a run have a singular covariance (need L > p distinct draws)") from e
    return mean, chol


def run_tarp_local(thetas, samples, *, inflate: float = 0.5, seed: int = 0, grid: int = 101) -> TARPResult:
    """TARP with data-dependent references ``N(mean, inflate^2 cov)`` and distances whitened by ``cov``.

    ``mean`` and ``cov`` are those of each run's L draws pooled with its truth: a symmetric function of the
    L + 1 points, which are exchangeable when the posterior is calibrated, so the truth's distance rank (and
    ``f``) is exactly uniform, as TARP's argument needs (the reference and metric may depend on the data, not on
    which point is the truth). With the reference near the posterior mean, ``f`` is close to the Mahalanobis
    rank of the truth among the draws: a joint statistic. The default ``inflate = 0.5`` keeps the references
    near the posterior (power against a wrong joint falls as they move out: tests/coverage/test_coverage_joint.py) while
    keeping them spread, as TARP's sufficiency argument wants."""
    thetas, samples = _check_shapes(thetas, samples)
    mean, chol = _whitening(np.concatenate([samples, thetas[:, None, :]], 1))
    z = np.random.default_rng(seed).standard_normal(mean.shape)
    n, L, p = samples.shape
    # whitened coordinates: w = chol^-1 (theta - mean); the references are mean + inflate * chol z -> inflate * z
    t = np.linalg.solve(chol, (thetas - mean)[..., None])[..., 0]
    s = np.linalg.solve(chol[:, None], (samples - mean[:, None, :])[..., None])[..., 0]
    ref = inflate * z
    d_truth = np.linalg.norm(t - ref, axis=-1)
    d_samp = np.linalg.norm(s - ref[:, None, :], axis=-1)
    f = (d_samp < d_truth[:, None]).mean(1)
    alpha = np.linspace(0.0, 1.0, grid)
    ecp = (f[None, :] < alpha[:, None]).mean(1)
    atc, pval = float(0.5 - f.mean()), float(stats.kstest(f, "uniform").pvalue)
    return TARPResult(alpha=alpha, ecp=ecp, f=f, atc=atc, ks_pvalue=pval, num_draws=L)


def check_tarp_local(res: TARPResult, alpha: float = 0.01, atc_sigmas: float = 3.0) -> dict:
    """As :func:`check_tarp` (KS at ``alpha``, ``|ATC|`` within ``atc_sigmas / sqrt(12 N)``), with a reading of
    the ATC sign, which local references make meaningful: the truth lies further from a reference near the
    posterior than the draws do when the posterior is too narrow or shifted (ECP below the diagonal, ATC < 0:
    "over-confident"), nearer when too wide (ATC > 0: "under-confident"). Both tails of ``f`` over-populated
    (binomial z above ``Phi^-1(1 - alpha / 2)``; the lowest and highest 5 % of ``f``) reads "miscalibrated"
    (wrong shape), before the ATC sign."""
    out = check_tarp(res, alpha=alpha, atc_sigmas=atc_sigmas)
    L = res.num_draws
    # f near 1: the truth is further from the reference than almost every draw (the posterior's outskirts)
    z_far, z_near, p0 = _tail_z(L - np.rint(res.f * L).astype(int), L)
    z_max = float(stats.norm.isf(alpha / 2))
    out["z_tails"] = {"truth_far": z_far, "truth_near": z_near}
    out["thresholds"].update(tail_fraction=p0, reading_z_max=z_max)
    if out["pass"]:
        reading = "calibrated"
    elif min(z_far, z_near) > z_max:
        reading = "miscalibrated"
    elif abs(res.atc) >= out["thresholds"]["abs_atc_max"]:
        reading = "over-confident" if res.atc < 0 else "under-confident"
    else:
        reading = "miscalibrated"
    out["reading"] = reading
    out["references"] = "N(mean, inflate^2 cov) of the draws pooled with the truth; distances whitened by cov"
    return out


def to_record(obj) -> dict:
    """A JSON-able dict of a result dataclass (arrays as lists)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(obj).items()}
