"""CAMB spectra exactly as the shared corpus was made (its README; CAMB 2.0.5).

``camb_spectra(params, names)`` returns lensed D_ell (TT, TE, EE in muK^2) and the lensing potential
PP = [L(L+1)]^2 C_L^phiphi / 2pi on the corpus grid (ell 2..49, then even 50..3200), plus the derived
parameters (thetastar, rstar, zstar, rdrag, zdrag, age). A CAMB failure gives ``ok=False`` and NaN rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..grid import corpus_ell_grid

__all__ = ["camb_spectra", "run_chunk", "DERIVED_NAMES", "LMAX"]

LMAX = 3200
DERIVED_NAMES = ("thetastar", "rstar", "zstar", "rdrag", "zdrag", "age")


def _camb_params(p: dict[str, float]):
    import camb

    pars = camb.CAMBparams()
    pars.set_cosmology(H0=p["H0"], ombh2=p["ombh2"], omch2=p["omch2"], mnu=0.06, nnu=3.046,
                       num_massive_neutrinos=1, tau=p["tau"])
    pars.InitPower.set_params(As=np.exp(p["logA"]) * 1e-10, ns=p["ns"])
    if "fde_zc" in p:
        de = camb.dark_energy.EarlyQuintessence()
        de.set_params(n=3, theta_i=p["theta_i"], use_zc=True, zc=10 ** p["log10_zc"], fde_zc=max(p["fde_zc"], 1e-6))
        pars.DarkEnergy = de
    pars.set_for_lmax(LMAX, lens_potential_accuracy=1)
    pars.set_accuracy(AccuracyBoost=1.0)
    pars.WantTensors = False
    return pars


def camb_spectra(theta: Sequence[float], names: Sequence[str]) -> dict[str, np.ndarray]:
    """One spectrum set on the corpus grid: ``{TT, TE, EE, PP: (1624,), derived: (6,), ok: bool}``."""
    import camb

    ell = corpus_ell_grid()
    p = {str(n): float(v) for n, v in zip(names, theta)}
    try:
        pars = _camb_params(p)
        res = camb.get_results(pars)
        cl = res.get_cmb_power_spectra(pars, CMB_unit="muK", lmax=LMAX, raw_cl=False)
        tot, pp = cl["total"], cl["lens_potential"]
        d = res.get_derived_params()
        out = {"TT": tot[ell, 0], "EE": tot[ell, 1], "TE": tot[ell, 3], "PP": pp[ell, 0],
               "derived": np.array([d[k] for k in DERIVED_NAMES]), "ok": True}
        if not all(np.isfinite(out[k]).all() for k in ("TT", "TE", "EE", "PP")):
            raise ValueError("non-finite spectrum")
        return out
    except Exception:  # CAMB raises CAMBError, ValueError or its own subclasses; any failure marks the row
        nan = np.full(len(ell), np.nan)
        return {"TT": nan, "TE": nan, "EE": nan, "PP": nan, "derived": np.full(len(DERIVED_NAMES), np.nan), "ok": False}


def run_chunk(task: dict) -> dict:
    """Task ``{"params": (m, p) list, "names": [...]}`` -> arrays for one chunk file (float32 spectra)."""
    rows = [camb_spectra(th, task["names"]) for th in task["params"]]
    return {
        **{k: np.stack([r[k] for r in rows]).astype(np.float32) for k in ("TT", "TE", "EE", "PP")},
        "derived": np.stack([r["derived"] for r in rows]).astype(np.float64),
        "ok": np.array([r["ok"] for r in rows], bool),
        "params": np.asarray(task["params"], np.float64),
    }
