"""Inference methods, each a plug-in behind :class:`~latentinfer.inference.base.InferenceMethod`."""

from . import chees, ensemble, npe, nuts, vi  # noqa: F401  (register the built-in methods)
from .base import InferenceMethod, available_methods, build_posterior, get_method, register_method

__all__ = ["InferenceMethod", "available_methods", "build_posterior", "get_method", "register_method"]
