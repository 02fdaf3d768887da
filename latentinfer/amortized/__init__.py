"""Amortized simulation-based inference (sbi) on the analysis' own Pyro program.

Named ``amortized`` (not ``sbi``) so that it never shadows the sbi package.

>>> # post = Analysis(...).train_sbi("npe", num_simulations=10000).posterior(data_vector)
>>> # post = Analysis(...).train_sbi("npe").importance_sample(data_vector)  # NPE proposals weighted by the likelihood (PSIS)
"""

from .importance import check_tractable, importance_weights
from .posterior import SBI_DEFAULTS, SBI_METHODS, AmortizedPosterior, train
from .simulate import ProgramPrior, check_can_simulate, join_data, simulate, split_data

__all__ = [
    "AmortizedPosterior",
    "ProgramPrior",
    "SBI_DEFAULTS",
    "SBI_METHODS",
    "check_can_simulate",
    "check_tractable",
    "importance_weights",
    "join_data",
    "simulate",
    "split_data",
    "train",
]
