"""Moved to :mod:`latentinfer.diagnostics.ppc`; this name keeps old imports working."""

from ..diagnostics.ppc import *  # noqa: F401,F403
from ..diagnostics.ppc import check_ppc, plot_ppc, run_ppc  # noqa: F401
