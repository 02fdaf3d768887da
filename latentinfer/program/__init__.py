"""The program station: one Pyro program (sites and priors, log densities and transforms, MAP and Laplace) built
from a config, and its densities in forms that samplers call directly. Imports no method, no report, no CLI.

* :class:`Program` -- the Pyro program; :meth:`Program.from_config` builds it from a resolved run config;
* :class:`LogDensity` -- its log density in the unconstrained space as one batched, pure-torch function (no Pyro
  trace per call): the potential of the batched samplers;
* :func:`batched_laplace` -- MAP and Laplace covariance of many targets at once.
"""

from .analysis import Program
from .density import LogDensity
from .laplace import batched_laplace


def from_config(cfg):
    """The :class:`Program` a resolved run config describes (see :meth:`Program.from_config`)."""
    return Program.from_config(cfg)


__all__ = ["Program", "LogDensity", "batched_laplace", "from_config"]
