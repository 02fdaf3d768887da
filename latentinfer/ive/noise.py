"""The noise model that weights the reconstruction loss: errors count in units of the data's per-ell noise.

For each ell (2..3200) and spectrum the standard deviation of a measured D_ell is the Knox formula

    sigma_XX(l) = sqrt(2 / ((2l+1) f_sky)) (D_XX(l) + N_XX(l))                       (TT, EE, PP)
    sigma_TE(l) = sqrt(((D_TE)^2 + (D_TT + N_TT)(D_EE + N_EE)) / ((2l+1) f_sky))

with white noise through a Gaussian beam, ``N(l) = (Delta [muK rad])^2 exp(l(l+1) theta^2 / (8 ln 2)) l(l+1)/2pi``
(D-units, muK^2). Two experiments are combined by inverse variance, so the loss cares about ell < ~2000 as Planck
does and about the damping tail as a ground-based experiment does:

* Planck-like: Delta_T = 33 muK-arcmin, Delta_P = 70 muK-arcmin, 7 arcmin FWHM, f_sky = 0.6;
* SPT-3G-like: Delta_T = 6 muK-arcmin, Delta_P = 8.5 muK-arcmin, 1.2 arcmin FWHM, f_sky = 0.04.

Lensing (PP, [L(L+1)]^2 C^phiphi / 2pi): Planck-like reconstruction noise ``N_PP(L) = 1.5e-7 (1 + (L/400)^2)``,
f_sky = 0.6. The model is deliberately simple: it sets where the network spends its capacity; the accuracy
itself is judged with the real plik_lite covariance (:mod:`latentinfer.ive.accuracy`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["EXPERIMENTS", "noise_dl", "knox_sigma"]

_ARCMIN = np.pi / 180 / 60

#: (Delta_T, Delta_P in muK-arcmin, FWHM in arcmin, f_sky)
EXPERIMENTS = {"planck": (33.0, 70.0, 7.0, 0.6), "spt3g": (6.0, 8.5, 1.2, 0.04)}


def noise_dl(ell: np.ndarray, delta_uk_arcmin: float, fwhm_arcmin: float) -> np.ndarray:
    """White noise through a Gaussian beam, as D_ell in muK^2, shape like ``ell``."""
    theta = fwhm_arcmin * _ARCMIN
    ell = np.asarray(ell, np.float64)
    nl = (delta_uk_arcmin * _ARCMIN) ** 2 * np.exp(np.minimum(ell * (ell + 1) * theta**2 / (8 * np.log(2)), 700.0))
    return nl * ell * (ell + 1) / (2 * np.pi)


def knox_sigma(ell: np.ndarray, D: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-ell noise standard deviation ``{TT, TE, EE, PP: (n_ell,)}`` around reference spectra ``D`` (D-units)."""
    ell = np.asarray(ell, np.float64)
    inv = {k: np.zeros_like(ell) for k in ("TT", "TE", "EE")}
    for dT, dP, fwhm, fsky in EXPERIMENTS.values():
        nT, nP = noise_dl(ell, dT, fwhm), noise_dl(ell, dP, fwhm)
        modes = (2 * ell + 1) * fsky
        s = {
            "TT": np.sqrt(2 / modes) * (D["TT"] + nT),
            "EE": np.sqrt(2 / modes) * (D["EE"] + nP),
            "TE": np.sqrt((D["TE"] ** 2 + (D["TT"] + nT) * (D["EE"] + nP)) / modes),
        }
        for k in inv:
            inv[k] += 1.0 / s[k] ** 2
    out = {k: 1.0 / np.sqrt(v) for k, v in inv.items()}
    npp = 1.5e-7 * (1 + (ell / 400.0) ** 2)
    out["PP"] = np.sqrt(2 / ((2 * ell + 1) * 0.6)) * (D["PP"] + npp)
    return out
