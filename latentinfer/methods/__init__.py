"""Inference methods: each a registered plug-in (one file here) with a ``Settings`` dataclass it owns.

Built in: ``nuts`` (Pyro NUTS, the reference), ``chees`` (ChEES-HMC, chains as a batch dimension), ``emcee``,
``vi``, and the simulation-based ``npe``, ``nle``, ``nre``. A new method is one file with a class decorated
``@METHODS.register("name")`` (see :mod:`.base`); nothing else needs to know about it.
"""

from ..posterior import build_posterior
from .base import METHODS, InferenceMethod, Method, Settings, available_methods, chain_seeds, get_method, register_method, setting

__all__ = ["METHODS", "Method", "InferenceMethod", "Settings", "setting", "available_methods", "build_posterior",
           "get_method", "register_method", "chain_seeds"]
