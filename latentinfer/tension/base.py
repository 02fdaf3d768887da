"""The interface of a tension metric, its registry, and the inputs every metric reads.

A metric is a class with a ``name``, the optional pieces it ``needs`` (``"joint"``, ``"evidence"``) and one hook,
:meth:`TensionMetric.compute`, returning a :class:`MetricResult` whose ``n_sigma`` is the equivalent number of
Gaussian standard deviations (two-sided): ``n_sigma = Phi^-1((1 + P) / 2)`` for a probability ``P`` that the
runs disagree, or ``Phi^-1(1 - PTE / 2)`` for a probability ``PTE`` to exceed the statistic if they agree.

Writing one
-----------
>>> import numpy as np
>>> class MeanShift(TensionMetric):
...     name = "mean_shift_example"
...     def compute(self, inp):
...         d = inp.a.mean(0) - inp.b.mean(0)
...         s = np.sqrt(inp.a.var(0) + inp.b.var(0))
...         q = float(np.max(np.abs(d / s)))
...         return MetricResult(self.name, value=q, n_sigma=q, description="largest 1-d shift")
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from ..errors import LatentInferError
from ..registry import Registry

__all__ = [
    "MetricResult",
    "TensionInputs",
    "TensionMetric",
    "register_metric",
    "get_metric",
    "available_metrics",
    "sigma_from_probability",
    "sigma_from_pte",
]

#: ``name -> TensionMetric subclass`` (plug-ins: modules of :mod:`latentinfer.tension`).
METRICS: Registry = Registry("tension metric", "latentinfer.tension", error=LatentInferError,
                             skip=("api", "attribution", "base", "inputs", "plots"))


def sigma_from_probability(p: float) -> float:
    """Number of sigma of a two-sided Gaussian interval holding probability ``p`` (``p = 0.6827 -> 1``)."""
    p = min(max(float(p), 0.0), 1.0)
    return float(stats.norm.isf((1.0 - p) / 2.0))


def sigma_from_pte(pte: float) -> float:
    """Number of sigma of a probability to exceed ``pte`` (two-sided Gaussian; ``pte = 0.0455 -> 2``)."""
    pte = min(max(float(pte), 0.0), 1.0)
    return float(stats.norm.isf(pte / 2.0))


@dataclass
class MetricResult:
    """One tension statistic with its Gaussian-equivalent significance.

    ``value`` is the statistic itself (e.g. the shift probability, Q_DM, log S); ``n_sigma`` its equivalent
    number of sigma and ``n_sigma_err`` the Monte-Carlo error of that number (None when not estimated);
    ``pte`` the probability to exceed under agreement; ``dof`` the degrees of freedom where a chi^2 is used.
    """

    name: str
    value: float
    n_sigma: float | None
    n_sigma_err: float | None = None
    value_err: float | None = None
    pte: float | None = None
    dof: float | None = None
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TensionInputs:
    """What metrics read: flattened samples of the shared parameters and the optional pieces.

    Attributes
    ----------
    names : list of str
        The ``d`` parameters compared (the model's inputs shared by both runs, unless chosen otherwise).
    a, b : arrays (n_a, d), (n_b, d)
        Posterior samples of run A and run B (chains flattened, equal weights).
    prior_cov : array (d, d) or None
        Prior covariance of those parameters (from the runs' recorded prior specs), None if unknown.
    post_a, post_b, joint : Posterior
        The full posteriors (``joint`` may be None); log-likelihoods are in their ``log_likelihood`` group.
    evidence : dict
        ``{"a"|"b"|"joint": {"ln_z": float, "ln_z_err": float} or None}``.
    seed : int
        Seed of every random choice a metric makes (same seed, same numbers).
    """

    names: list[str]
    a: np.ndarray
    b: np.ndarray
    prior_cov: np.ndarray | None
    post_a: Any
    post_b: Any
    joint: Any = None
    evidence: dict[str, dict | None] = field(default_factory=dict)
    seed: int = 0
    ess_a: float = math.inf
    ess_b: float = math.inf

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def shift(self) -> np.ndarray:
        """Difference of posterior means ``mean_A - mean_B``, shape ``(d,)``."""
        return self.a.mean(0) - self.b.mean(0)

    @property
    def cov_a(self) -> np.ndarray:
        return np.atleast_2d(np.cov(self.a, rowvar=False))

    @property
    def cov_b(self) -> np.ndarray:
        return np.atleast_2d(np.cov(self.b, rowvar=False))


class TensionMetric:
    """Base class: set :attr:`name`, optionally :attr:`needs`, and write :meth:`compute`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: pieces the metric cannot do without: "joint" (a joint run), "evidence" (ln Z of A, B and the joint run)
    needs: ClassVar[tuple[str, ...]] = ()
    #: computed when no metric list is given (expensive metrics set False and are asked for by name)
    default: ClassVar[bool] = True

    def missing(self, inp: TensionInputs) -> str | None:
        """Why the metric cannot be computed on ``inp`` (None if it can)."""
        if "joint" in self.needs and inp.joint is None:
            return "needs a joint run (--joint RUN_AB)"
        if "evidence" in self.needs:
            lacking = [k for k in ("a", "b", "joint") if not inp.evidence.get(k)]
            if lacking:
                return f"needs the evidence of runs {', '.join(lacking)} (config key evidence: harmonic)"
        return None

    def compute(self, inp: TensionInputs) -> MetricResult:  # pragma: no cover - interface
        raise NotImplementedError


def register_metric(cls: type[TensionMetric]) -> type[TensionMetric]:
    """Class decorator: make a metric available by its name."""
    return METRICS.register(attr="name")(cls)


def available_metrics(default_only: bool = False) -> list[str]:
    """Names of the registered metrics (only those computed by default when ``default_only``)."""
    return [n for n, cls in METRICS.items() if cls.default or not default_only]


def get_metric(name: str) -> TensionMetric:
    return METRICS.get(name)()
