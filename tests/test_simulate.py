"""The CAMB simulator: the design reproduces the corpus exactly; CAMB reproduces corpus rows (slow); resumable chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentinfer.cli import main
from latentinfer.errors import ConfigError
from latentinfer.simulate import BOXES, SEEDS, camb_spectra, parse_box, parse_rows, simulate, sobol_design

CORPUS = Path("/work/shared/data/camb")
needs_corpus = pytest.mark.skipif(not (CORPUS / "lcdm.npz").is_file(), reason="shared CAMB corpus not available")


@needs_corpus
@pytest.mark.parametrize("name,n", [("lcdm", 2000), ("ede", 1000), ("lcdm_core", 800)])
def test_design_matches_corpus_params(name, n):
    with np.load(CORPUS / f"{name}.npz") as f:
        params, names, low, high = f["params"], list(f["names"]), f["box_low"], f["box_high"]
    assert list(BOXES[name]) == names
    np.testing.assert_array_equal(np.array([v[0] for v in BOXES[name].values()]), low)
    np.testing.assert_array_equal(np.array([v[1] for v in BOXES[name].values()]), high)
    np.testing.assert_array_equal(sobol_design(BOXES[name], n, SEEDS[name]), params)  # bit-identical


@needs_corpus
def test_longer_design_extends_the_corpus_design():
    """``--n 4096 --seed 12 --rows 1000:N`` extends the EDE corpus: its first 1000 points are the corpus's own."""
    with np.load(CORPUS / "ede.npz") as f:
        params = f["params"]
    longer = sobol_design(BOXES["ede"], 4096, SEEDS["ede"])
    np.testing.assert_array_equal(longer[:1000], params)
    assert len(np.unique(longer[1000:], axis=0)) == 3096 and not (longer[1000:, None] == params[None]).all(-1).any()
    # and --n 8192 continues --n 4096 (rows 3375-4724 of the shipped cmb-ede came from --n 8192)
    np.testing.assert_array_equal(sobol_design(BOXES["ede"], 8192, SEEDS["ede"])[:4096], longer)


def test_rows_parsing_and_bad_rows(tmp_path, capsys):
    np.testing.assert_array_equal(parse_rows("1000:1003", 4096), [1000, 1001, 1002])
    assert parse_rows(None, 10) is None
    for text, message in (("5:2", "START < STOP"), ("0:11", "STOP <= --n"), ("a:b", "START:STOP")):
        with pytest.raises(ConfigError, match=message):
            parse_rows(text, 10)
    assert main(["simulate", "--model", "ede", "--n", "10", "--seed", "12", "--out", str(tmp_path), "--rows", "8:20"]) == 2
    assert "--rows" in capsys.readouterr().err


def test_design_other_seed_differs_and_stays_in_box():
    a, b = sobol_design(BOXES["lcdm"], 64, 11), sobol_design(BOXES["lcdm"], 64, 12)
    assert not np.allclose(a, b)
    lo, hi = np.array([v[0] for v in BOXES["lcdm"].values()]), np.array([v[1] for v in BOXES["lcdm"].values()])
    assert (a >= lo).all() and (a <= hi).all()


def test_box_override_and_bad_box():
    box = parse_box("H0=63.5:71.5", "lcdm")
    assert box["H0"] == (63.5, 71.5) and box["tau"] == BOXES["lcdm"]["tau"]
    with pytest.raises(ConfigError, match="unknown parameter 'h0'"):
        parse_box("h0=60:70", "lcdm")
    with pytest.raises(ConfigError, match="LOW < HIGH"):
        parse_box("H0=70:60", "lcdm")


def test_cli_bad_box_exits_2(tmp_path, capsys):
    assert main(["simulate", "--model", "lcdm", "--n", "2", "--seed", "1", "--out", str(tmp_path), "--box", "Om=0:1"]) == 2
    assert "unknown parameter 'Om'" in capsys.readouterr().err


def test_camb_failure_gives_nan_row_and_ok_false():
    # a negative baryon density makes CAMB refuse the model: the row is flagged, not raised
    out = camb_spectra([-0.02, 0.12, 67.0, 3.04, 0.965, 0.054], list(BOXES["lcdm"]))
    assert out["ok"] is False and np.isnan(out["TT"]).all() and np.isnan(out["derived"]).all()


@pytest.mark.slow
@needs_corpus
def test_simulator_reproduces_two_corpus_rows_and_resumes(tmp_path):
    rows = [7, 1234]
    path = simulate("lcdm", 2000, 11, tmp_path, rows=rows, chunk=1, workers=1)
    with np.load(path) as new, np.load(CORPUS / "lcdm.npz") as ref:
        assert new["ok"].all()
        np.testing.assert_array_equal(new["params"], ref["params"][rows])
        np.testing.assert_array_equal(new["ell"], ref["ell"])
        for k in ("TT", "TE", "EE", "PP"):
            scale = np.abs(ref[k][rows]).max(1, keepdims=True)  # TE crosses zero: compare to the row's scale
            err = np.abs(new[k] - ref[k][rows]) / scale
            assert err.max() < 1e-4, (k, err.max())
        np.testing.assert_allclose(new["derived"], ref["derived"][rows], rtol=1e-6)
    # resume: the chunk files are found again and not recomputed
    chunks = sorted((tmp_path / "chunks").glob("*.json"))
    assert len(chunks) == 2
    stamp = [c.stat().st_mtime_ns for c in chunks]
    simulate("lcdm", 2000, 11, tmp_path, rows=rows, chunk=1, workers=1)
    assert [c.stat().st_mtime_ns for c in chunks] == stamp


@pytest.mark.slow
@needs_corpus
def test_ede_at_zero_fde_is_lcdm():
    """Why LCDM rows may train an EDE model at fde_zc = 0 (``lcdm_as_ede``): CAMB's EarlyQuintessence at
    fde_zc = 0 (run as 1e-6) gives the LCDM corpus row to dchi2 < 1e-5 under the plik_lite covariance, whatever
    log10_zc and theta_i; a small EDE fraction (0.02) is already far away (dchi2 > 1)."""
    from latentinfer.ive.accuracy import dchi2, load_plik_lite_binning
    from latentinfer.ive.data import corpus_ell_grid, spline_to_integer

    binning = load_plik_lite_binning()
    with np.load(CORPUS / "lcdm_core.npz") as f:
        theta, ref = f["params"][3], {k: f[k][3][None] for k in ("TT", "TE", "EE")}
    names = ["ombh2", "omch2", "H0", "logA", "ns", "tau", "fde_zc", "log10_zc", "theta_i"]
    full = lambda s: {k: spline_to_integer(corpus_ell_grid(), v) for k, v in s.items()}  # noqa: E731
    ref = full(ref)
    for extra, bound in (([0.0, 3.3, 0.7], ("<", 1e-5)), ([0.0, 3.9, 2.8], ("<", 1e-5)), ([0.02, 3.5, 2.0], (">", 1.0))):
        s = camb_spectra(list(theta) + extra, names)
        d = float(dchi2(binning, full({k: np.asarray(s[k])[None] for k in ("TT", "TE", "EE")}), ref)[0])
        assert (d < bound[1]) if bound[0] == "<" else (d > bound[1]), (extra, d)
