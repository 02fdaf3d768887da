"""The program station: the Pyro program's densities in forms that samplers call directly.

:class:`LogDensity` is the log density of an :class:`~latentinfer.Analysis` in its unconstrained space as one batched,
pure-torch function (no Pyro trace per call): the potential of the batched samplers.
"""

from .density import LogDensity

__all__ = ["LogDensity"]
