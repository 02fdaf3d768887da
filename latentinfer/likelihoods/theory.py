"""Theory spectra for the CMB likelihoods: the text-file reader and the dict-of-tensors convention.

Convention (every likelihood of type ``bandpower``): a dict ``{"TT", "TE", "EE", "PP"}`` of arrays or tensors of
shape ``(..., n_ell)`` at integer multipoles ``ell = 2, 3, ..., n_ell + 1``. TT, TE, EE are lensed
``D_ell = ell(ell+1) C_ell / 2pi`` in muK^2; PP is ``[L(L+1)]^2 C_L^phiphi / 2pi`` (dimensionless).

A theory file has the CAMB/cobaya text layout: columns ``ell, D_TT, D_TE, D_EE`` and optionally ``D_PP``, one row
per integer ell starting at 2; blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

__all__ = ["ELL_MIN", "CMB_KEYS", "THEORY_KEYS", "read_theory_file", "check_theory_arrays", "to_tensors"]

#: First multipole of every theory array.
ELL_MIN = 2
CMB_KEYS = ("TT", "TE", "EE")
THEORY_KEYS = ("TT", "TE", "EE", "PP")
#: TT D_ell near ell = 200 is about 5000 muK^2 in any viable cosmology; below this the file holds C_ell.
_DL_TT_FLOOR = 100.0


def read_theory_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a theory file; returns ``{"ell": (n,), "TT": (n,), "TE": (n,), "EE": (n,)[, "PP": (n,)]}`` (float64).

    ``ell = 2..n+1``. Raises :class:`~latentinfer.errors.DataError` (one line naming the file and the problem)
    for a missing or unreadable file, non-numeric entries, rows of unequal length, a column count other than 4
    or 5, ell not running 2, 3, 4, ..., NaN/inf, or TT that looks like C_ell rather than D_ell.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"theory file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"theory file {p}: cannot read it as text ({type(exc).__name__})") from None
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            row = [float(tok) for tok in s.split()]
        except ValueError:
            raise DataError(f"theory file {p}, line {lineno}: non-numeric entry in {_short(s)!r}") from None
        if rows and len(row) != len(rows[0]):
            raise DataError(f"theory file {p}, line {lineno}: {len(row)} columns, earlier rows have {len(rows[0])}")
        rows.append(row)
    if not rows:
        raise DataError(f"theory file {p}: no data rows")
    ncol = len(rows[0])
    if ncol not in (4, 5):
        raise DataError(f"theory file {p}: {ncol} columns; expected 4 (ell, D_TT, D_TE, D_EE) or 5 (+ D_PP)")
    arr = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"theory file {p}: NaN/inf in data row {r + 1}, column {c + 1}")
    ell = arr[:, 0]
    expected = np.arange(ELL_MIN, ELL_MIN + len(ell), dtype=np.float64)
    if not np.array_equal(ell, expected):
        i = int(np.nonzero(ell != expected)[0][0])
        raise DataError(
            f"theory file {p}: ell must run {ELL_MIN}, {ELL_MIN + 1}, {ELL_MIN + 2}, ... one row per multipole; "
            f"data row {i + 1} has ell = {ell[i]:g}, expected {expected[i]:g}"
        )
    out = {"ell": ell.astype(np.int64)}
    for j, key in enumerate(THEORY_KEYS[: ncol - 1], start=1):
        out[key] = arr[:, j].copy()
    check_theory_arrays(out, str(p))
    return out


def check_theory_arrays(theory: Mapping[str, np.ndarray], what: str = "theory") -> None:
    """Sanity checks on CMB spectra starting at ell = 2: finite, and TT looks like D_ell (not C_ell)."""
    for key, val in theory.items():
        if key != "ell" and not np.all(np.isfinite(val)):
            raise DataError(f"{what}: {key} has NaN/inf entries")
    tt = theory.get("TT")
    if tt is not None and np.shape(tt)[-1] > 210 - ELL_MIN:
        near200 = np.median(np.asarray(tt)[..., 190 - ELL_MIN : 211 - ELL_MIN], axis=-1)
        if np.any(near200 < _DL_TT_FLOOR):
            raise DataError(
                f"{what}: TT near ell = 200 is {float(np.min(near200)):.3g} muK^2, expected D_ell of thousands of "
                f"muK^2; this looks like C_ell, give D_ell = ell(ell+1) C_ell / 2pi"
            )


def to_tensors(theory: Mapping, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """The spectra of a theory dict (``"ell"`` dropped) as tensors of ``dtype``."""
    return {k: torch.as_tensor(np.asarray(v), dtype=dtype) for k, v in theory.items() if k in THEORY_KEYS}


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."

