"""The hand-written value and gradient of LogDensity (issue 19) against the autograd backend.

- the shipped Planck latent program (standard-normal latents, the A_planck prior and calibration, plik_lite TTTEEE
  and low-ell TT) at batch shapes (), (1,), (64,), with data sets as a batch dimension, in float64 and float32; the
  physical program (interval transforms and their log-Jacobians, uniform and truncated-normal priors, PhysicalMap);
  SPT-3G, Planck and ACT lensing (window binning, several calibration nuisances, PP, a subtracted vector);
- pieces the hand-written path does not know run through autograd, and are recorded as such in ``paths``;
- ChEES with the same seed gives the same draws under both backends;
- a backward with one wrong sign fails the same comparison (the tolerances are tight enough to see it).

Tolerances. float64: value and gradient to ``rtol = 1e-10`` (gradient: of the point's largest component). float32:
the backends run the same single-precision operations (expansion, binning, whitened Gaussian) but may sum the
reductions of the backward in a different order, so the gradients may differ by the rounding of those sums:
``sqrt(N) eps32 S`` with ``N`` the longest reduction (the 2507 multipoles of the expansion) and ``S`` the size of
the summed terms, propagated to ``u``: the same backward run with every matrix and derivative replaced by its
absolute value (a bound of each sum of |terms|), fed the absolute terms ``|W|^T |w|`` of ``dchi2/dm``. The value's
tolerance is ``sqrt(n_data) eps32`` times its terms (``chi2/2 + |log normalisation|`` per likelihood).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import make_linear_gaussian, nuisance_likelihood

import latentinfer as li
from latentinfer.config import validate_config
from latentinfer.methods.chees import run_chees
from latentinfer.program import LogDensity
from latentinfer.program import handwritten as hw
from latentinfer.runner import build_analysis

EPS32 = torch.finfo(torch.float32).eps
N_REDUCE = 2507  # longest single-precision sum in the backward: the expansion over TT multipoles ell = 2..2508


def _planck(space="latent", priors=None):
    liks = [{"name": "planck2018-plik-lite", "spectra": "TTTEEE"}, "planck2018-lowl-tt"]
    return build_analysis(validate_config({"model": "cmb-lcdm", "space": space, "likelihoods": liks, "priors": priors or {}}))


@pytest.fixture(autouse=True)
def _one_thread():
    """Batch <= 64 runs on one thread, as the samplers run it (chees sets the same): several threads only spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def latent():
    return _planck()


@pytest.fixture(scope="module")
def physical():
    return _planck("physical", priors={"tau": {"normal": [0.0506, 0.0086]}})


def _points(an, shape, seed, scale=0.05):
    """Unconstrained points near the prior's centre, shape ``shape + (n,)``."""
    n = len(an.parameter_names)
    g = torch.Generator().manual_seed(seed)
    u = scale * torch.randn(shape + (n,), generator=g, dtype=torch.float64)
    if "A_planck" in an.parameter_names and an.transforms()["A_planck"](torch.tensor(0.0)) == 0:
        u[..., an.parameter_names.index("A_planck")] += 1.0  # A_planck ~ N(1, 0.0025), identity transform
    return u


