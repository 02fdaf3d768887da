"""A Gaussian likelihood of one forward-model output: ``data ~ N(f(z)[output], cov)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Likelihood
from .registry import register_likelihood_type
from ..checks import require
from ..checks import check_keys

__all__ = ["GaussianLikelihood"]


class GaussianLikelihood(Likelihood):
    """``data ~ N(theory[output], cov)``: the generic Gaussian likelihood of one output vector.

    Parameters
    ----------
    data : array (n,)
    cov : array (n, n), symmetric positive definite
    name : str
    output : str
        Which forward-model output it compares with (``"y"`` for a module that returns a tensor).
    """

    def __init__(self, data, cov, *, name: str = "gaussian", output: str = "y", nuisance=(), meta=None):
        self.output = output
        super().__init__(data, cov, name=name, nuisance=nuisance, meta=meta)

    @property
    def requires(self):  # type: ignore[override]
        return (self.output,)

    def check_theory(self, sizes):
        super().check_theory(sizes)
        if sizes[self.output] != self.n_data:
            raise DataError(
                f"likelihood '{self.name}': forward-model output '{self.output}' has length {sizes[self.output]} "
                f"but the data has {self.n_data} entries"
            )

    def predict(self, theory, nuisance):
        return theory[self.output]


def _read_array(folder: Path, spec: dict, key: str) -> np.ndarray:

    fname = require(spec, key, str, where="likelihood spec")
    path = (folder / fname).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise DataError(f"likelihood spec key '{key}': file '{fname}' points outside the likelihood folder {folder}")
    if not path.is_file():
        raise DataError(f"likelihood spec key '{key}': file not found: {path}")
    try:
        return np.loadtxt(path, ndmin=1)
    except ValueError as exc:
        raise DataError(f"cannot read numbers from {path}: {exc}") from None


@register_likelihood_type("gaussian")
def _load_gaussian(folder: Path, spec: dict, name: str, **options) -> GaussianLikelihood:
    """``type: gaussian`` spec: ``data: FILE``, ``cov: FILE``, optional ``output: NAME``."""

    check_keys(spec, {"type", "description", "data", "cov", "output"}, where=f"likelihood spec of '{name}'")
    check_keys(options, set(), where=f"options of likelihood '{name}'")
    lik = GaussianLikelihood(
        _read_array(folder, spec, "data"),
        _read_array(folder, spec, "cov"),
        name=name,
        output=spec.get("output", "y"),
    )
    lik.description = spec.get("description", "")
    return lik
