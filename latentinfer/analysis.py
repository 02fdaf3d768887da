"""``latentinfer.Analysis``: the program (:class:`latentinfer.program.Program`) with a front door to the methods.

``Analysis(model, likelihoods, ...)`` is what users build in Python; ``sample``, ``fit_vi``, ``evidence`` and
``train_sbi`` look the method up in its registry (:mod:`latentinfer.methods`, :mod:`latentinfer.evidence`) or call
:mod:`latentinfer.amortized`. The stations below never need this class: they take a :class:`Program`.
"""

from __future__ import annotations

from .program.analysis import Program
from .methods import get_method
from .evidence import compute_evidence
from .amortized import train

__all__ = ["Analysis"]


class Analysis(Program):
    """A :class:`~latentinfer.program.Program` (see there for the parameters) with the methods at hand."""

    def sample(self, method: str = "nuts", **settings):
        """Posterior samples by ``method`` (any registered one: ``nuts``, ``chees``, ``emcee``, ...) with its
        settings (see the method's ``Settings``); returns a :class:`~latentinfer.Posterior`."""

        return get_method(method).run(self, **settings)

    def fit_vi(self, guide: str = "multivariate_normal", steps: int = 3000, seed: int = 0, **settings):
        """Stochastic variational inference with a ``normal`` (diagonal), ``multivariate_normal`` or ``flow`` guide."""

        return get_method("vi").run(self, guide=guide, steps=steps, seed=seed, **settings)

    def evidence(self, posterior, method: str = "harmonic", **settings):
        """ln Z of this program from ``posterior`` samples; see :func:`latentinfer.evidence.compute_evidence`."""

        return compute_evidence(self, posterior, method=method, **settings)

    def train_sbi(self, method: str = "npe", num_simulations: int = 10000, seed: int = 0, observed=None, **settings):
        """Train an amortized posterior on simulations of this program; see :func:`latentinfer.amortized.train`
        (``observed`` with ``rounds > 1``: truncated sequential NPE focused on those data)."""

        return train(self, method=method, num_simulations=num_simulations, seed=seed, observed=observed, **settings)
