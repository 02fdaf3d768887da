"""``Analysis.with_data``: the same program on another data vector (used by coverage and SBI)."""

from __future__ import annotations

import pytest
import torch
from truth_models import LinearGaussian

from latentinfer import LatentInferError


def test_with_data_is_a_copy():
    lg = LinearGaussian(d=2, n=6)
    y2 = lg.y + 1.0
    b = lg.analysis.with_data({"lin": y2})
    assert torch.equal(b.likelihoods[0].data, y2) and torch.equal(lg.analysis.likelihoods[0].data, lg.y)
    vals = {"z0": torch.tensor(0.3), "z1": torch.tensor(-0.2)}
    ll_a = lg.analysis.log_likelihoods(vals)["lin"]
    ll_b = b.log_likelihoods(vals)["lin"]
    mean = lg.A @ torch.tensor([0.3, -0.2], dtype=torch.float64) + lg.b
    exact = torch.distributions.MultivariateNormal(mean, lg.C).log_prob(y2)
    torch.testing.assert_close(ll_b, exact)
    assert not torch.isclose(ll_a, ll_b)


def test_with_data_bad_input():
    lg = LinearGaussian(d=2, n=6)
    with pytest.raises(LatentInferError, match="unknown likelihood"):
        lg.analysis.with_data({"nope": lg.y})
    with pytest.raises(LatentInferError, match="length 6"):
        lg.analysis.with_data({"lin": torch.zeros(4)})
    with pytest.raises(LatentInferError, match="NaN"):
        lg.analysis.with_data({"lin": torch.full((6,), float("nan"))})
