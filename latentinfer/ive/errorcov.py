"""Moved to :mod:`latentinfer.bundle.errorcov`; this name keeps old imports working."""

from ..bundle.errorcov import *  # noqa: F401,F403
from ..bundle.errorcov import LowRankErrorCov, fit_error_cov  # noqa: F401
