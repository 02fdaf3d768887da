"""Jacobians of the program's maps (forward model, likelihood predictions) at a point, robust to custom autograd
functions; used by the Fisher compression of NPE and the data-space attribution of tensions."""

from __future__ import annotations

import torch

__all__ = ["jacobian"]


def jacobian(fn, z0: torch.Tensor) -> torch.Tensor:
    """d fn / d z at z0: vectorised forward mode, else vectorised reverse mode, else one backward pass per output
    (custom autograd functions, such as the binning of a bandpower likelihood, support neither vmap nor jvp)."""
    for kwargs in ({"vectorize": True, "strategy": "forward-mode"}, {"vectorize": True}):
        try:
            return torch.autograd.functional.jacobian(fn, z0, **kwargs)
        except (RuntimeError, NotImplementedError):
            pass
    return torch.autograd.functional.jacobian(fn, z0)
