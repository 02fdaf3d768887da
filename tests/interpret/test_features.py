"""Spectral features (latentinfer.interpret.features): exact on spectra with known peaks, physical on CAMB rows, and a
missing peak reads NaN rather than a number."""

from __future__ import annotations

import numpy as np
import pytest

from latentinfer.errors import DataError
from latentinfer.interpret.features import FEATURES, spectral_features

ELL = np.arange(2, 3201, dtype=float)


def _tt(ell, centres):
    tt = 800.0 * np.exp(-ell / 1500.0)
    for pos, h in centres:
        tt = tt + h * np.exp(-0.5 * ((ell - pos) / 40.0) ** 2)
    return tt


def _synthetic(l1: float, shift: float = 0.0):
    """TT with three Gaussian peaks on a smooth damped background, off the integer grid by ``shift`` so the parabolic
    refinement has work to do. The true maxima (position, height) of this continuous function are found on a grid of
    step 1e-4 ell: the exact answer the features must give."""
    centres = [(l1 + shift, 4300.0), (2.45 * l1 + shift, 2000.0), (3.7 * l1 + shift, 2000.0)]
    peaks = []
    for pos, _ in centres:
        fine = np.arange(pos - 5, pos + 5, 1e-4)
        v = _tt(fine, centres)
        peaks.append((fine[v.argmax()], v.max()))
    ee = 0.05 + 0.01 * ELL / 100
    pp = 1e-7 * np.ones_like(ELL)
    return {"TT": _tt(ELL, centres)[None], "EE": ee[None], "PP": pp[None]}, peaks


@pytest.mark.parametrize("l1,shift", [(220.0, 0.0), (205.3, 0.37), (238.0, -0.42)])
def test_peaks_of_a_known_spectrum(l1, shift):
    spectra, peaks = _synthetic(l1, shift)
    F, names = spectral_features(spectra)
    assert names == list(FEATURES)
    f = dict(zip(names, F[0]))
    # a parabola through three points 1 ell apart near the top of a peak of width 40: the cubic term of the Taylor
    # series moves the vertex by ~ (1/40)^2 of a step, heights by ~ 1e-6 relative
    for k, (pos, h) in enumerate(peaks, start=1):
        assert f[f"ell_peak{k}_TT"] == pytest.approx(pos, abs=0.01)
    assert f["D_peak1_TT"] == pytest.approx(peaks[0][1], rel=1e-5)
    assert f["peak2_over_peak1_TT"] == pytest.approx(peaks[1][1] / peaks[0][1], rel=1e-5)
    assert f["peak3_over_peak1_TT"] == pytest.approx(peaks[2][1] / peaks[0][1], rel=1e-5)
    assert f["peak_spacing_TT"] == pytest.approx(0.5 * (peaks[2][0] - peaks[0][0]), abs=0.01)
    assert peaks[0][0] < f["ell_trough1_TT"] < peaks[1][0]
    assert f["reion_EE"] == pytest.approx(np.log(np.mean(0.05 + 0.01 * np.arange(2, 11) / 100)), rel=1e-12)


def test_missing_peak_is_nan_not_a_number():
    """A spectrum that only rises through the first-peak window has no peak there: every peak feature is NaN
    (interpret then drops the row), and the band features stay finite."""
    spectra, _ = _synthetic(220.0)
    spectra["TT"] = (100.0 + ELL)[None]  # monotonic: the max sits at the window edge
    F, names = spectral_features(spectra)
    f = dict(zip(names, F[0]))
    for k in ("ell_peak1_TT", "ell_peak2_TT", "ell_peak3_TT", "D_peak1_TT", "peak2_over_peak1_TT", "damping_TT"):
        assert np.isnan(f[k]), k
    assert np.isfinite(f["reion_EE"]) and np.isfinite(f["lensing_PP"])


def test_bad_input_is_one_line():
    spectra, _ = _synthetic(220.0)
    with pytest.raises(DataError, match="need spectrum 'PP'"):
        spectral_features({k: v for k, v in spectra.items() if k != "PP"})
    with pytest.raises(DataError, match="ell 2-2200"):
        spectral_features({k: v[:, :1000] for k, v in spectra.items()})


def test_camb_rows_follow_the_physics():
    """On the CAMB rows a bundle ships (cmb-lcdm's held-out validation.npz, 200 rows): the acoustic scale is
    pi / theta_*, the reionisation bump follows tau, the first peak's position moves against theta_*."""
    from scipy.stats import spearmanr

    from latentinfer.ive.data import full_spectra, load_corpus
    from latentinfer.paths import available

    c = load_corpus(available("models")["cmb-lcdm"] / "validation.npz")
    F, names = spectral_features(full_spectra(c))
    assert not np.isnan(F).any()
    f = {n: F[:, j] for j, n in enumerate(names)}
    theta = c.derived[:, list(c.derived_names).index("thetastar")]  # 100 theta_* in CAMB's convention
    tau = c.params[:, list(c.names).index("tau")]
    # peak spacing ~ pi / theta_* up to the phase shift of the driving: within a few percent over the box
    ratio = f["peak_spacing_TT"] * theta / 100 / np.pi
    assert 0.9 < ratio.min() and ratio.max() < 1.1 and ratio.std() < 0.01
    assert spearmanr(f["peak_spacing_TT"], theta)[0] < -0.95
    assert spearmanr(f["reion_EE"], tau)[0] > 0.95
    assert spearmanr(f["ell_peak1_TT"], theta)[0] < -0.8
