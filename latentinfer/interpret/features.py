"""Spectral features read off the spectra themselves, for labelling latents by what they do to the data.

A discovered latent need not line up with an input parameter: it may move the acoustic peaks, their relative heights
(the even-odd modulation of baryon loading), the damping tail, the reionisation bump or the lensing amplitude. These
features are measured on each spectrum (no cosmology code, no parameters), so mutual information between latents and
features says which feature of the data a latent carries.

Features of lensed ``D_ell`` in muK^2 at every ell from 2 (TT, EE) and of ``[L(L+1)]^2 C_L^phiphi / 2pi`` (PP):

=====================  ================================================================================  ========
name                   definition                                                                        unit
=====================  ================================================================================  ========
ell_peak1_TT           position of the first TT acoustic peak (parabola through the 3 ells at the max     ell
                       in ell 150-320)
ell_peak2_TT           second peak, searched in [1.9, 2.9] x ell_peak1                                   ell
ell_peak3_TT           third peak, in [3.1, 4.3] x ell_peak1                                             ell
ell_trough1_TT         first trough, the minimum between peaks 1 and 2                                    ell
peak_spacing_TT        (ell_peak3_TT - ell_peak1_TT) / 2, the acoustic scale                              ell
D_peak1_TT             height of the first peak                                                           muK^2
peak2_over_peak1_TT    D at peak 2 / D at peak 1 (odd-even modulation: baryon loading)                    ratio
peak3_over_peak1_TT    D at peak 3 / D at peak 1                                                          ratio
damping_TT             ln(mean D_TT over ell 1800-2200 / D_peak1_TT)                                      ln
low_ell_TT             ln(mean D_TT over ell 30-100 / D_peak1_TT) (tilt over the full range, ISW)         ln
reion_EE               ln(mean D_EE over ell 2-10) (reionisation bump)                                    ln muK^2
lensing_PP             ln(mean PP over L 40-400) (lensing amplitude)                                      ln
=====================  ================================================================================  ========
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import DataError

__all__ = ["FEATURES", "spectral_features"]

FEATURES = ("ell_peak1_TT", "ell_peak2_TT", "ell_peak3_TT", "ell_trough1_TT", "peak_spacing_TT", "D_peak1_TT",
            "peak2_over_peak1_TT", "peak3_over_peak1_TT", "damping_TT", "low_ell_TT", "reion_EE", "lensing_PP")


def _extremum(D: np.ndarray, ell: np.ndarray, lo: np.ndarray, hi: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the position and value of the max (sign +1) or min (-1) of D over ell in [lo, hi], refined by the
    parabola through the grid point and its two neighbours."""
    n = len(D)
    inside = (ell[None, :] >= lo[:, None]) & (ell[None, :] <= hi[:, None])
    masked = np.where(inside, sign * D, -np.inf)
    i = np.clip(masked.argmax(axis=1), 1, D.shape[1] - 2)
    r = np.arange(n)
    y0, y1, y2 = sign * D[r, i - 1], sign * D[r, i], sign * D[r, i + 1]
    den = y0 - 2 * y1 + y2
    step = ell[i + 1] - ell[i]
    off = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    off = np.clip(off, -1.0, 1.0)
    pos = ell[i] + off * step
    val = sign * (y1 - 0.25 * (y0 - y2) * off)
    edge = (pos <= lo + step) | (pos >= hi - step) | ~np.isfinite(masked[r, i])
    return np.where(edge, np.nan, pos), np.where(edge, np.nan, val)


def _band_mean(D: np.ndarray, ell: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (ell >= lo) & (ell <= hi)
    return D[:, sel].mean(axis=1)


def spectral_features(spectra: Mapping[str, np.ndarray], ell: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Features (:data:`FEATURES`, table in the module docstring) of each row of ``spectra``.

    Parameters
    ----------
    spectra : ``{"TT", "EE", "PP": (n, n_ell)}`` lensed D_ell in muK^2 (PP dimensionless), rows of one ell grid
    ell : (n_ell,) multipoles of the columns (default 2, 3, ...; every ell, as ``full_spectra`` gives them)

    Returns
    -------
    ``(n, 12)`` array (NaN where a peak is not found inside its window) and the feature names.
    """
    for key in ("TT", "EE", "PP"):
        if key not in spectra:
            raise DataError(f"spectral features need spectrum '{key}'")
    TT, EE, PP = (np.atleast_2d(np.asarray(spectra[k], dtype=float)) for k in ("TT", "EE", "PP"))
    ell = np.arange(2, 2 + TT.shape[1], dtype=float) if ell is None else np.asarray(ell, dtype=float)
    if ell.shape != (TT.shape[1],) or EE.shape != TT.shape or PP.shape != TT.shape:
        raise DataError(f"spectral features: TT {TT.shape}, EE {EE.shape}, PP {PP.shape} and ell {ell.shape} do not match")
    if ell[0] > 2 or ell[-1] < 2200:
        raise DataError(f"spectral features need ell 2-2200, got {ell[0]:g}-{ell[-1]:g}")
    n = len(TT)
    one = np.ones(n)
    l1, h1 = _extremum(TT, ell, 150 * one, 320 * one, +1)
    l2, h2 = _extremum(TT, ell, 1.9 * l1, 2.9 * l1, +1)
    l3, h3 = _extremum(TT, ell, 3.1 * l1, 4.3 * l1, +1)
    t1, _ = _extremum(TT, ell, l1, l2, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.stack([
            l1, l2, l3, t1, 0.5 * (l3 - l1), h1, h2 / h1, h3 / h1,
            np.log(_band_mean(TT, ell, 1800, 2200) / h1), np.log(_band_mean(TT, ell, 30, 100) / h1),
            np.log(_band_mean(EE, ell, 2, 10)), np.log(_band_mean(PP, ell, 40, 400)),
        ], axis=1)
    return np.where(np.isfinite(out), out, np.nan), list(FEATURES)