def _abs_bound(ld64: LogDensity, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S_value (...), S_grad (..., n))``: the size of the terms that float32 rounding acts on (module docstring)."""
    h = ld64._hand
    dec = h._forward
    with torch.no_grad():
        x, dxdu, _, _ = h._params.value_and_grads(u)
        z = x[..., h._in_slice]
        theory, cache = dec.forward(z)
        nuis = {k: x[..., i] for k, i in h.nuisance_idx.items()}
        pieces, s_nuis, s_val = {}, torch.zeros_like(u), torch.zeros(u.shape[:-1], dtype=u.dtype)
        for hand, lik, _ in h._liks:
            ys = [hand._bin(kind, b, aux, theory[b.field]) for kind, b, aux in hand.plan]
            m = torch.cat(ys, -1)
            m, steps = hand._apply(hand.post, m, nuis)
            w = (hand.data - m) @ hand.W.T
            s_val = s_val + 0.5 * (w * w).sum(-1) + abs(hand.log_norm)
            g_abs = w.abs() @ hand.W.abs()  # the absolute terms of dchi2/dm
            for names, vals, cal, y in steps:  # d(y / A^2)/dA: 2 |g y| / A
                for nme in names:
                    s_nuis[..., h.nuisance_idx[nme]] += (g_abs * y.abs()).sum(-1) / cal.abs() * len(names) / 2
                g_abs = g_abs / cal.abs().unsqueeze(-1)
            for i, (kind, b, aux) in enumerate(hand.plan):
                g = g_abs[..., hand.offsets[i] : hand.offsets[i + 1]]
                wflat, sums, gaps, ncol, bin_of = aux
                abs_aux = (wflat.abs(), [(a, n, w, j, wk.abs()) for a, n, w, j, wk in sums], gaps, ncol, bin_of)
                pieces.setdefault(b.field, []).append((b.start, hand._bin_backward(kind, b, abs_aux, g)))
        # the decoder's backward with |matrices| and |derivatives| (SiLU' <= 1.1, tanh' <= 1)
        ad = copy.copy(dec)
        ad.WT = {s: w.abs() for s, w in dec.WT.items()}
        ad.z_mix = dec.z_mix.abs()
        ad.mlp = copy.copy(dec.mlp)
        ad.mlp.layers = [(W.abs() * (1.1 if act else 1.0), b, act) for W, b, act in dec.mlp.layers]
        acache = dict(cache)
        acache["acts"] = [(None, torch.zeros_like(s)) for _, s in cache["acts"]]  # tanh branch with s = 0: factor 1
        acache["tTE"] = cache["tTE"].abs()
        s_z = ad.backward(acache, pieces)
    s_grad = s_nuis.clone()
    s_grad[..., h._in_slice] += s_z
    return s_val, s_grad * (dxdu.abs() if torch.is_tensor(dxdu) else 1.0)


def _compare(an, u, dtype, data=None, bound=None):
    """Assert the two backends agree at ``u``; returns the largest |difference| / tolerance seen."""
    hand = LogDensity(an, dtype=dtype, data=data)
    auto = LogDensity(an, dtype=dtype, data=data, backend="autograd")
    lh, gh = hand.value_and_grad(u)
    la, ga = auto.value_and_grad(u)
    assert lh.shape == la.shape and gh.shape == ga.shape == u.shape
    assert lh.dtype == gh.dtype == torch.float64
    if dtype == torch.float64:
        tol_v = 1e-10 * la.abs()
        tol_g = 1e-10 * ga.abs().amax(-1, keepdim=True)
    else:
        s_val, s_grad = bound if bound is not None else _abs_bound(LogDensity(an, data=data), u)
        tol_v = math.sqrt(hand.likelihoods[0].n_data) * EPS32 * s_val
        tol_g = math.sqrt(N_REDUCE) * EPS32 * s_grad
    ratio_v = float(((lh - la).abs() / tol_v).max())
    ratio_g = float(((gh - ga).abs() / tol_g.expand_as(ga)).max())
    assert ratio_v <= 1.0, f"value: |hand - autograd| up to {ratio_v:.3g} x the tolerance"
    assert ratio_g <= 1.0, f"gradient: |hand - autograd| up to {ratio_g:.3g} x the tolerance"
    return max(ratio_v, ratio_g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", [(), (1,), (64,)], ids=["scalar", "batch1", "batch64"])
def test_latent_program_equals_autograd(latent, dtype, shape):
    ld = LogDensity(latent, dtype=dtype)
    assert ld.backend == "handwritten" and set(ld.paths.values()) == {"handwritten"}, ld.paths
    _compare(latent, _points(latent, shape, seed=len(shape) + shape[0] if shape else 0), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_data_sets_as_a_batch_dimension(latent, dtype):
    """Coverage's layout: data (G, 1, n_data) against points (G, K, n); each group its own data set."""
    base = LogDensity(latent)
    g = torch.Generator().manual_seed(3)
    data = {}
    for lik in base.likelihoods:
        noise = torch.randn(4, 1, lik.n_data, generator=g, dtype=torch.float64) @ lik.scale_tril.T
        data[lik.name] = lik.data + noise
    u = _points(latent, (4, 5), seed=4)
    _compare(latent, u, dtype, data=data)
    # and per group, the same numbers as a density with that group's data alone
    lp, gr = LogDensity(latent, data=data).value_and_grad(u)
    lp1, gr1 = LogDensity(latent, data={k: v[2, 0] for k, v in data.items()}, backend="autograd").value_and_grad(u[2])
    np.testing.assert_allclose(lp[2].numpy(), lp1.numpy(), rtol=1e-10)
    np.testing.assert_allclose(gr[2].numpy(), gr1.numpy(), rtol=1e-9, atol=1e-10 * float(gr1.abs().max()))


