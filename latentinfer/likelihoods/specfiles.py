"""Reading the files a likelihood spec names: safe paths inside the folder, vectors and matrices.

Every problem is a :class:`~latentinfer.errors.ConfigError` (bad spec key) or
:class:`~latentinfer.errors.DataError` (bad file) whose one line names the spec key and the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..checks import check_keys, require
from ..errors import ConfigError, DataError

__all__ = ["spec_path", "load_table", "load_vector", "load_matrix"]


def spec_path(folder: Path, fname: str, where: str) -> Path:
    """``folder / fname``, which must exist and stay inside ``folder``."""
    if not isinstance(fname, str) or not fname:
        raise ConfigError(f"{where}: a file name is needed, got {fname!r}")
    path = (folder / fname).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ConfigError(f"{where}: file '{fname}' points outside the likelihood folder {folder}")
    if not path.is_file():
        raise ConfigError(f"{where}: file not found: {path}")
    return path


def load_table(folder: Path, fname: str, where: str) -> np.ndarray:
    """A whitespace-separated text table (``#`` comments ignored) as a float64 array of 2 dimensions."""
    path = spec_path(folder, fname, where)
    try:
        return np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{where}: cannot read numbers from {path}: {str(exc).splitlines()[0]}") from None


def load_vector(folder: Path, spec: Mapping, where: str) -> np.ndarray:
    """``{file: NAME, column: i}`` (column defaults to 0) -> float64 vector."""
    check_keys(spec, {"file", "column"}, where)
    table = load_table(folder, require(spec, "file", str, where), where)
    col = require(spec, "column", int, where, default=0)
    if not 0 <= col < table.shape[1]:
        raise ConfigError(f"{where}: key 'column' is {col} but the file has {table.shape[1]} columns")
    return table[:, col].copy()


def load_matrix(folder: Path, spec: Mapping, n: int, where: str) -> np.ndarray:
    """A covariance ``(n, n)`` in float64 from a spec.

    ``{file, format: text | fortran | sigma, triangle: full | lower, column}``: ``text`` is a square text table,
    ``fortran`` one Fortran unformatted record of ``n*n`` float64 (as plik_lite's ``c_matrix``), ``sigma`` a
    column of standard deviations (diagonal covariance). ``triangle: lower`` means only the lower triangle is
    stored (the upper is ignored) and the matrix is mirrored: ``tril(C) + tril(C, -1)^T``.
    """
    check_keys(spec, {"file", "format", "triangle", "column", "hartlap_n_sims"}, where)
    fmt = require(spec, "format", str, where, default="text")
    fname = require(spec, "file", str, where)
    if fmt == "text":
        mat = load_table(folder, fname, where)
    elif fmt == "fortran":
        mat = _read_fortran(spec_path(folder, fname, where), n, where)
    elif fmt == "sigma":
        mat = np.diag(load_vector(folder, {"file": fname, "column": spec.get("column", 0)}, where) ** 2)
    else:
        raise ConfigError(f"{where}: key 'format' must be one of text, fortran, sigma; got {fmt!r}")
    if mat.shape != (n, n):
        raise DataError(f"{where}: covariance in '{fname}' has shape {mat.shape}, the data vector has {n} entries")
    tri = require(spec, "triangle", str, where, default="full")
    if tri == "lower":
        mat = np.tril(mat) + np.tril(mat, -1).T
    elif tri != "full":
        raise ConfigError(f"{where}: key 'triangle' must be full or lower, got {tri!r}")
    return mat


def _read_fortran(path: Path, n: int, where: str) -> np.ndarray:
    from scipy.io import FortranFile, FortranFormattingError

    try:
        with FortranFile(path, "r") as f:
            vals = f.read_reals(np.float64)
    except (FortranFormattingError, ValueError, TypeError, OSError) as exc:
        raise DataError(f"{where}: {path} is not a Fortran unformatted float64 record ({exc})") from None
    if vals.size != n * n:
        raise DataError(f"{where}: {path} holds {vals.size} numbers, expected {n}x{n} = {n * n}")
    return vals.reshape(n, n)
