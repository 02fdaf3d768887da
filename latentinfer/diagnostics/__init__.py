"""Diagnostics of one posterior: the convergence verdict (:mod:`.convergence`) and posterior predictive checks
(:mod:`.ppc`). Calibration over many data sets is the coverage station's (:mod:`latentinfer.coverage`)."""

from .convergence import ESS_MIN, RHAT_MAX, check_convergence

__all__ = ["check_convergence", "RHAT_MAX", "ESS_MIN", "run_ppc", "check_ppc", "plot_ppc"]


def __getattr__(name: str):
    if name in ("run_ppc", "check_ppc", "plot_ppc"):  # torch and pyro: loaded on use
        from . import ppc

        return getattr(ppc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
