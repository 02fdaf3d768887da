"""The real experiment likelihoods against deliberately plain numpy re-implementations of their recipes.

Each ``plain_*`` function below reads the vendored files with ``np.loadtxt`` / ``FortranFile`` and follows the
recipe of the folder's PROVENANCE.md with loops; it shares no code with ``latentinfer.likelihoods``. The theory is
one lensed LCDM spectrum from CAMB 2.0.5 (``tests/data/camb_lcdm_planck2018.txt``, see ``make_camb_fixture.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import FortranFile
from scipy.stats import chi2 as chi2_dist

import latentinfer as li
from latentinfer.errors import ConfigError, LatentInferError

ROOT = Path(__file__).resolve().parents[2]
LIK = ROOT / "likelihoods"
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "camb_lcdm_planck2018.txt"
RTOL = 1e-10  # float64 agreement asked of every likelihood
LENS = "smicadx12_Dec5_ftl_mv2_ndclpp_p_teb_consext8"


@pytest.fixture(scope="module")
def camb():
    """{"TT", "TE", "EE", "PP"}: numpy arrays at ell = 2..3200 straight from the fixture file."""
    tab = np.loadtxt(FIXTURE)
    assert tab[0, 0] == 2 and tab[-1, 0] == 3200
    return {k: tab[:, i] for i, k in enumerate(["TT", "TE", "EE", "PP"], start=1)}


def as_torch(th, dtype=torch.float64):
    return {k: torch.tensor(v, dtype=dtype) for k, v in th.items()}


def chi2_plain(data, model, cov):
    r = np.asarray(data) - np.asarray(model)
    return float(r @ np.linalg.solve(cov, r))


# -- plain implementations of each PROVENANCE recipe ---------------------------------------------------------------
def plain_plik(th, A=1.0, spectra=("TT", "TE", "EE")):
    d = LIK / "planck2018-plik-lite"
    data = np.loadtxt(d / "cl_cmb_plik_v22.dat")[:, 1]
    with FortranFile(d / "c_matrix_plik_v22.dat", "r") as f:
        c = f.read_reals(float).reshape(613, 613)
    cov = np.tril(c) + np.tril(c, -1).T
    blmin = np.loadtxt(d / "blmin.dat").astype(int)
    blmax = np.loadtxt(d / "blmax.dat").astype(int)
    w = np.loadtxt(d / "bweight.dat")
    model, rows, start = [], [], 0
    for X, nb in [("TT", 215), ("TE", 199), ("EE", 199)]:
        if X in spectra:
            for i in range(nb):
                s = 0.0
                for ell in range(blmin[i] + 30, blmax[i] + 31):
                    s += w[ell - 30] * 2 * math.pi * th[X][ell - 2] / (ell * (ell + 1))
                model.append(s / A**2)
            rows += list(range(start, start + nb))
        start += nb
    rows = np.array(rows)
    return np.array(model), chi2_plain(data[rows], model, cov[np.ix_(rows, rows)])


def plain_lowl(th, A=1.0):
    d = LIK / "planck2018-lowl-tt"
    tab = np.loadtxt(d / "CTT_bin_low_ell_2018.dat")
    lo = np.loadtxt(d / "blmin_low_ell.dat").astype(int)
    hi = np.loadtxt(d / "blmax_low_ell.dat").astype(int)
    plmin = int(np.loadtxt(d / "plmin_low_ell.dat"))
    w = np.loadtxt(d / "bweight_low_ell.dat")
    model = []
    for b in range(2):
        s = sum(w[k] * 2 * math.pi * th["TT"][k + plmin - 2] / ((k + plmin) * (k + plmin + 1)) for k in range(lo[b], hi[b] + 1))
        model.append(s / A**2)
    model = np.array(model)
    return model, float(np.sum(((tab[:, 1] - model) / tab[:, 2]) ** 2))


def plain_spt(th, Tcal=1.0, Ecal=1.0):
    d = LIK / "spt3g-2018-ttteee"
    data = np.loadtxt(d / "spt3g_2018_ttteee_bdp_lite.txt")
    cov = np.loadtxt(d / "spt3g_2018_ttteee_cov_lite.txt")
    AC = -0.0004826
    cal = {"TT": Tcal * Tcal, "TE": Tcal * Ecal, "EE": Ecal * Ecal}
    model = []
    for X in ["TT", "TE", "EE"]:
        W = np.loadtxt(d / "windows" / f"{X}_lxl_window_functions.txt")
        ell = W[:, 0]
        D = th[X][: len(ell)].copy()
        C = 2 * np.pi * D / (ell * (ell + 1))
        D = D - AC * ell * np.gradient(C) * ell * (ell + 1) / (2 * np.pi)
        D = D / cal[X]
        model.append(D @ W[:, 1:])
    model = np.concatenate(model)
    return model, chi2_plain(data, model, cov)


def plain_planck_lensing(th):
    d = LIK / "planck2018-lensing"
    data = np.loadtxt(d / f"{LENS}_bandpowers.dat")[:, 4]
    cov = np.loadtxt(d / f"{LENS}_CMBmarged_cov.dat")
    fid = np.loadtxt(d / f"{LENS}_CMBmarged_lensing_fiducial_correction.dat")[:, 1]
    model = np.zeros(9)
    for b in range(9):
        for folder in [f"{LENS}_window", f"{LENS}_CMBmarged_lens_delta_window"]:
            win = np.zeros(2501)  # index = L, zero where the file lists no L
            for L, val in np.loadtxt(d / folder / f"window{b + 1}.dat"):
                if 2 <= L <= 2500:
                    win[int(L)] = val
            model[b] += sum(win[L] * th["PP"][L - 2] for L in range(2, 2501))
        model[b] -= fid[b]
    return model, chi2_plain(data, model, cov)


def plain_act(th):
    d = LIK / "act-dr6-lensing"
    data = np.loadtxt(d / "ACT_DR6_kk_bdp.txt")
    cov = np.loadtxt(d / "ACT_DR6_kk_cov_lens_only.txt")
    W = np.loadtxt(d / "windows" / "kk_window_functions.txt")
    kk = th["PP"][: len(W)] * 2 * np.pi / 4
    model = kk @ W[:, 1:]
    hartlap = (792 - 10 - 2) / (792 - 1)
    return model, hartlap * chi2_plain(data, model, cov)


CASES = {
    # name: (plain recipe, nuisance values off the prior centre so calibration is exercised)
    "planck2018-plik-lite": (lambda th: plain_plik(th, A=1.0031), {"A_planck": 1.0031}),
    "planck2018-lowl-tt": (lambda th: plain_lowl(th, A=0.9968), {"A_planck": 0.9968}),
    "spt3g-2018-ttteee": (lambda th: plain_spt(th, Tcal=1.004, Ecal=0.993), {"Tcal": 1.004, "Ecal": 0.993}),
    "planck2018-lensing": (plain_planck_lensing, {}),
    "act-dr6-lensing": (plain_act, {}),
}


def nuisance_tensors(values, dtype=torch.float64):
    return {k: torch.tensor(v, dtype=dtype) for k, v in values.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_plain_numpy_recipe(name, camb):
    plain, nuis = CASES[name]
    model_ref, chi2_ref = plain(camb)
    lik = li.load_likelihood(name)
    assert sorted(lik.nuisance_names) == sorted(nuis)
    with torch.no_grad():
        model = lik.predict(as_torch(camb), nuisance_tensors(nuis)).numpy()
        chi2 = float(lik.chi2(as_torch(camb), nuisance_tensors(nuis)))
        logp = float(lik.log_prob(as_torch(camb), nuisance_tensors(nuis)))
    np.testing.assert_allclose(model, model_ref, rtol=RTOL, atol=0)
    assert chi2 == pytest.approx(chi2_ref, rel=RTOL)
    assert logp == pytest.approx(-0.5 * chi2 + lik.log_normalisation(), rel=RTOL)


def test_chi2_at_planck_best_fit_is_sane(camb):
    """plik_lite TTTEEE at the Planck 2018 best-fit LCDM: chi2 near 580-600 for 613 bandpowers (585.0 here)."""
    lik = li.load_likelihood("planck2018-plik-lite")
    chi2 = float(lik.chi2(as_torch(camb), {"A_planck": torch.tensor(1.0, dtype=torch.float64)}))
    assert lik.n_data == 613
    assert 575 < chi2 < 600
    # a wrong cosmology must be far worse: 3 per cent more TT power
    th = as_torch(camb)
    th["TT"] = th["TT"] * 1.03
    assert float(lik.chi2(th, {"A_planck": torch.tensor(1.0, dtype=torch.float64)})) > chi2 + 100


def test_plik_covariance_is_the_mirrored_lower_triangle():
    with FortranFile(LIK / "planck2018-plik-lite" / "c_matrix_plik_v22.dat", "r") as f:
        raw = f.read_reals(float).reshape(613, 613)
    assert np.count_nonzero(np.triu(raw, 1)) == 0  # the file really stores one triangle only
    lik = li.load_likelihood("planck2018-plik-lite")
    cov = lik.cov.numpy()
    np.testing.assert_array_equal(cov, cov.T)
    np.testing.assert_array_equal(np.tril(cov), np.tril(raw))
    np.testing.assert_array_equal(np.triu(cov, 1), np.tril(raw, -1).T)
    sigma = np.loadtxt(LIK / "planck2018-plik-lite" / "cl_cmb_plik_v22.dat")[:, 2]
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), sigma, rtol=1e-12)


@pytest.mark.parametrize(
    "spectra, rows, used",
    [("TT", slice(0, 215), ("TT",)), ("TE", slice(215, 414), ("TE",)), ("EE", slice(414, 613), ("EE",)),
     ("TTTEEE", slice(0, 613), ("TT", "TE", "EE"))],
)
def test_plik_spectra_option_selects_data_and_covariance(spectra, rows, used, camb):
    full = li.load_likelihood("planck2018-plik-lite")
    lik = li.load_likelihood("planck2018-plik-lite", spectra=spectra)
    assert lik.requires == used
    torch.testing.assert_close(lik.data, full.data[rows], rtol=0, atol=0)
    torch.testing.assert_close(lik.cov, full.cov[rows, rows], rtol=0, atol=0)
    th = {k: v for k, v in as_torch(camb).items() if k in used}  # a model emitting only what is needed works
    chi2 = float(lik.chi2(th, {"A_planck": torch.tensor(1.0, dtype=torch.float64)}))
    assert chi2 == pytest.approx(plain_plik(camb, spectra=used)[1], rel=RTOL)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="'colour'"):
        li.load_likelihood("planck2018-plik-lite", colour="TT")
    with pytest.raises(ConfigError, match="spectra.*TB"):
        li.load_likelihood("planck2018-plik-lite", spectra="TB")
    with pytest.raises(ConfigError, match="'spectra'"):
        li.load_likelihood("act-dr6-lensing", spectra="TT")


def test_shared_nuisances_and_priors():
    plik, lowl = li.load_likelihood("planck2018-plik-lite"), li.load_likelihood("planck2018-lowl-tt")
    assert plik.nuisance == lowl.nuisance  # one A_planck ~ N(1, 0.0025), shared by Analysis
    assert plik.nuisance[0].prior == {"normal": [1.0, 0.0025]}
    spt = li.load_likelihood("spt3g-2018-ttteee")
    (block,) = spt.nuisance
    assert block.names == ("Tcal", "Ecal")
    mean, cov = block.prior["mvnormal"]
    assert mean == [1.0, 1.0]
    np.testing.assert_array_equal(cov, np.loadtxt(LIK / "spt3g-2018-ttteee" / "lite_cal_cov.txt"))
    assert li.load_likelihood("act-dr6-lensing").meta["hartlap_factor"] == pytest.approx(780 / 791)


def test_ell_range_and_missing_spectrum_errors(camb):
    lik = li.load_likelihood("planck2018-plik-lite", spectra="TT")
    short = {"TT": torch.tensor(camb["TT"][:2000])}  # ell 2..2001 < 2508
    with pytest.raises(LatentInferError, match="TT up to ell = 2508"):
        lik.predict(short, {"A_planck": torch.tensor(1.0, dtype=torch.float64)})
    with pytest.raises(LatentInferError, match="'TT'"):
        lik.predict({"EE": torch.tensor(camb["EE"])}, {"A_planck": torch.tensor(1.0, dtype=torch.float64)})


def test_batched_and_float32(camb):
    lik = li.load_likelihood("planck2018-plik-lite")
    th = as_torch(camb)
    scale = torch.linspace(0.98, 1.02, 5, dtype=torch.float64)
    batch = {k: v * scale[:, None] for k, v in th.items()}
    nuis = {"A_planck": torch.full((5,), 1.001, dtype=torch.float64)}
    lp = lik.log_prob(batch, nuis)
    assert lp.shape == (5,)
    for i in range(5):
        one = lik.log_prob({k: v[i] for k, v in batch.items()}, {"A_planck": nuis["A_planck"][i]})
        assert float(lp[i]) == pytest.approx(float(one), rel=1e-12)
    lik32 = li.load_likelihood("planck2018-plik-lite").to(torch.float32)
    lp32 = lik32.log_prob({k: v.float() for k, v in batch.items()}, {"A_planck": nuis["A_planck"].float()})
    assert lp32.dtype == torch.float32
    # float32 on a 613-dim chi2 of about 600: about 1e-4 relative is what single precision can give
    np.testing.assert_allclose(lp32.double().numpy(), lp.detach().numpy(), rtol=2e-3)


# -- gradients ------------------------------------------------------------------------------------------------------
# gradcheck perturbs every input entry; the likelihood is linear in the theory, so we check the derivative with
# respect to windows of multipoles where the binning changes (first/last ell used, bin edges, the aberration stencil)
# and hold the rest of the spectrum fixed. This exercises the full code path (slicing, folding, calibration, solve).
GRAD_ELLS = {
    "planck2018-plik-lite": {"TT": [30, 31, 34, 35, 100, 1503, 1504, 2508], "TE": [30, 1996], "EE": [99, 1995, 1996]},
    "planck2018-lowl-tt": {"TT": [2, 3, 15, 16, 29]},
    "spt3g-2018-ttteee": {"TT": [249, 250, 251, 1200, 3199, 3200], "TE": [249, 300], "EE": [2000, 3200]},
    "planck2018-lensing": {"PP": [2, 8, 40, 41, 400, 401, 2352, 2500]},
    "act-dr6-lensing": {"PP": [39, 40, 41, 400, 763]},
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_theory_and_nuisance(name, camb):
    lik = li.load_likelihood(name)
    nuis0 = CASES[name][1]
    base = as_torch(camb)
    sel = GRAD_ELLS[name]
    idx = {k: torch.tensor([e - 2 for e in ells]) for k, ells in sel.items()}
    xs = [base[k][idx[k]].clone().requires_grad_(True) for k in sel]
    ns = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in nuis0.values()]

    def f(*args):
        th = dict(base)
        for k, x in zip(sel, args[: len(sel)]):
            th[k] = th[k].index_put((idx[k],), x)
        nuis = dict(zip(nuis0, args[len(sel):]))
        return lik.log_prob(th, nuis)

    # log L is quadratic in the theory, so central differences are exact up to round-off (|log L| 1e-16 / eps):
    # a large step for the theory (D_ell ~ 1e3 muK^2), a small one for the nuisances (~1, non-linear).
    assert torch.autograd.gradcheck(lambda *x: f(*x, *ns), tuple(xs), eps=1e-3, atol=1e-9, rtol=1e-6)
    if ns:
        assert torch.autograd.gradcheck(lambda *n: f(*[x.detach() for x in xs], *n), tuple(ns), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradient_of_whole_spectrum_is_exact(camb):
    """d log L / d theory over all multipoles equals the closed form M^T C^-1 r / A^2 (plik TT, linear model)."""
    lik = li.load_likelihood("planck2018-plik-lite", spectra="TT")
    tt = torch.tensor(camb["TT"], requires_grad=True)
    A = 1.002
    lp = lik.log_prob({"TT": tt}, {"A_planck": torch.tensor(A, dtype=torch.float64)})
    (g,) = torch.autograd.grad(lp, tt)
    d = LIK / "planck2018-plik-lite"
    blmin, blmax = np.loadtxt(d / "blmin.dat").astype(int), np.loadtxt(d / "blmax.dat").astype(int)
    w = np.loadtxt(d / "bweight.dat")
    M = np.zeros((215, len(camb["TT"])))
    for i in range(215):
        for ell in range(blmin[i] + 30, blmax[i] + 31):
            M[i, ell - 2] = w[ell - 30] * 2 * np.pi / (ell * (ell + 1)) / A**2
    model, _ = plain_plik(camb, A=A, spectra=("TT",))
    r = lik.data.numpy() - model
    expect = M.T @ np.linalg.solve(lik.cov.numpy(), r)
    np.testing.assert_allclose(g.numpy(), expect, rtol=1e-8, atol=1e-12 * np.abs(expect).max())


# -- simulation -----------------------------------------------------------------------------------------------------
def test_simulate_has_the_right_mean_and_covariance(camb):
    """Whitened draws w = L^-1 (x - mean) must be N(0, I): tolerances from their sampling distribution."""
    lik = li.load_likelihood("spt3g-2018-ttteee")
    n_draw = 20000
    th = as_torch(camb)
    # batch through the nuisances (cheap broadcasting) rather than 20000 copies of the theory
    nuis = {"Tcal": torch.full((n_draw,), 1.002, dtype=torch.float64), "Ecal": torch.full((n_draw,), 0.997, dtype=torch.float64)}
    g = torch.Generator().manual_seed(7)
    x = lik.simulate(th, nuis, generator=g)
    assert x.shape == (n_draw, 123)
    mean = lik.predict(th, nuisance_tensors({"Tcal": 1.002, "Ecal": 0.997}))
    w = torch.linalg.solve_triangular(lik.scale_tril, (x - mean).T, upper=False).T.numpy()
    n = w.shape[1]
    # mean: n_draw |mean(w)|^2 ~ chi2(n); two-sided 1e-4 bounds
    stat = n_draw * float(np.sum(w.mean(0) ** 2))
    assert chi2_dist.ppf(1e-4, n) < stat < chi2_dist.isf(1e-4, n)
    # covariance: each entry of cov(w) - I has sd sqrt((1 + delta_ij)/n_draw); 5.5 sd over 7626 entries
    S = np.cov(w, rowvar=False)
    z = (S - np.eye(n)) / np.sqrt((1 + np.eye(n)) / n_draw)
    assert np.abs(z).max() < 5.5
    # the same check catches a wrong covariance: draws with 5 per cent too much noise fail it
    z_bad = (1.05**2 * S - np.eye(n)) / np.sqrt((1 + np.eye(n)) / n_draw)
    assert np.abs(z_bad).max() > 5.5
    # reproducible with a seeded generator
    again = lik.simulate(th, nuis, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(again, x, rtol=0, atol=0)


def test_second_derivatives_for_hessian_users(camb):
    """emcee's start uses a Hessian: gradgradcheck through the top-hat binning (low-ell TT, ell 2..29) and A_planck."""
    lik = li.load_likelihood("planck2018-lowl-tt")
    tt = torch.tensor(camb["TT"][:28], requires_grad=True)  # exactly ell 2..29
    a = torch.tensor(1.001, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t, A: lik.log_prob({"TT": t}, {"A_planck": A}), (tt, a), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_per_datum_ell_and_spectrum_in_meta():
    """Each bandpower carries its effective multipole and spectrum (used by the PPC plots and tension attribution)."""
    lik = li.load_likelihood("planck2018-plik-lite")
    ell, spec = np.asarray(lik.meta["ell"]), np.asarray(lik.meta["spectrum"])
    assert ell.shape == spec.shape == (613,)
    assert list(dict.fromkeys(spec.tolist())) == ["TT", "TE", "EE"] and (spec == "TT").sum() == 215
    # plik_lite's first TT bin is ell 30-34, its last ends at 2508; bins increase within each spectrum
    assert 30 <= ell[0] <= 34 and 2400 < ell[214] <= 2508 and np.all(np.diff(ell[:215]) > 0) and ell[215] < 35
    spt = li.load_likelihood("spt3g-2018-ttteee")
    assert len(spt.meta["ell"]) == spt.n_data and set(spt.meta["spectrum"]) <= {"TT", "TE", "EE"}


def test_jacobian_through_the_binning_matches_finite_differences():
    """The tension attribution differentiates data predictions through plik's custom binning (no vmap, no jvp)."""
    from latentinfer.tension.attribution import _jacobian

    lik = li.load_likelihood("planck2018-plik-lite", spectra="TT")
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3199, 2, generator=g, dtype=torch.float64)
    base = 1000.0 + torch.zeros(3199, dtype=torch.float64)
    nuis = {"A_planck": torch.tensor(1.0, dtype=torch.float64)}
    fn = lambda z: lik.predict({"TT": base + A @ z}, nuis)  # noqa: E731
    z0 = torch.tensor([0.3, -0.2], dtype=torch.float64)
    J = _jacobian(fn, z0)
    eps = 1e-4
    fd = torch.stack([(fn(z0 + eps * e) - fn(z0 - eps * e)) / (2 * eps) for e in torch.eye(2, dtype=torch.float64)], -1)
    assert J.shape == (215, 2)
    torch.testing.assert_close(J, fd, rtol=1e-6, atol=1e-9)