def test_physical_program_transforms_and_physical_map(physical):
    ld = LogDensity(physical)
    assert set(ld.paths.values()) == {"handwritten"}, ld.paths
    assert ld._hand._params.interval and ld._hand._params.trunc and ld._hand._params.uniform
    for shape in [(), (16,)]:
        u = _points(physical, shape, seed=5, scale=0.5)
        _compare(physical, u, torch.float64)
    _compare(physical, _points(physical, (8,), seed=6, scale=0.5), torch.float32)


@pytest.mark.parametrize("lik", ["spt3g-2018-ttteee", "planck2018-lensing", "act-dr6-lensing"])
def test_other_shipped_likelihoods(lik):
    """Window-function (dense) binning, calibration by several nuisances, the PP spectrum, a subtracted vector."""
    an = build_analysis(validate_config({"model": "cmb-lcdm", "space": "latent", "likelihoods": [lik]}))
    assert set(LogDensity(an).paths.values()) == {"handwritten"}
    draws = an.sample_prior(8, seed=0)
    _compare(an, an.unconstrain({k: draws[k] for k in an.parameter_names}).detach(), torch.float64)


def test_uncovered_pieces_fall_back_to_autograd():
    """A plain torch forward model, a likelihood with its own predict, a correlated nuisance block and a prior
    with an exp transform: the hand-written path takes what it knows and autograd the rest, same numbers."""
    import pyro.distributions as dist

    lg = make_linear_gaussian(dim=4, n=30, seed=2)
    lik = nuisance_likelihood(lg)
    plain = li.GaussianLikelihood(lg.y + 0.1, lg.C, name="plain")
    an = li.Analysis(lg.forward(), [lik, plain], priors={"z0": {"uniform": [-3, 3]}, "z1": dist.Gamma(torch.tensor(2.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)), "z3": {"fixed": 0.2}})
    ld = LogDensity(an)
    assert ld.paths == {"parameters": "handwritten+autograd", "forward": "autograd", "likelihood:d": "autograd", "likelihood:plain": "handwritten"}
    u = 0.3 * torch.randn(16, len(an.parameter_names), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _compare(an, u, torch.float64)
    assert LogDensity(an, fused=False).backend == "autograd"
    assert set(LogDensity(an, fused=False).paths.values()) == {"autograd"}
    assert set(LogDensity(an, backend="autograd").paths.values()) == {"autograd"}
    with pytest.raises(li.LatentInferError, match="backend"):
        LogDensity(an, backend="jax")


def test_chees_draws_the_same_under_both_backends(latent):
    """Same seed, same start (around the Laplace approximation, as the chees method starts): the random numbers are
    the same, so the draws differ only by float rounding carried forward by the leapfrog integrator and the
    adaptation: ~1e-11 here, as much as a 1e-15 relative nudge of the start moves them under one backend alone."""
    from latentinfer.program import batched_laplace

    auto = LogDensity(latent, backend="autograd")
    n = auto.n
    u_map, cov, ok = batched_laplace(auto, torch.zeros(1, n, dtype=torch.float64) + torch.tensor([0.0] * (n - 1) + [1.0], dtype=torch.float64))
    assert bool(ok.all())
    g = torch.Generator().manual_seed(0)
    u0 = u_map[:, None, :] + 0.5 * torch.randn(1, 4, n, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov[0]).T
    out = {}
    for backend in ("handwritten", "autograd"):
        ld = LogDensity(latent, backend=backend)
        out[backend] = run_chees(ld.value_and_grad, u0, cov, warmup=30, draws=10, seed=0, min_warmup=30)
    a, b = out["handwritten"], out["autograd"]
    np.testing.assert_array_equal(a["n_steps"], b["n_steps"])
    np.testing.assert_array_equal(a["diverging"], b["diverging"])
    np.testing.assert_allclose(a["u"], b["u"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(a["step_size"], b["step_size"], rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("where", ["log_ee", "calibration"])
def test_a_wrong_sign_in_the_backward_is_caught(latent, monkeypatch, dtype, where):
    u = _points(latent, (8,), seed=8)
    bound = _abs_bound(LogDensity(latent), u) if dtype == torch.float32 else None  # from the correct backward
    if where == "log_ee":  # d EE / d log EE = EE with the wrong sign
        orig = hw._HandDecoder._log_grad

        def broken(self, g, key, full, rows):
            out = orig(self, g, key, full, rows)
            return -out if key == "EE" else out

        monkeypatch.setattr(hw._HandDecoder, "_log_grad", broken)
    else:  # d(y / A^2)/dA with the wrong sign
        orig_unapply = hw._HandGaussian._unapply

        def unapply(steps, g, g_nuis):
            before = dict(g_nuis)
            out = orig_unapply(steps, g, g_nuis)
            for k in g_nuis:
                g_nuis[k] = before.get(k, 0) - (g_nuis[k] - before.get(k, 0))
            return out

        monkeypatch.setattr(hw._HandGaussian, "_unapply", staticmethod(unapply))
    with pytest.raises(AssertionError, match="gradient"):
        _compare(latent, u, dtype, bound=bound)



def test_the_gradient_setting_of_a_run(latent):
    """``inference: {gradient: autograd}`` (chees, and the batched VI engine) switches the backend a run uses; the
    run records which one did the work, and the draws agree with the default's to rounding."""
    from latentinfer.config import inference_block
    from latentinfer.errors import ConfigError

    post = {g: latent.sample("chees", chains=4, warmup=40, draws=10, seed=0, gradient=g, progress=False)
            for g in ("handwritten", "autograd")}
    assert post["autograd"].attrs["gradient_backend"] == "autograd"
    assert post["handwritten"].attrs["gradient_backend"].startswith("handwritten")
    np.testing.assert_allclose(post["handwritten"].samples(), post["autograd"].samples(), rtol=0, atol=1e-8)
    assert inference_block({"method": "vi", "gradient": "autograd"}, "inference")["gradient"] == "autograd"
    # coverage studies use it too, and it does not change which study a config matches (same target, same numbers)
    from latentinfer.coverage.study import _batched_vi_settings, _chees_settings, study_fingerprint

    cfg = {"model": "m", "likelihoods": [], "inference": {"method": "chees", "gradient": "autograd"}}
    assert _chees_settings(cfg)["gradient"] == "autograd" and _chees_settings({"inference": {}})["gradient"] == "handwritten"
    assert _batched_vi_settings({"inference": {"method": "vi", "gradient": "autograd"}})["gradient"] == "autograd"
    assert study_fingerprint(cfg, "chees") == study_fingerprint({**cfg, "inference": {"method": "chees"}}, "chees")
    with pytest.raises(ConfigError, match="gradient"):
        inference_block({"method": "chees", "gradient": "jax"}, "inference")
