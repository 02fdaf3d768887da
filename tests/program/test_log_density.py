"""The fast log density (latentinfer.program.LogDensity) against the Pyro program it stands for.

- fused (truncated decoder, whitened Gaussian likelihoods) and unfused paths equal
  ``Analysis.unconstrained_log_density`` to float rounding in float64, on toy programs with every prior kind and on
  the shipped Planck latent, physical and SPT-3G programs;
- the truncated IVE decoder equals the full one, sliced, in float64 and float32;
- float32 against float64 on the bundle's held-out rows: |d chi2| < 0.01 under Planck plik_lite + low-ell TT;
- data sets as a batch dimension give, per data set, what ``Analysis.with_data`` gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latentinfer as li
from conftest import make_linear_gaussian, nuisance_likelihood
from latentinfer.config import validate_config
from latentinfer.errors import DataError
from latentinfer.program import LogDensity
from latentinfer.runner import build_analysis


def _planck(space="latent", liks=None, priors=None):
    liks = liks or [{"name": "planck2018-plik-lite", "spectra": "TTTEEE"}, "planck2018-lowl-tt"]
    return build_analysis(validate_config({"model": "cmb-lcdm", "space": space, "likelihoods": liks, "priors": priors or {}}))


def _points(an, n, seed, scale=0.3):
    """Unconstrained points around the prior's centre: a MAP-like point and spread draws."""
    draws = an.sample_prior(n, seed=seed)
    return an.unconstrain({k: draws[k] for k in an.parameter_names}).detach() * scale


def _assert_same(an, u, ld):
    ref = an.unconstrained_log_density(u)
    got = ld(u)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-11, atol=1e-8)


def test_every_prior_kind_and_a_correlated_nuisance_block():
    lg = make_linear_gaussian(dim=4, n=30, seed=2)
    lik = nuisance_likelihood(lg)
    an = li.Analysis(lg.forward(), lik, priors={"z0": {"uniform": [-3, 3]}, "z1": {"truncnormal": [0, 1, -1, 2]}, "z3": {"fixed": 0.2}})
    u = _points(an, 16, 0)
    _assert_same(an, u, LogDensity(an))
    _assert_same(an, u, LogDensity(an, fused=False))
    lp, g = LogDensity(an).value_and_grad(u)
    uu = u.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(an.unconstrained_log_density(uu).sum(), uu)
    np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("space", ["latent", "physical"])
def test_planck_programs(space):
    an = _planck(space, priors={"tau": {"normal": [0.0506, 0.0086]}} if space == "physical" else None)
    ld = LogDensity(an)
    assert type(ld.forward).__name__ in ("TruncatedDecoder", "Sequential")  # the fused path is taken
    u = _points(an, 8, 1, scale=0.05)
    _assert_same(an, u, ld)
    _assert_same(an, u, LogDensity(an, fused=False))


def test_spt_program_with_its_calibration_nuisances():
    an = _planck(liks=["spt3g-2018-ttteee"])
    u = _points(an, 8, 2, scale=0.05)
    _assert_same(an, u, LogDensity(an))


def test_truncated_decoder_equals_the_full_one():
    model = li.load_model("cmb-lcdm")
    dec = model.module
    z = torch.randn(5, model.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lengths = {"TT": 2507, "TE": 1995, "EE": 1000}
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        full = {k: v.to(dtype) for k, v in dec(z).items()}
        tr = dec.truncated(lengths).to(dtype)
        got = tr(z.to(dtype))
        assert set(got) == set(lengths)  # PP not computed
        for s, n in lengths.items():
            assert got[s].shape == (5, n)
            np.testing.assert_allclose(got[s].numpy(), full[s][..., :n].numpy(), rtol=rtol, atol=rtol * float(full[s].abs().max()))
    with pytest.raises(ValueError, match="unknown spectrum"):
        dec.truncated({"BB": 10})


def test_float32_path_agrees_with_float64_on_held_out_rows():
    """Planck plik_lite TTTEEE + low-ell TT at the physical parameters of the bundle's held-out rows: the float32
    program's chi2 is within 0.01 of the float64 one on every row (A_planck at 1)."""
    an = _planck("physical")
    v = np.load(li.load_model("cmb-lcdm").meta.get("validation", "") or _validation_path(), allow_pickle=False)
    params = v["params"]
    names = [str(n) for n in v["names"]]
    cols = {n: torch.as_tensor(params[:, names.index(n)], dtype=torch.float64) for n in an.input_names}
    cols["A_planck"] = torch.ones(len(params), dtype=torch.float64)
    u = an.unconstrain(cols)
    ok = torch.isfinite(u).all(-1)
    u = u[ok]
    assert len(u) >= 100
    l64, l32 = LogDensity(an), LogDensity(an, dtype=torch.float32)
    xs64, _ = l64.constrain(u)
    ll64 = l64.log_likelihood(xs64, u.shape[:-1])
    ll32 = l32.log_likelihood(xs64, u.shape[:-1])
    dchi2 = 2 * sum((ll64[k] - ll32[k].double()).abs() for k in ll64)
    assert float(dchi2.max()) < 0.01, float(dchi2.max())


def _validation_path():
    from pathlib import Path

    return str(Path(li.__file__).resolve().parents[1] / "models" / "cmb-lcdm" / "validation.npz")


def test_data_sets_as_a_batch_dimension():
    lg = make_linear_gaussian(dim=3, n=20, seed=4)
    an = lg.analysis()
    ys = lg.y + 0.3 * torch.randn(5, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ld = LogDensity(an, data={"data": ys[:, None, :]})
    u = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = ld(u)
    assert got.shape == (5, 4)
    for i in range(5):
        ref = an.with_data({"data": ys[i]}).unconstrained_log_density(u[i])
        np.testing.assert_allclose(got[i].numpy(), ref.numpy(), rtol=1e-12)
    with pytest.raises(DataError, match="needs"):
        LogDensity(an, data={"data": torch.zeros(5, 3)})
