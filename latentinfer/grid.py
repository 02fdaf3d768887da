"""The shared vocabulary of spectra: names, multipole grids and units, used by ``simulate/``, ``ive/``, ``bundle/``
and ``likelihoods/`` alike (so that none of them imports another for it).

Units: TT, TE, EE are lensed D_ell = ell(ell+1) C_ell / 2pi in muK^2; PP is [L(L+1)]^2 C_L^phiphi / 2pi,
dimensionless.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SPECTRA", "ELL_MIN", "ELL_MAX", "UNITS", "ell_grid", "corpus_ell_grid"]

#: The spectra a CMB bundle predicts, in output order.
SPECTRA = ("TT", "TE", "EE", "PP")
#: The decoder's output grid: every integer multipole ELL_MIN..ELL_MAX.
ELL_MIN, ELL_MAX = 2, 3200
#: Units of each spectrum (written into bundle cards and run summaries).
UNITS = {"TT": "muK^2 (D_ell)", "TE": "muK^2 (D_ell)", "EE": "muK^2 (D_ell)", "PP": "dimensionless [L(L+1)]^2 C_L^phiphi / 2pi"}


def ell_grid() -> np.ndarray:
    """Every integer multipole 2..3200 (3199 values): the decoder's output grid."""
    return np.arange(ELL_MIN, ELL_MAX + 1)


def corpus_ell_grid() -> np.ndarray:
    """The stored corpus grid: every ell 2..49, then every even ell 50..3200 (1624 values)."""
    return np.concatenate([np.arange(2, 50), np.arange(50, ELL_MAX + 1, 2)])
