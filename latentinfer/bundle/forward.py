"""Forward models: differentiable maps from a parameter vector to named output vectors.

A :class:`ForwardModel` wraps a torch module ``z -> y``. The input is a tensor of shape ``(..., d)`` whose last
axis follows :attr:`ForwardModel.input_names`; the output is always a dict of tensors ``{name: (..., n_name)}``
(a module returning a single tensor gets the output name ``"y"``). Leading batch dimensions pass through.

Example
-------
>>> import torch
>>> lin = torch.nn.Linear(2, 3)
>>> fm = ForwardModel.from_module(lin, latent_names=["z0", "z1"])
>>> sorted(fm(torch.zeros(5, 2)))
['y']
>>> fm(torch.zeros(5, 2))["y"].shape
torch.Size([5, 3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import LatentInferError

__all__ = ["ForwardModel"]


class ForwardModel(torch.nn.Module):
    """A differentiable map from named inputs (latents or physical parameters) to named outputs.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a tensor ``(..., d)`` to a tensor or a dict of tensors.
    latent_names : sequence of str
        Names of the ``d`` inputs, in order. Each becomes one sample site of the Pyro program.
    output_name : str
        Name given to the output when the module returns a single tensor.
    default_priors : mapping, optional
        Prior specs (see :mod:`latentinfer.priors`) used when the analysis does not override them,
        e.g. the uniform box of a training corpus for physical parameters.
    error_cov : mapping of str to tensor, optional
        The model's own error as a covariance per output, ``{name: (n_name, n_name)}`` in output units.
    bounds : mapping of str to (low, high), optional
        Where the model is valid (an emulator's training box). :class:`~latentinfer.Analysis` restricts every prior
        on these inputs to the box, so that no prior mass lies where the model extrapolates.
    meta : mapping, optional
        Free-form description (bundle card, units) carried into run outputs.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        latent_names: Sequence[str],
        *,
        output_name: str = "y",
        default_priors: Mapping[str, Any] | None = None,
        error_cov: Mapping[str, torch.Tensor] | None = None,
        bounds: Mapping[str, Sequence[float]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        names = [str(n) for n in latent_names]
        if not names:
            raise LatentInferError("a forward model needs at least one input name (latent_names)")
        if len(set(names)) != len(names):
            raise LatentInferError(f"duplicate input names in latent_names: {names}")
        self.module = module
        self.latent_names = names
        self.output_name = output_name
        self.default_priors = dict(default_priors or {})
        self.error_cov = dict(error_cov) if error_cov is not None else None
        self.bounds = {}
        for key, pair in (bounds or {}).items():
            if key not in names:
                raise LatentInferError(f"bounds: unknown input '{key}' (inputs: {', '.join(names)})")
            lo, hi = (float(x) for x in pair)
            if not lo < hi:
                raise LatentInferError(f"bounds of '{key}' need low < high, got [{lo}, {hi}]")
            self.bounds[key] = (lo, hi)
        self.meta = dict(meta or {})

    @classmethod
    def from_module(cls, module: torch.nn.Module, latent_names: Sequence[str], **kwargs) -> "ForwardModel":
        """Wrap any torch module mapping ``(..., d)`` to a tensor or a dict of tensors."""
        return cls(module, latent_names, **kwargs)

    @property
    def input_names(self) -> list[str]:
        """Alias of :attr:`latent_names` (inputs may be physical parameters)."""
        return self.latent_names

    @property
    def dim(self) -> int:
        return len(self.latent_names)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Evaluate at ``z`` of shape ``(..., d)``; returns ``{name: (..., n_name)}``."""
        if z.shape[-1] != self.dim:
            raise LatentInferError(
                f"forward model expects {self.dim} inputs {self.latent_names}, got a tensor of shape {tuple(z.shape)}"
            )
        out = self.module(z)
        if isinstance(out, Mapping):
            return dict(out)
        return {self.output_name: out}

    def truncated(self, lengths: Mapping[str, int] | None) -> torch.nn.Module:
        """A module ``z (..., d) -> {name: (..., n)}`` computing only the outputs in ``lengths`` and only their first
        ``n`` values (the same numbers as slicing :meth:`forward`, up to float rounding); ``None``: everything.

        Where the wrapped module offers ``truncated(lengths)`` (the IVE decoder does), or is a ``Sequential`` whose
        last stage does (a physical map followed by the decoder), that is used; otherwise the full model runs.
        """
        if lengths is None:
            return _Outputs(self)
        mod = self.module
        if hasattr(mod, "truncated"):
            return mod.truncated(lengths)
        if isinstance(mod, torch.nn.Sequential) and len(mod) and hasattr(mod[-1], "truncated"):
            return torch.nn.Sequential(*list(mod)[:-1], mod[-1].truncated(lengths))
        return _Outputs(self)

    def output_sizes(self, dtype: torch.dtype = torch.float64) -> dict[str, int]:
        """Length of each output vector, found by one evaluation at zero."""
        param = next(iter(self.parameters()), None)
        if param is not None:
            dtype = param.dtype
        with torch.no_grad():
            out = self(torch.zeros(self.dim, dtype=dtype))
        return {k: int(v.shape[-1]) for k, v in out.items()}


class _Outputs(torch.nn.Module):
    """A forward model's full outputs as a module (the fallback of :meth:`ForwardModel.truncated`)."""

    def __init__(self, fm: ForwardModel):
        super().__init__()
        self.fm = fm

    def forward(self, z):
        return self.fm(z)
