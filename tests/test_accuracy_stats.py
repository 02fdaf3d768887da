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
