"""GetDist export read back by getdist itself: same means and sds, labels, prior ranges, derived chi2."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _linear_models import linear_forward, posterior_from_exact  # noqa: E402
from latentinfer import Analysis, GaussianLikelihood  # noqa: E402
from latentinfer.cli import main  # noqa: E402
from latentinfer.errors import LatentInferError  # noqa: E402
from latentinfer.export import export_run, write_getdist  # noqa: E402
from latentinfer.posterior import Posterior  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from latentinfer.runner import write_run

    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    M = rng.normal(size=(20, 2))
    fm = linear_forward(M, np.zeros(20), names=["omch2", "z1"])
    lik = GaussianLikelihood(M @ np.array([0.12, 0.5]) + 0.1 * rng.normal(size=20), 0.01 * np.eye(20), name="planck")
    an = Analysis(fm, lik, prior={"omch2": {"uniform": [0.05, 0.3]}, "z1": {"normal": [0.0, 1.0]}})
    post = posterior_from_exact(an, np.array([0.12, 0.5]), np.diag([1e-4, 1e-3]), n=3000, chains=3)
    cfg = {"model": "toy", "likelihoods": [{"name": "planck"}], "name": "toyrun"}
    write_run(post, cfg, root / "run", wall=0.0)
    return root / "run", post


def test_getdist_reads_back_means_sds_labels_ranges(run, tmp_path):
    from getdist import loadMCSamples

    folder, post = run
    files = export_run(folder, "getdist", tmp_path / "chains" / "toy")
    assert [f.name for f in files] == ["toy_1.txt", "toy_2.txt", "toy_3.txt", "toy.paramnames", "toy.ranges"]
    s = loadMCSamples(str(tmp_path / "chains" / "toy"), settings={"ignore_rows": 0})
    assert s.numrows == 3000
    for name in ("omch2", "z1"):
        x = post.samples(name)
        assert s.mean(name) == pytest.approx(x.mean(), rel=1e-10)
        assert s.std(name) == pytest.approx(x.std(), rel=1e-3)  # getdist's weighted sd (ddof=0)
    assert s.getParamNames().parWithName("omch2").label == r"\Omega_\mathrm{c} h^2"
    assert s.getParamNames().parWithName("chi2__planck").isDerived
    assert s.ranges.getLower("omch2") == 0.05 and s.ranges.getUpper("omch2") == 0.3
    assert s.ranges.getLower("z1") is None
    lp = post.idata.sample_stats["lp"].values.reshape(-1)
    np.testing.assert_allclose(np.sort(s.loglikes), np.sort(-lp), rtol=1e-12)  # column 2 = -ln(posterior)
    chi2 = -2 * post.idata.log_likelihood["planck"].values.reshape(-1)
    np.testing.assert_allclose(np.sort(s.getParams().chi2__planck), np.sort(chi2), rtol=1e-12)


def test_cli_export_default_prefix_and_bad_input(run, tmp_path, capsys):
    folder, _ = run
    assert main(["export", str(folder), "--format", "getdist"]) == 0
    assert (folder / "getdist" / "toyrun_1.txt").is_file()
    assert main(["export", str(folder), "--format", "cosmomc2"]) == 2
    assert "unknown export format 'cosmomc2'" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--format", "getdist"]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_nan_samples_are_refused(tmp_path):
    x = np.zeros((1, 10))
    x[0, 3] = np.nan
    post = Posterior.from_arrays({"a": x}, sample_stats={"lp": np.zeros((1, 10))})
    with pytest.raises(LatentInferError, match="NaN"):
        write_getdist(post, tmp_path / "x")
