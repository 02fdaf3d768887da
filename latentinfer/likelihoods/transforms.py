"""Transformations of the ``bandpower`` likelihood: small plug-ins chosen by ``kind`` in the spec.

Two stages, applied in the order listed in a block's ``transforms`` (all ``ell``-stage ones first):

- ``ell`` stage: a fixed linear map ``A`` on the theory spectrum before binning. It overrides one hook,
  :meth:`Transform.fold`, which returns ``M @ A`` for the binning matrix ``M``; so the whole ell-stage chain is
  folded into one matrix at load time and costs nothing per evaluation.
- ``bins`` stage: acts on the binned model ``(..., n_bins)`` and may use nuisance parameters; it overrides
  :meth:`Transform.forward`.

Writing one (a constant factor, as ``scale`` below)::

    @register_transform("scale")
    class Scale(Transform):
        stage = "ell"
        def fold(self, M, ell):
            return M * self.factor
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from ..checks import check_keys, require
from ..registry import Registry
from ..errors import ConfigError, LatentInferError
from .specfiles import load_vector

__all__ = ["Transform", "register_transform", "make_transform", "gradient_matrix"]

#: ``kind -> Transform subclass`` (plug-ins: modules of :mod:`latentinfer.likelihoods`).
TRANSFORMS: Registry = Registry("transform kind", "latentinfer.likelihoods", error=ConfigError, skip=("base", "registry"))


def register_transform(kind: str):
    """Class decorator registering a :class:`Transform` for ``kind: NAME`` in a spec."""

    def deco(cls):
        cls.kind = kind
        return TRANSFORMS.register(kind)(cls)

    return deco


def make_transform(folder: Path, spec, n_bins: int, where: str) -> "Transform":
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a transform must be a mapping with key 'kind', got {spec!r}")
    kind = require(spec, "kind", str, where)
    cls = TRANSFORMS.get(kind, where=where)
    check_keys(spec, {"kind"} | set(cls.keys), where)
    return cls(folder, spec, n_bins, where)


class Transform(torch.nn.Module):
    """Base class. ``stage`` is ``"ell"`` (override :meth:`fold`) or ``"bins"`` (override :meth:`forward`)."""

    kind: ClassVar[str] = ""
    stage: ClassVar[str] = "bins"
    keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, folder: Path, spec: Mapping, n_bins: int, where: str):
        super().__init__()

    @property
    def nuisance_names(self) -> tuple[str, ...]:
        return ()

    def fold(self, M: np.ndarray, ell: np.ndarray) -> np.ndarray:
        """``M @ A`` for binning matrix ``M (n_bins, n_ell)`` on multipoles ``ell (n_ell,)``."""
        raise NotImplementedError

    def forward(self, model: torch.Tensor, nuisance: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The transformed binned model ``(..., n_bins)``."""
        raise NotImplementedError


@register_transform("dl_to_cl")
class DlToCl(Transform):
    """``C_ell = 2 pi D_ell / (ell (ell + 1))``: bin C_ell (plik_lite, low-ell bins)."""

    stage = "ell"

    def fold(self, M, ell):
        return M * (2 * math.pi / (ell * (ell + 1.0)))


@register_transform("scale")
class Scale(Transform):
    """Multiply by a constant ``factor`` (e.g. ``pi/2`` to turn PP into C^kappakappa = [L(L+1)]^2 C^phiphi / 4)."""

    stage = "ell"
    keys = ("factor",)

    def __init__(self, folder, spec, n_bins, where):
        super().__init__(folder, spec, n_bins, where)
        self.factor = require(spec, "factor", float, where)

    def fold(self, M, ell):
        return M * self.factor


def gradient_matrix(n: int) -> sp.csr_matrix:
    """The ``(n, n)`` matrix of ``np.gradient`` with unit spacing (central inside, one-sided at the ends)."""
    G = sp.diags([-0.5 * np.ones(n - 1), 0.5 * np.ones(n - 1)], [-1, 1], shape=(n, n), format="lil")
    G[0, 0], G[0, 1] = -1.0, 1.0
    G[n - 1, n - 2], G[n - 1, n - 1] = -1.0, 1.0
    return G.tocsr()


@register_transform("aberration")
class Aberration(Transform):
    """Aberration correction on D_ell (candl ``common.AberrationCorrection``), no free parameter:

    ``D <- D - a * ell * dC/dell * ell(ell+1)/2pi`` with ``C = 2pi D/(ell(ell+1))`` and ``dC/dell`` from
    ``np.gradient`` over the theory's multipoles ``ell = 2..lmax``; ``a = coefficient`` (SPT-3G: -0.0004826).
    """

    stage = "ell"
    keys = ("coefficient",)

    def __init__(self, folder, spec, n_bins, where):
        super().__init__(folder, spec, n_bins, where)
        self.coefficient = require(spec, "coefficient", float, where)

    def fold(self, M, ell):
        c = 2 * math.pi / (ell * (ell + 1.0))  # D -> C
        G = gradient_matrix(len(ell))
        # A = I - a diag(ell / c) G diag(c);  M A = M - a ((M * ell / c) G) * c
        MG = (G.T @ (M * (ell / c)).T).T
        return M - self.coefficient * np.asarray(MG) * c


@register_transform("calibration")
class Calibration(Transform):
    """Divide the binned model by the product of nuisance parameters ``divide_by`` (e.g. ``[Tcal, Ecal]``)."""

    keys = ("divide_by",)

    def __init__(self, folder, spec, n_bins, where):
        super().__init__(folder, spec, n_bins, where)
        names = require(spec, "divide_by", list, where)
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}: key 'divide_by' must be a list of nuisance names, got {names!r}")
        self.names = tuple(names)

    @property
    def nuisance_names(self):
        return tuple(dict.fromkeys(self.names))

    def forward(self, model, nuisance):
        cal = 1.0
        for n in self.names:
            if n not in nuisance:
                raise LatentInferError(f"calibration needs nuisance parameter '{n}' (given: {sorted(nuisance)})")
            cal = cal * torch.as_tensor(nuisance[n], dtype=model.dtype)
        return model / torch.as_tensor(cal).unsqueeze(-1)


@register_transform("subtract")
class Subtract(Transform):
    """Subtract a fixed vector read from ``{file, column}`` (e.g. Planck lensing's fiducial correction)."""

    keys = ("file", "column")

    def __init__(self, folder, spec, n_bins, where):
        super().__init__(folder, spec, n_bins, where)
        vec = load_vector(folder, {k: spec[k] for k in self.keys if k in spec}, where)
        if vec.shape != (n_bins,):
            raise ConfigError(f"{where}: file '{spec['file']}' has {vec.shape[0]} rows, the block has {n_bins} bins")
        self.register_buffer("vector", torch.as_tensor(vec, dtype=torch.float64))

    def forward(self, model, nuisance):
        return model - self.vector.to(model.dtype)
