"""Moved to :mod:`latentinfer.methods`; this package keeps old imports working (``latentinfer.inference.nuts``
and the other submodules are the same module objects as ``latentinfer.methods.nuts`` ...)."""

import importlib as _importlib
import sys as _sys

from ..methods import *  # noqa: F401,F403
from ..methods import METHODS, InferenceMethod, available_methods, build_posterior, get_method, register_method  # noqa: F401

for _name in ("base", "chain_state", "chees", "ensemble", "nle", "npe", "nre", "nuts", "vi"):
    _sys.modules[f"{__name__}.{_name}"] = _module = _importlib.import_module(f"latentinfer.methods.{_name}")
    globals()[_name] = _module
