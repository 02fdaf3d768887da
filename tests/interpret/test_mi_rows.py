"""MI on enough rows (issue 20, item 4): the estimators' bias at n = 2000 against closed forms, with tolerances from
the Monte-Carlo error over independent replicates, and the KSG cross-check against scikit-learn's estimator."""

from __future__ import annotations

import numpy as np
import pytest

from latentinfer.errors import DataError
from latentinfer.interpret.knn import ksg_mi, ksg_mi_error
from latentinfer.interpret.mi import MISettings, gaussian_mi, gmm_mi

N = 2000  # the row count the scans use
R = 6     # independent replicates per case: the Monte-Carlo error of the mean estimate is sd / sqrt(R)


def _gauss(rng, rho):
    x = rng.normal(size=N)
    return x, rho * x + np.sqrt(1 - rho**2) * rng.normal(size=N)


def _unif(rng, a):  # y = x + a u, x and u uniform: MI = a / 2 - ln a for a <= 1 (trapezoid density of y)
    x = rng.uniform(size=N)
    return x, x + a * rng.uniform(size=N)


def _tolerance(est):
    """4 Monte-Carlo standard errors of the mean over replicates, plus the plug-in bias of a Gaussian fit, 1/(2n)
    (E[r^2]/2 for independent data: the one bias a K = 1 mixture cannot avoid)."""
    return 4 * np.std(est, ddof=1) / np.sqrt(len(est)) + 1 / (2 * N)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_gmm_mi_unbiased_on_correlated_gaussians_at_2000_rows(rho):
    truth = gaussian_mi(rho)
    est, err = [], []
    for r in range(R):
        e = gmm_mi(*_gauss(np.random.default_rng([r, int(100 * rho)]), rho), MISettings(n_bootstrap=10), seed=r)
        est.append(e.mi)
        err.append(e.err)
    assert abs(np.mean(est) - truth) <= _tolerance(est), (np.mean(est), truth)
    if rho > 0:  # the bootstrap error describes the spread of independent replicates (a chi(5) sd: factor 2.5 wide)
        assert 0.4 < np.mean(err) / np.std(est, ddof=1) < 2.5


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_ksg_mi_unbiased_on_correlated_gaussians_at_2000_rows(rho):
    est = [ksg_mi(*_gauss(np.random.default_rng([r, 7]), rho), seed=r) for r in range(2 * R)]
    assert abs(np.mean(est) - gaussian_mi(rho)) <= _tolerance(est), (np.mean(est), gaussian_mi(rho))


def test_ksg_mi_bias_on_sharp_edges_is_below_the_independence_threshold():
    """Uniform noise on a uniform design (sharp-edged joint density, like the corpus's parameter box): KSG is biased
    low by ~0.03 nat at n = 2000 (measured: 0.471 against 0.5 over 12 replicates, 4 MC errors 0.027), so the bias is
    not within the Monte-Carlo error. What the scans need is that it stays below the 0.05-nat independence threshold
    of the anchor experiment; the test holds it to that, with the Monte-Carlo error on top."""
    est = [ksg_mi(*_unif(np.random.default_rng([r, 7]), 1.0), seed=r) for r in range(2 * R)]
    assert abs(np.mean(est) - 0.5) <= 0.05 + _tolerance(est), np.mean(est)
    assert np.mean(est) < 0.5  # biased low, as measured: the docstring's claim holds


def test_ksg_matches_scikit_learn_and_its_error_is_the_replicate_spread():
    from scipy.special import ndtri
    from scipy.stats import rankdata
    from sklearn.feature_selection import mutual_info_regression

    ours, theirs, errs = [], [], []
    for r in range(R):
        x, y = _gauss(np.random.default_rng([r, 3]), 0.7)
        m, e = ksg_mi_error(x, y, seed=r)
        ours.append(m)
        errs.append(e)
        u = ndtri(rankdata(np.column_stack([x, y]), axis=0) / (N + 1))
        theirs.append(mutual_info_regression(u[:, :1], u[:, 1], n_neighbors=3, random_state=r)[0])
    # the same estimator: equal up to the tie-breaking jitter and sklearn's own rescaling
    np.testing.assert_allclose(ours, theirs, atol=0.01)
    assert 0.4 < np.mean(errs) / np.std(ours, ddof=1) < 2.5


def test_ksg_bad_input():
    with pytest.raises(DataError, match="NaN"):
        ksg_mi([1.0, np.nan] * 10, np.arange(20.0))
    with pytest.raises(DataError, match="rows"):
        ksg_mi([1.0, 2.0], [1.0, 3.0])
