"""Moved to :mod:`latentinfer.bundle.forward`; this name keeps old imports working."""

from .bundle.forward import *  # noqa: F401,F403
from .bundle.forward import ForwardModel  # noqa: F401
