"""Moved to :mod:`latentinfer.bundle.ive` (runtime, no training code); this name keeps old imports working."""

from ..bundle.ive import *  # noqa: F401,F403
from ..bundle.ive import IVEForwardModel, PhysicalForwardModel, write_ive_bundle  # noqa: F401
from ..grid import UNITS  # noqa: F401
