"""Training data for the IVE: corpus loading, splining to every integer ell, and the normalised target space.

Corpus files (named relative to the corpus root, :func:`latentinfer.paths.corpus_path`) follow the shared corpus README: ``params (N, p)``, ``names``, ``box_low/high``, ``ell``
(the stored grid: 2..49 then even 50..3200), ``TT, TE, EE`` (lensed D_ell in muK^2) and ``PP``
([L(L+1)]^2 C_L^phiphi / 2pi, dimensionless), ``derived``, ``derived_names``, ``ok``.

Target space (per spectrum, at every integer ell 2..3200, 3199 values):

* ``TT, EE, PP``: ``t = log D_ell``; ``TE``: ``t = TE / sqrt(TT * EE)`` (a correlation coefficient, sign-safe);
* the reference (training-set mean of ``t``, i.e. the corpus mean spectrum divided out in log space) is
  subtracted and the result divided by the per-ell training-set standard deviation: ``x = (t - ref) / scale``;
* each standardised spectrum is compressed to its first ``n_pca`` principal components; the decoder predicts
  whitened PCA coefficients and a fixed linear layer expands them back to ``x`` (smooth in ell).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from ..errors import DataError
from ..bundle.nets import Normaliser  # the runtime half of the target space lives with the decoders
from ..paths import CORPUS_ENV, corpus_path
from ..grid import ELL_MAX, ELL_MIN, SPECTRA, corpus_ell_grid, ell_grid

__all__ = [
    "SPECTRA",
    "ELL_MIN",
    "ELL_MAX",
    "ell_grid",
    "corpus_ell_grid",
    "Corpus",
    "load_corpus",
    "concat_corpora",
    "embed_lcdm",
    "EDE_EXTRA",
    "spline_to_integer",
    "full_spectra",
    "Normaliser",
]

_KEYS = ("params", "names", "box_low", "box_high", "ell", "TT", "TE", "EE", "PP", "derived", "derived_names", "ok")


@dataclass
class Corpus:
    """Rows of a CAMB corpus on its stored ell grid (float64 in memory); see the module docstring for units."""

    params: np.ndarray
    names: list[str]
    box_low: np.ndarray
    box_high: np.ndarray
    ell: np.ndarray
    spectra: dict[str, np.ndarray]
    derived: np.ndarray
    derived_names: list[str]
    source: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.params)

    def take(self, idx) -> "Corpus":
        idx = np.asarray(idx)
        return Corpus(self.params[idx], self.names, self.box_low, self.box_high, self.ell,
                      {k: v[idx] for k, v in self.spectra.items()}, self.derived[idx], self.derived_names, self.source)

    def to_npz_dict(self, dtype=np.float32) -> dict[str, np.ndarray]:
        """Arrays with the corpus file's keys (spectra in ``dtype``), e.g. for a bundle's ``validation.npz``."""
        out = {"params": self.params.astype(np.float64), "names": np.array(self.names), "box_low": self.box_low,
               "box_high": self.box_high, "ell": self.ell, "derived": self.derived.astype(np.float64),
               "derived_names": np.array(self.derived_names), "ok": np.ones(len(self), bool)}
        out.update({k: v.astype(dtype) for k, v in self.spectra.items()})
        return out


def load_corpus(path: str | os.PathLike, *, verbose: bool = True) -> Corpus:
    """Read one corpus file, dropping rows with ``ok=False`` or any non-finite value (the count is printed).

    Raises :class:`DataError` naming the file and the key when the file is unusable.
    """
    path = corpus_path(path)
    if not path.is_file():
        raise DataError(f"corpus file {path} not found (corpus files are named relative to the root "
                        f"${CORPUS_ENV} or --corpus DIR; see README 'Corpus')")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing key '{missing[0]}' (a corpus needs {', '.join(_KEYS)})")
            d = {k: f[k] for k in _KEYS}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable npz corpus ({exc})") from None
    n = len(d["params"])
    for k in SPECTRA:
        if d[k].shape != (n, len(d["ell"])):
            raise DataError(f"{path}: key '{k}' has shape {d[k].shape}, expected ({n}, {len(d['ell'])})")
    good = d["ok"].astype(bool) & np.isfinite(d["params"]).all(1)
    for k in SPECTRA:
        good &= np.isfinite(d[k]).all(1)
    for k in ("TT", "EE", "PP"):
        good &= (d[k] > 0).all(1)
    n_bad = int(n - good.sum())
    if verbose and n_bad:
        print(f"{path.name}: skipped {n_bad} of {n} rows (CAMB failures: ok=False or NaN/non-positive spectra)")
    if good.sum() == 0:
        raise DataError(f"{path}: no usable rows (all {n} rows failed or are NaN)")
    return Corpus(
        params=d["params"][good].astype(np.float64), names=[str(x) for x in d["names"]],
        box_low=d["box_low"].astype(np.float64), box_high=d["box_high"].astype(np.float64),
        ell=d["ell"].astype(np.int64), spectra={k: d[k][good].astype(np.float64) for k in SPECTRA},
        derived=d["derived"][good].astype(np.float64), derived_names=[str(x) for x in d["derived_names"]],
        source=[str(path)],
    )


def concat_corpora(parts: Sequence[Corpus]) -> Corpus:
    """Stack corpora with the same parameter names and ell grid; the box is the union of their boxes."""
    first = parts[0]
    for c in parts[1:]:
        if c.names != first.names:
            raise DataError(f"corpora {first.source} and {c.source} have different parameter names")
        if not np.array_equal(c.ell, first.ell):
            raise DataError(f"corpora {first.source} and {c.source} have different ell grids")
    return Corpus(
        np.concatenate([c.params for c in parts]), first.names,
        np.min([c.box_low for c in parts], axis=0), np.max([c.box_high for c in parts], axis=0), first.ell,
        {k: np.concatenate([c.spectra[k] for c in parts]) for k in SPECTRA},
        np.concatenate([c.derived for c in parts]), first.derived_names, sum((c.source for c in parts), []),
    )


EDE_EXTRA = ("fde_zc", "log10_zc", "theta_i")


def embed_lcdm(lcdm: Corpus, ede: Corpus, rng: np.random.Generator) -> Corpus:
    """LCDM corpus rows as EDE rows at ``fde_zc = 0``, on the parameter names and box of the EDE corpus ``ede``.

    CAMB's EarlyQuintessence with ``fde_zc = 0`` (run as 1e-6, as the corpus does) is LCDM: the spectra agree to
    dchi2 < 1e-6 under the plik_lite covariance (``tests/simulate/test_simulate.py``, slow). ``log10_zc`` and ``theta_i``,
    which then change nothing, are drawn uniformly over the EDE box so that no value of them is singled out.
    Raises :class:`DataError` if the names do not fit (the EDE names are the LCDM ones followed by
    ``fde_zc, log10_zc, theta_i``) or a row lies outside the EDE box.
    """
    src = lcdm.source[0] if lcdm.source else "LCDM corpus"
    if list(ede.names) != list(lcdm.names) + list(EDE_EXTRA):
        raise DataError(f"{src}: parameters {', '.join(lcdm.names)} are not the EDE corpus's {', '.join(ede.names)} "
                        f"less {', '.join(EDE_EXTRA)}")
    if lcdm.derived_names != ede.derived_names or not np.array_equal(lcdm.ell, ede.ell):
        raise DataError(f"{src}: derived parameters or ell grid differ from the EDE corpus's")
    p = len(lcdm.names)
    lo, hi = ede.box_low, ede.box_high
    outside = (lcdm.params < lo[:p]) | (lcdm.params > hi[:p])
    if outside.any():
        j = int(np.argwhere(outside)[0][1])
        raise DataError(f"{src}: parameter '{lcdm.names[j]}' leaves the EDE box [{lo[j]}, {hi[j]}]")
    n = len(lcdm)
    extra = np.column_stack([np.zeros(n), rng.uniform(lo[p + 1], hi[p + 1], n), rng.uniform(lo[p + 2], hi[p + 2], n)])
    return Corpus(np.concatenate([lcdm.params, extra], 1), list(ede.names), lo, hi, lcdm.ell, lcdm.spectra,
                  lcdm.derived, lcdm.derived_names, lcdm.source)


def spline_to_integer(ell: np.ndarray, rows: np.ndarray, out_ell: np.ndarray | None = None) -> np.ndarray:
    """Cubic spline (``scipy.interpolate.CubicSpline``, as the corpus README prescribes) of rows ``(N, n_stored)``
    through the stored ``ell`` onto every integer ell 2..3200; returns ``(N, 3199)`` float64."""
    out_ell = ell_grid() if out_ell is None else out_ell
    if ell[0] > out_ell[0] or ell[-1] < out_ell[-1]:
        raise DataError(f"corpus ell grid {ell[0]}..{ell[-1]} does not cover {out_ell[0]}..{out_ell[-1]}")
    return CubicSpline(ell.astype(np.float64), np.asarray(rows, np.float64), axis=-1)(out_ell)


def full_spectra(c: Corpus) -> dict[str, np.ndarray]:
    """The corpus spectra at every integer ell 2..3200: ``{name: (N, 3199)}`` (D_ell in muK^2; PP dimensionless)."""
    return {k: spline_to_integer(c.ell, v) for k, v in c.spectra.items()}
