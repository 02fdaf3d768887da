"""The coverage diagnostics pass on exact posteriors and fail on over-confident and biased ones.

The posteriors are the exact linear-Gaussian ones (closed form), drawn for N = 400 simulated data sets with
L = 200 draws each: exact, covariance scaled by 0.5 (over-confident), and mean shifted by +1 posterior sd in
every parameter (biased). Each check is a statistical test at alpha = 0.01, so the exact case passes with
probability >= 0.97 (seeds fixed: the outcome is deterministic).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from truth_models import LinearGaussian, gaussian_samples

from latentinfer import LatentInferError
from latentinfer.coverage import (
    check_hpd_coverage,
    check_sbc,
    check_tarp,
    run_hpd_coverage,
    run_sbc,
    run_tarp,
)

N, L = 1000, 200


@pytest.fixture(scope="module")
def study():
    lg = LinearGaussian(d=3, n=12, seed=1)
    rng = np.random.default_rng(0)
    thetas = rng.standard_normal((N, lg.d))
    noise = rng.standard_normal((N, lg.n)) @ np.linalg.cholesky(lg.C.numpy()).T
    ys = thetas @ lg.A.numpy().T + lg.b.numpy() + noise
    means = lg.post_mean(torch.as_tensor(ys)).numpy()
    S = lg.post_cov.numpy()
    sd = np.sqrt(np.diag(S))
    cases = {"exact": (means, S), "overconfident": (means, 0.5 * S), "biased": (means + sd, S)}
    out = {}
    for k, (m, cov) in cases.items():
        draws = gaussian_samples(m, cov, L, np.random.default_rng(1))
        q = stats.multivariate_normal(np.zeros(lg.d), cov)
        logq_truth = q.logpdf(thetas - m)
        logq_draws = q.logpdf((draws - m[:, None, :]).reshape(-1, lg.d)).reshape(N, L)
        out[k] = (thetas, draws, logq_truth, logq_draws)
    return out


def _verdicts(case):
    thetas, draws, lt, ld = case
    return (
        check_sbc(run_sbc(thetas, draws, seed=2)),
        check_tarp(run_tarp(thetas, draws, seed=3)),
        check_hpd_coverage(run_hpd_coverage(lt, ld)),
    )


def test_exact_posterior_passes(study):
    sbc, tarp, hpd = _verdicts(study["exact"])
    assert sbc["pass"], sbc
    assert tarp["pass"], tarp
    assert hpd["pass"], hpd
    assert all(v["reading"] == "calibrated" for v in hpd["levels"].values()), hpd
    assert sbc["thresholds"]["ks_pvalue_min"] == pytest.approx(0.01 / 3)


@pytest.mark.parametrize("case", ["overconfident", "biased"])
def test_miscalibrated_posteriors_fail(study, case):
    sbc, tarp, hpd = _verdicts(study[case])
    assert not sbc["pass"], sbc
    assert not hpd["pass"], hpd
    assert any(v["reading"] == "over-confident" for v in hpd["levels"].values())
    # over-confidence keeps ATC near 0 and fails TARP's KS test; the 1-sigma shift fails both
    assert not tarp["pass"], tarp


def test_conservative_posterior_is_flagged_not_failed(study):
    thetas, _, _, _ = study["exact"]
    lg = LinearGaussian(d=3, n=12, seed=1)
    S = 2.0 * lg.post_cov.numpy()
    means = study["exact"][1].mean(1)  # close to the exact means
    draws = gaussian_samples(means, S, L, np.random.default_rng(5))
    q = stats.multivariate_normal(np.zeros(3), S)
    hpd = check_hpd_coverage(
        run_hpd_coverage(q.logpdf(thetas - means), q.logpdf((draws - means[:, None]).reshape(-1, 3)).reshape(N, L))
    )
    assert hpd["pass"] and any(v["reading"] == "conservative" for v in hpd["levels"].values())
    tarp = check_tarp(run_tarp(thetas, draws))
    assert not tarp["pass"] and tarp["reading"] != "calibrated"  # TARP is two-sided: under-confidence fails it


def test_shapes_are_checked():
    with pytest.raises(LatentInferError, match="disagree"):
        run_sbc(np.zeros((10, 2)), np.zeros((10, 5, 3)))
    with pytest.raises(LatentInferError, match="NaN"):
        run_tarp(np.full((10, 2), np.nan), np.zeros((10, 5, 2)))
