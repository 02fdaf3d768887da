"""Spec validation of the ``bandpower`` likelihood type, and the likelihoods inside one Pyro program."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import latentinfer as li
from latentinfer.errors import ConfigError, DataError

LIK = Path(__file__).resolve().parents[2] / "likelihoods"


@pytest.fixture
def lowl_copy(tmp_path):
    """A writable copy of planck2018-lowl-tt and a helper to rewrite its spec."""
    folder = tmp_path / "lowl"
    shutil.copytree(LIK / "planck2018-lowl-tt", folder)
    spec = yaml.safe_load((folder / "likelihood.yaml").read_text())

    def write(new):
        (folder / "likelihood.yaml").write_text(yaml.safe_dump(new))
        return folder

    return folder, spec, write


def test_copy_loads_like_the_original(lowl_copy):
    folder, spec, write = lowl_copy
    lik = li.load_likelihood(write(spec))
    assert lik.n_data == 2 and lik.requires == ("TT",) and lik.lmax == {"TT": 29}


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.update(colour="blue"), "unknown key 'colour'"),
        (lambda s: s["blocks"][0].update(nbins=2), "unknown key 'nbins'"),
        (lambda s: s["blocks"][0]["binning"].update(ell_ofset=2), "unknown key 'ell_ofset'"),
        (lambda s: s["blocks"][0]["transforms"][0].update(kind="dl_to_kl"), "unknown transform kind 'dl_to_kl'"),
        (lambda s: s["blocks"][0]["transforms"][1].update(divide_by=["A_plank"]), "A_plank"),
        (lambda s: s["blocks"][0].update(theory="BB"), "key 'theory'"),
        (lambda s: s["blocks"][0].update(n_bins=3), "bins"),
        (lambda s: s.pop("data"), "missing key 'data'"),
        (lambda s: s["data"].update(file="nope.dat"), "nope.dat"),
        (lambda s: s["data"].update(file="../../etc/passwd"), "outside the likelihood folder"),
        (lambda s: s["covariance"].update(format="hdf5"), "key 'format'"),
        (lambda s: s["blocks"][0]["binning"].update(weights="missing_weights.dat"), "missing_weights.dat"),
        (lambda s: s["blocks"][0]["transforms"].reverse(), "must come before"),
        (lambda s: s.update(options={"spectra": {"default": "TT", "choices": {"TT": ["XX"]}}}), "unknown blocks"),
    ],
)
def test_bad_spec_raises_naming_the_key(lowl_copy, edit, match):
    folder, spec, write = lowl_copy
    edit(spec)
    with pytest.raises((ConfigError, DataError), match=match):
        li.load_likelihood(write(spec))


def test_unknown_key_and_missing_file_are_config_errors(lowl_copy):
    folder, spec, write = lowl_copy
    spec["colour"] = 1
    with pytest.raises(ConfigError, match="'colour'"):
        li.load_likelihood(write(spec))
    del spec["colour"]
    (folder / "bweight_low_ell.dat").unlink()
    with pytest.raises(ConfigError, match="bweight_low_ell.dat"):
        li.load_likelihood(write(spec))


def test_corrupt_file_is_a_data_error(lowl_copy):
    folder, spec, write = lowl_copy
    (folder / "CTT_bin_low_ell_2018.dat").write_text("8.5 53.4 x\n")
    with pytest.raises(DataError, match="CTT_bin_low_ell_2018.dat"):
        li.load_likelihood(write(spec))


def test_listed_with_descriptions():
    found = li.likelihoods.list_likelihoods()
    for name in ["planck2018-plik-lite", "planck2018-lowl-tt", "spt3g-2018-ttteee", "planck2018-lensing", "act-dr6-lensing"]:
        assert found[name] and "\n" not in found[name]


class _ScaledSpectra(torch.nn.Module):
    """A toy forward model: CAMB spectra times (1 + 0.01 z0), PP times (1 + 0.01 z1); emits TT, TE, EE, PP."""

    def __init__(self):
        super().__init__()
        tab = np.loadtxt(Path(__file__).resolve().parents[1] / "data" / "camb_lcdm_planck2018.txt")
        for i, k in enumerate(["TT", "TE", "EE", "PP"], start=1):
            self.register_buffer(k, torch.tensor(tab[:, i]))

    def forward(self, z):
        a = (1 + 0.01 * z[..., :1])
        b = (1 + 0.01 * z[..., 1:2])
        return {"TT": a * self.TT, "TE": a * self.TE, "EE": a * self.EE, "PP": b * self.PP}


def test_analysis_with_real_likelihoods_shares_a_planck():
    fm = li.ForwardModel.from_module(_ScaledSpectra(), latent_names=["z0", "z1"])
    liks = [li.load_likelihood(n) for n in ["planck2018-plik-lite", "planck2018-lowl-tt", "spt3g-2018-ttteee", "act-dr6-lensing"]]
    an = li.Analysis(fm, liks)
    assert an.nuisance_names == ["A_planck", "Tcal", "Ecal"]
    vals = {"z0": torch.zeros(3, dtype=torch.float64), "z1": torch.zeros(3, dtype=torch.float64),
            "A_planck": torch.tensor([1.0, 1.001, 0.999], dtype=torch.float64),
            "Tcal": torch.ones(3, dtype=torch.float64), "Ecal": torch.ones(3, dtype=torch.float64)}
    lj = an.log_joint(vals)
    assert lj.shape == (3,) and torch.isfinite(lj).all()


def test_tophat_fast_path_equals_the_dense_product():
    """Blocks of consecutive top-hat bins (with gaps) take the grouped-sum path; it must equal M @ x."""
    from latentinfer.likelihoods.bandpower import Block, _tophat_groups

    rng = np.random.default_rng(3)
    M = np.zeros((6, 40))
    for i, (a, b) in enumerate([(2, 5), (5, 8), (8, 11), (15, 20), (20, 25), (30, 38)]):  # gaps at 11-14, 25-29, 38-39
        M[i, a:b] = rng.uniform(0.1, 1.0, b - a)
    assert _tophat_groups(M) == [(0, 2), (3, 3), (0, 4), (2, 5), (0, 5), (1, 8), (0, 2)]
    blk = Block("X", "TT", M, 0, [])
    assert blk.groups is not None
    x = torch.tensor(rng.normal(size=(4, 40)), requires_grad=True)
    out = blk(x, {})
    torch.testing.assert_close(out, x @ torch.tensor(M).T, rtol=1e-14, atol=0)
    (g,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(g, torch.tensor(M).sum(0).expand(4, 40), rtol=1e-14, atol=0)
    overlapping = M.copy()
    overlapping[1, 4] = 0.3  # ell 6 in two bins: falls back to the dense product
    assert _tophat_groups(overlapping) is None
