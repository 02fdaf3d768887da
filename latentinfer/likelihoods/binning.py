"""Binning schemes of the ``bandpower`` likelihood: each turns a spec into a matrix ``(n_bins, n_ell)``.

The matrix acts on a theory spectrum at ``ell = 2 .. lmax`` (``lmax`` chosen by the scheme from its files) and
returns the binned model. Register a new scheme with :func:`register_binning`; the spec's ``kind`` picks it.

Schemes
-------
``weights``  plik-style top-hat bins: ``{weights: FILE, first: FILE, last: FILE, ell_offset: int}``; bin ``i``
             sums ``weights[k] * X_{ell = k + ell_offset}`` for ``k = first[i] .. last[i]`` (inclusive).
``windows``  one text table, column 0 = ell, columns 1..n_bins = the window of each bin (candl layout).
``window_files``  one file per bin (CosmoMC layout): ``pattern`` with ``{b}`` = 1..n_bins, columns (L, W);
             only ``ell_range: [lo, hi]`` is used, multipoles not listed have zero weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..checks import check_keys, require
from ..registry import Registry
from ..errors import ConfigError, DataError
from .specfiles import load_table
from .theory import ELL_MIN

__all__ = ["register_binning", "binning_matrix"]

#: ``kind -> fn(folder, spec, n_bins, where) -> (n_bins, n_ell)`` (plug-ins: modules of :mod:`latentinfer.likelihoods`).
BINNINGS: Registry = Registry("binning kind", "latentinfer.likelihoods", error=ConfigError, skip=("base", "registry"))


def register_binning(kind: str):
    """Decorator: ``fn(folder, spec, n_bins, where) -> (n_bins, n_ell)`` matrix on ell = 2..2+n_ell-1."""

    return BINNINGS.register(kind)


def binning_matrix(folder: Path, spec, n_bins: int, where: str) -> np.ndarray:
    """The binning matrix of one spec, or of a list of specs (summed, e.g. windows + linear corrections)."""
    specs = spec if isinstance(spec, list) else [spec]
    if not specs:
        raise ConfigError(f"{where}: empty binning list")
    mats = []
    for i, s in enumerate(specs):
        w = f"{where}[{i}]" if isinstance(spec, list) else where
        if not isinstance(s, Mapping):
            raise ConfigError(f"{w}: a binning must be a mapping with key 'kind', got {s!r}")
        kind = require(s, "kind", str, w)
        mats.append(BINNINGS.get(kind, where=w)(folder, s, n_bins, w))
    n_ell = max(m.shape[1] for m in mats)
    total = np.zeros((n_bins, n_ell))
    for m in mats:
        total[:, : m.shape[1]] += m
    return total


def _ints(x: np.ndarray, what: str) -> np.ndarray:
    if not np.all(x == np.round(x)):
        raise DataError(f"{what}: expected integers")
    return x.astype(np.int64)


@register_binning("weights")
def _weights(folder, spec, n_bins, where):
    check_keys(spec, {"kind", "weights", "first", "last", "ell_offset"}, where)
    w = load_table(folder, require(spec, "weights", str, where), f"{where}: weights").ravel()
    first = _ints(load_table(folder, require(spec, "first", str, where), f"{where}: first").ravel(), f"{where}: first")
    last = _ints(load_table(folder, require(spec, "last", str, where), f"{where}: last").ravel(), f"{where}: last")
    offset = require(spec, "ell_offset", int, where)
    if len(first) < n_bins or len(last) < n_bins:
        raise DataError(f"{where}: {n_bins} bins needed but 'first'/'last' list {len(first)}/{len(last)}")
    if offset < ELL_MIN:
        raise ConfigError(f"{where}: key 'ell_offset' must be >= {ELL_MIN}, got {offset}")
    lmax = int(last[:n_bins].max()) + offset
    mat = np.zeros((n_bins, lmax - ELL_MIN + 1))
    for i in range(n_bins):
        if not 0 <= first[i] <= last[i] < len(w):
            raise DataError(f"{where}: bin {i} indexes weights {first[i]}..{last[i]} outside 0..{len(w) - 1}")
        k = np.arange(first[i], last[i] + 1)
        mat[i, k + offset - ELL_MIN] = w[k]
    return mat


@register_binning("windows")
def _windows(folder, spec, n_bins, where):
    check_keys(spec, {"kind", "file"}, where)
    tab = load_table(folder, require(spec, "file", str, where), where)
    if tab.shape[1] != n_bins + 1:
        raise DataError(f"{where}: window file has {tab.shape[1]} columns, expected ell + {n_bins} bins")
    ell = _ints(tab[:, 0], f"{where}: ell column")
    if ell.min() < ELL_MIN:
        raise DataError(f"{where}: window file starts at ell = {ell.min()} < {ELL_MIN}")
    mat = np.zeros((n_bins, ell.max() - ELL_MIN + 1))
    mat[:, ell - ELL_MIN] = tab[:, 1:].T
    return mat


@register_binning("window_files")
def _window_files(folder, spec, n_bins, where):
    check_keys(spec, {"kind", "pattern", "ell_range"}, where)
    pattern = require(spec, "pattern", str, where)
    if "{b}" not in pattern:
        raise ConfigError(f"{where}: key 'pattern' must contain {{b}} (the bin number from 1), got {pattern!r}")
    lo, hi = _ell_range(require(spec, "ell_range", list, where), where)
    mat = np.zeros((n_bins, hi - ELL_MIN + 1))
    for b in range(n_bins):
        tab = load_table(folder, pattern.replace("{b}", str(b + 1)), f"{where}: bin {b + 1}")
        if tab.shape[1] < 2:
            raise DataError(f"{where}: bin {b + 1} window needs columns (L, W)")
        for L, val in zip(_ints(tab[:, 0], f"{where}: bin {b + 1} L"), tab[:, 1]):
            if lo <= L <= hi:
                mat[b, L - ELL_MIN] = val
    return mat


def _ell_range(r, where):
    if len(r) != 2 or not all(isinstance(x, int) for x in r) or not ELL_MIN <= r[0] <= r[1]:
        raise ConfigError(f"{where}: key 'ell_range' must be [lo, hi] integers with {ELL_MIN} <= lo <= hi, got {r!r}")
    return int(r[0]), int(r[1])
