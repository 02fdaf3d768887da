"""The 2-d linear-Gaussian coverage problem of ``tests/coverage`` (see ``test_coverage_joint.py``'s docstring):
prior N(0, I), data x ~ N(theta, C), exact posterior N(m(x), S) with marginal sds 0.2, 0.3 and correlation 0.9;
exact and broken Gaussian posteriors, and all five checks of one study (:func:`judge`)."""

from __future__ import annotations

import numpy as np

from latentinfer.coverage.diagnostics import (
    check_density_rank,
    check_hpd_coverage,
    check_sbc,
    check_tarp,
    check_tarp_local,
    run_density_rank,
    run_hpd_coverage,
    run_sbc,
    run_tarp,
    run_tarp_local,
)

L = 200
SD = np.array([0.2, 0.3])
RHO = 0.9


def _cov(rho):
    return np.array([[1.0, rho], [rho, 1.0]]) * np.outer(SD, SD)


S = _cov(RHO)
C = np.linalg.inv(np.linalg.inv(S) - np.eye(2))  # noise covariance that gives posterior covariance S
POSTERIORS = {
    "exact": lambda m: (m, S),
    "independent": lambda m: (m, np.diag(np.diag(S))),
    "flipped": lambda m: (m, _cov(-RHO)),
    "overconfident": lambda m: (m, 0.5 * S),
    "biased": lambda m: (m + SD, S),
    "conservative": lambda m: (m, 2.0 * S),
}


def simulate(n, rng):
    """Truths from the prior, data from the likelihood; returns truths and exact posterior means."""
    theta = rng.standard_normal((n, 2))
    x = theta + rng.standard_normal((n, 2)) @ np.linalg.cholesky(C).T
    return theta, x @ (S @ np.linalg.inv(C)).T


def _logq(points, mean, cov):
    r = points - mean
    return -0.5 * np.einsum("...i,ij,...j->...", r, np.linalg.inv(cov), r)


def judge(case, n, seed) -> dict:
    """All five checks of one study of ``case`` with ``n`` data sets."""
    rng = np.random.default_rng(seed)
    theta, m = simulate(n, rng)
    mean, cov = POSTERIORS[case](m)
    draws = mean[:, None, :] + rng.standard_normal((n, L, 2)) @ np.linalg.cholesky(cov).T
    lt, ld = _logq(theta, mean, cov), _logq(draws, mean[:, None, :], cov)
    return {
        "sbc": check_sbc(run_sbc(theta, draws, seed=2)),
        "tarp": check_tarp(run_tarp(theta, draws, seed=3)),
        "hpd": check_hpd_coverage(run_hpd_coverage(lt, ld)),
        "density_rank": check_density_rank(run_density_rank(lt, ld, seed=4)),
        "tarp_local": check_tarp_local(run_tarp_local(theta, draws, seed=5)),
    }
