"""Distribution-free intervals for the dchi^2 quantiles of held-out rows (``latentinfer.ive.accuracy``).

Truth: the coverage of an order-statistic interval is an exact binomial sum, so Monte-Carlo frequencies over many
samples must match it within their binomial error; an off-by-one in the order statistics moves the coverage by far
more than that error.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from latentinfer.ive.accuracy import GOAL, quantile_below_confidence, quantile_interval, summarise

N_REP = 4000


@pytest.mark.parametrize("n, q", [(100, 0.5), (100, 0.99), (400, 0.99), (30, 0.5)])
def test_quantile_interval_coverage_matches_exact_binomial(n, q):
    rng = np.random.default_rng(1)
    truth = -np.log(1 - q)                       # quantile of Exp(1)
    cover, coverage = 0, None
    for _ in range(N_REP):
        lo, hi, coverage = quantile_interval(rng.exponential(size=n), q)
        cover += (lo is None or lo <= truth) and (hi is None or truth < hi)
    freq = cover / N_REP
    assert coverage >= 0.68
    sigma = np.sqrt(coverage * (1 - coverage) / N_REP)
    assert abs(freq - coverage) < 4 * sigma + 1e-12, (freq, coverage)


def test_quantile_interval_ends():
    x = np.arange(1.0, 101.0)                    # 1..100
    lo, hi, cov = quantile_interval(x, 0.99)
    assert hi is None                            # 100 values cannot bound the 99th percentile from above
    # largest r with P(Bin(100, .99) < r) <= 0.16
    r = max(k for k in range(101) if binom.cdf(k - 1, 100, 0.99) <= 0.16)
    assert lo == float(r)
    assert cov == pytest.approx(1 - binom.cdf(r - 1, 100, 0.99))
    lo, hi, cov = quantile_interval(x, 0.5)
    assert lo < 50.5 < hi and 0.68 <= cov < 0.8


def test_goal_confidence_exact_and_calibrated():
    # every one of 100 values below the threshold: confidence 1 - 0.99**100 for the 99th percentile
    assert quantile_below_confidence(np.zeros(100), 0.99, 0.5) == pytest.approx(1 - 0.99 ** 100)
    assert quantile_below_confidence(np.ones(100), 0.99, 0.5) == 0.0
    # calibration: when the true 99th percentile sits exactly at the threshold, confidence >= 0.9 happens <= 10% of the time
    rng = np.random.default_rng(2)
    conf = np.array([quantile_below_confidence(rng.uniform(size=300), 0.99, 0.99) for _ in range(N_REP)])
    frac = np.mean(conf >= 0.9)
    assert frac <= 0.1 + 4 * np.sqrt(0.09 / N_REP)
    # and a population far below the threshold is recognised
    assert quantile_below_confidence(rng.uniform(size=300) * 0.1, 0.99, 0.99) > 0.95


def test_summarise_reports_intervals_and_goal_confidence():
    s = summarise(np.random.default_rng(3).chisquare(1, size=200) * 0.05)
    assert s["median_ci68"][0] <= s["median"] <= s["median_ci68"][1]
    assert s["p99_ci68"][0] <= s["p99"]
    assert set(s["goal_confidence"]) == set(GOAL)
    assert 0.0 <= s["goal_confidence"]["p99"] <= 1.0


def _rows(rng, n, dependence):
    """200 held-out rows over a 4-parameter box; dchi2 lognormal, its scale growing with parameter 'c' by
    ``dependence`` e-folds across the box (0: the error does not depend on where the row is)."""
    names = ["a", "b", "c", "d"]
    low, high = np.array([0.0, 1.0, 0.0, -1.0]), np.array([1.0, 2.0, 0.15, 1.0])
    params = low + rng.random((n, 4)) * (high - low)
    d = 0.04 * np.exp(dependence * params[:, 2] / 0.15 + 0.8 * rng.standard_normal(n))
    return params, names, d, low, high


def test_error_by_parameter_finds_the_parameter_the_error_grows_with():
    from latentinfer.ive.accuracy import describe_where, error_by_parameter

    params, names, d, low, high = _rows(np.random.default_rng(3), 200, dependence=2.0)
    w = error_by_parameter(params, names, d, low, high)
    assert w["leading"] == "c" and w["aim"] == "c=0.075:0.15"
    c = w["parameters"]["c"]
    assert c["spearman"] > 0.4 and c["median_high"] > 2 * c["median_low"] and c["over_high"] > c["over_low"]
    assert c["over_span"][0] >= 0 and c["over_span"][1] <= 0.15 and w["n_over"] == c["over_low"] + c["over_high"]
    assert "error grows with c" in describe_where(w) and "--box c=0.075:0.15" in describe_where(w)
    # the error falling with the parameter aims at the lower half
    w = error_by_parameter(params, names, 0.04 * np.exp(-2.0 * params[:, 2] / 0.15), low, high)
    assert w["leading"] == "c" and w["aim"] == "c=0:0.075"


def test_error_by_parameter_flags_nothing_when_the_error_is_everywhere():
    """Built to fail: with no dependence the family-wise false alarm rate is at most alpha = 0.01 (Bonferroni over
    4 parameters), so 600 independent null cases flag a parameter at most the 99.9% quantile of Binomial(600, 0.01)
    times (15); without the correction (alpha per parameter) about 4% of them alarm (about 24: the test fails)."""
    from latentinfer.ive.accuracy import describe_where, error_by_parameter

    rng = np.random.default_rng(4)
    alarms = 0
    for _ in range(600):
        params, names, d, low, high = _rows(rng, 200, dependence=0.0)
        w = error_by_parameter(params, names, d, low, high)
        alarms += w["leading"] is not None
        assert (w["aim"] is None) == (w["leading"] is None)
    assert alarms <= binom.ppf(0.999, 600, 0.01), alarms
    assert "no parameter stands out" in describe_where(w) or w["leading"] is not None
    # and a weak dependence that 200 rows cannot resolve is not claimed
    params, names, d, low, high = _rows(np.random.default_rng(5), 200, dependence=0.05)
    assert error_by_parameter(params, names, d, low, high)["leading"] is None
