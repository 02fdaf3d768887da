"""Write ``camb_lcdm_planck2018.txt``: one lensed LCDM spectrum from CAMB for the likelihood tests.

The tests read this committed file, so they do not need CAMB at run time. Regenerate with::

    PYTHONPATH=$PWD python tests/data/make_camb_fixture.py

Cosmology: the Planck 2018 TT,TE,EE+lowE+lensing best fit (Planck 2018 VI, Table 2, last column), namely
ombh2 = 0.02238, omch2 = 0.1201, H0 = 67.32, tau = 0.0543, ln(1e10 A_s) = 3.0448, n_s = 0.9660, one massive
neutrino of 0.06 eV. CAMB 2.0.5 settings as in the shipped corpus (the shared corpus README):
``set_for_lmax(3200, lens_potential_accuracy=1)``, ``AccuracyBoost = 1``, no tensors.

Layout (CAMB/cobaya text, as read by :func:`latentinfer.likelihoods.theory.read_theory_file`): columns
ell, D_TT, D_TE, D_EE (lensed, D_ell = ell(ell+1) C_ell / 2pi in muK^2) and D_PP = [L(L+1)]^2 C_L^phiphi / 2pi
(dimensionless), one row per integer ell = 2..3200.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

PARAMS = {"ombh2": 0.02238, "omch2": 0.1201, "H0": 67.32, "tau": 0.0543, "logA": 3.0448, "ns": 0.9660}
LMAX = 3200


def compute() -> np.ndarray:
    """``(LMAX - 1, 5)`` array: ell, TT, TE, EE, PP for ell = 2..LMAX."""
    import camb

    p = PARAMS
    pars = camb.CAMBparams()
    pars.set_cosmology(H0=p["H0"], ombh2=p["ombh2"], omch2=p["omch2"], mnu=0.06, nnu=3.046, num_massive_neutrinos=1, tau=p["tau"])
    pars.InitPower.set_params(As=math.exp(p["logA"]) * 1e-10, ns=p["ns"])
    pars.set_for_lmax(LMAX, lens_potential_accuracy=1)
    pars.set_accuracy(AccuracyBoost=1.0)
    pars.WantTensors = False
    res = camb.get_results(pars)
    cl = res.get_cmb_power_spectra(pars, CMB_unit="muK", lmax=LMAX, raw_cl=False)
    tot, pp = cl["total"], cl["lens_potential"]
    ell = np.arange(2, LMAX + 1)
    return np.column_stack([ell, tot[2:, 0], tot[2:, 3], tot[2:, 1], pp[2:, 0]])


def main() -> None:
    out = Path(__file__).with_name("camb_lcdm_planck2018.txt")
    header = (
        f"CAMB {__import__('camb').__version__} lensed LCDM, Planck 2018 best fit {PARAMS}, mnu=0.06\n"
        "made by tests/data/make_camb_fixture.py\n"
        "ell  D_TT[muK^2]  D_TE[muK^2]  D_EE[muK^2]  D_PP=[L(L+1)]^2 C_L^phiphi/2pi"
    )
    np.savetxt(out, compute(), fmt=["%d", "%.10e", "%.10e", "%.10e", "%.10e"], header=header)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
