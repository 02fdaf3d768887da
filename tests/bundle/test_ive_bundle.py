"""IVE bundles: load_model -> IVEForwardModel (shapes, batching, gradients), the physical map and its priors in an
Analysis, encode / encode_corpus, emulator error in the likelihood covariance, and bad bundles (tampered weights,
wrong ell grid) failing with clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import latentinfer as li
from latentinfer.errors import BundleError, LatentInferError
from latentinfer.ive import IVEForwardModel, encode_corpus
from latentinfer.ive.accuracy import load_plik_lite_binning
from latentinfer.ive.config import TrainConfig
from latentinfer.ive.data import full_spectra, load_corpus
from latentinfer.ive.errorcov import LowRankErrorCov, fit_error_cov
from latentinfer.ive.pipeline import run_training
from latentinfer.likelihoods.gaussian import GaussianLikelihood

from ive_helpers import needs_corpus, tiny_config, write_slice

pytestmark = needs_corpus
PLANCK = {"ombh2": 0.02237, "omch2": 0.1200, "H0": 67.36, "logA": 3.044, "ns": 0.9649, "tau": 0.0544}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("ive")
    cfg = TrainConfig(**tiny_config(write_slice(root / "slice.npz"), max_epochs=3, physical_max_minutes=0.03))
    run_training(cfg, root / "tiny", verbose=False)
    return root / "tiny"


def test_bundle_files_and_card(bundle):
    card = json.loads((bundle / "card.json").read_text())
    assert {p.name for p in bundle.iterdir()} >= {"card.json", "decoder.safetensors", "encoder.safetensors",
                                                   "physical.safetensors", "train.yaml", "validation.npz"}
    assert card["architecture"]["type"] == "ive-decoder" and card["latent_names"] == ["z1", "z2", "z3"]
    assert card["ell"] == {"min": 2, "max": 3200, "step": 1, "n": 3199}
    assert set(card["files"]) == {"encoder.safetensors", "physical.safetensors"} and len(card["sha256"]) == 64
    assert set(card["accuracy"]) >= {"encode_decode", "emulate", "goal", "passed"}
    with np.load(bundle / "validation.npz") as f:
        assert f["TT"].dtype == np.float32 and f["TT"].shape == (20, 1624) and list(f["names"]) == list(PLANCK)
    cfg = TrainConfig.from_dict(__import__("yaml").safe_load((bundle / "train.yaml").read_text()))  # reproducible config
    # the basis step ran: the tiny model's latents are near Gaussian, so ICA may fall back to whitening, and says so
    basis = card["latent_basis"]
    assert cfg.latent_basis == "ica" and basis["method"] in ("ica", "whiten") and basis["fit_rows"] == card["corpus"]["n_train"]
    assert basis["method"] == "ica" or "did not converge" in basis["note"]
    assert basis["unit_step_chi2"] == sorted(basis["unit_step_chi2"], reverse=True) and len(basis["sign_parameter"]) == 3


def test_forward_model_outputs_batched_and_differentiable(bundle):
    m = li.load_model(bundle)
    assert isinstance(m, IVEForwardModel) and isinstance(m, li.ForwardModel)
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    out = m(z)
    assert set(out) == {"TT", "TE", "EE", "PP"} and all(v.shape == (5, 3199) for v in out.values())
    assert (out["TT"] > 0).all() and (out["PP"] > 0).all() and len(m.ell) == 3199 and m.ell[0] == 2
    one = m(z[2].detach())
    torch.testing.assert_close(one["TE"], out["TE"][2].detach())
    out["TT"][:, 1000].sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_physical_model_priors_and_emulate(bundle):
    m = li.load_model(bundle)
    phys = m.physical()
    assert phys.latent_names == list(PLANCK)
    assert phys.default_priors["H0"] == {"uniform": [63.5, 71.5]}
    spec = m.emulate(PLANCK)
    assert spec["TT"].shape == (3199,) and np.isfinite(spec["TT"]).all()
    batch = m.emulate({**PLANCK, "H0": np.array([66.0, 68.0])})
    assert batch["EE"].shape == (2, 3199)
    with pytest.raises(LatentInferError, match="unknown parameter 'h0'"):
        m.emulate({**PLANCK, "h0": 67.0})
    with pytest.raises(LatentInferError, match="missing parameter 'tau'"):
        m.emulate({k: v for k, v in PLANCK.items() if k != "tau"})
    # an Analysis in physical space: box priors by default, the user's Gaussian on tau overrides
    data = torch.as_tensor(spec["TT"][28:128])
    lik = TTSlice(data, torch.diag((0.05 * data) ** 2), name="tt")
    an = li.Analysis(phys, lik, priors={"tau": {"normal": [0.0544, 0.0073]}})
    lo, hi = phys.bounds["tau"]  # the Gaussian is cut to the training box: no mass where the emulator extrapolates
    assert an.prior_of("tau") == {"truncnormal": [0.0544, 0.0073, lo, hi]}
    assert phys.bounds["H0"] == (63.5, 71.5)
    draws = an.sample_prior(200, seed=1)
    tau, h0 = draws["tau"].numpy(), draws["H0"].numpy()
    assert abs(tau.mean() - 0.0544) < 4 * 0.0073 / np.sqrt(200) and abs(tau.std() - 0.0073) < 0.002
    assert h0.min() >= 63.5 and h0.max() <= 71.5 and h0.std() > 2.0  # uniform over [63.5, 71.5]: sd 2.31
    lj = an.log_joint({k: torch.tensor(v, dtype=torch.float64) for k, v in PLANCK.items()})
    assert torch.isfinite(lj)


class TTSlice(GaussianLikelihood):
    """TT D_ell at ell 30..129 (a test likelihood)."""

    def __init__(self, data, cov, name):
        super().__init__(data, cov, name=name, output="TT")

    def check_theory(self, sizes):
        pass

    def predict(self, theory, nuisance):
        return theory["TT"][..., 28:128]


def test_encode_and_encode_corpus(bundle):
    m = li.load_model(bundle)
    res = encode_corpus(bundle)
    assert res["z"].shape == (20, 3) and res["params"].shape == (20, 6) and res["param_names"] == list(PLANCK)
    assert res["derived"].shape == (20, 6) and res["derived_names"][0] == "thetastar"
    c = load_corpus(bundle / "validation.npz", verbose=False)
    z = m.encode(full_spectra(c.take(np.arange(4))))
    np.testing.assert_allclose(z.numpy(), res["z"][:4], rtol=1e-10)
    assert encode_corpus(m, n=5)["z"].shape == (5, 3)
    with pytest.raises(LatentInferError, match="spectrum 'TT' has 100 values"):
        m.encode({s: np.ones(100) for s in ("TT", "TE", "EE", "PP")})


def test_low_rank_error_cov_projection_matches_dense():
    rng = np.random.default_rng(0)
    R = {"TT": rng.normal(size=(50, 200)) @ rng.normal(size=(200, 200)) * 0.01}
    cov = fit_error_cov(R, rank=5)
    dense = cov["TT"]
    np.testing.assert_allclose(torch.diag(dense).numpy(), (R["TT"] ** 2).mean(0), rtol=1e-10)  # diagonal is exact
    J = torch.as_tensor(rng.normal(size=(7, 200)))
    torch.testing.assert_close(cov.project("TT", J), J @ dense @ J.T)
    back = LowRankErrorCov.from_state_dict(cov.state_dict("errcov_x"), "errcov_x")
    torch.testing.assert_close(back["TT"], dense, rtol=1e-5, atol=1e-9)


def test_emulator_error_adds_projected_covariance(bundle):
    m = li.load_model(bundle)
    assert isinstance(m.error_cov, LowRankErrorCov) and set(m.error_cov) == {"TT", "TE", "EE", "PP"}
    assert m.error_cov["TT"].shape == (3199, 3199)
    with torch.no_grad():
        data = m(torch.zeros(3, dtype=torch.float64))["TT"][28:128]
    cov = torch.diag((0.02 * data) ** 2)
    plain = li.Analysis(m, TTSlice(data, cov, name="tt"))
    err = li.Analysis(m, TTSlice(data, cov, name="tt"), emulator_error=True)
    extra = err.likelihoods[0].cov - plain.likelihoods[0].cov
    J = torch.zeros(100, 3199, dtype=torch.float64)
    J[torch.arange(100), torch.arange(28, 128)] = 1.0
    torch.testing.assert_close(extra, m.error_cov.project("TT", J), rtol=1e-8, atol=1e-12)
    assert torch.diagonal(extra).min() > 0  # the model error inflates every data point's variance
    # physical space carries its own (emulate-path) error covariance
    assert m.physical().error_cov["EE"].shape == (3199, 3199)


def _copy(bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


@pytest.mark.parametrize("fname", ["decoder.safetensors", "encoder.safetensors", "physical.safetensors"])
def test_tampered_weights_refused(bundle, tmp_path, fname):
    dst = _copy(bundle, tmp_path)
    raw = bytearray((dst / fname).read_bytes())
    raw[-5] ^= 0xFF
    (dst / fname).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=f"{fname}: sha256 mismatch"):
        li.load_model(dst)


def test_card_with_wrong_ell_grid_refused(bundle, tmp_path):
    dst = _copy(bundle, tmp_path)
    card = json.loads((dst / "card.json").read_text())
    card["ell"]["max"] = 2500
    (dst / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="ell grid 2..2500 does not match the weights"):
        li.load_model(dst)


def test_binning_and_dchi2_against_direct_computation():
    b = load_plik_lite_binning()
    ell = np.arange(2, 3201)
    D = {s: 7.0 * ell * (ell + 1) / (2 * np.pi) for s in ("TT", "TE", "EE")}  # C_ell = 7 muK^2 everywhere
    np.testing.assert_allclose(b.bin(D), 7.0, rtol=1e-12)  # weights sum to one in every bin
    rng = np.random.default_rng(3)
    D2 = {s: v * (1 + 1e-3 * rng.normal(size=v.shape)) for s, v in D.items()}
    from latentinfer.ive.accuracy import dchi2

    r = b.bin(D2) - b.bin(D)
    np.testing.assert_allclose(dchi2(b, {k: v[None] for k, v in D2.items()}, {k: v[None] for k, v in D.items()}),
                               [r @ np.linalg.solve(b.cov, r)], rtol=1e-8)
