"""Likelihoods: the generic interface, the Gaussian likelihood, and the loader of experiment folders."""

from .bandpower import BandpowerLikelihood
from .base import Likelihood, Nuisance, check_covariance, check_data
from .gaussian import GaussianLikelihood
from .registry import list_likelihoods, load_likelihood, register_likelihood_type
from .theory import read_theory_file

__all__ = [
    "Likelihood",
    "Nuisance",
    "GaussianLikelihood",
    "BandpowerLikelihood",
    "read_theory_file",
    "load_likelihood",
    "list_likelihoods",
    "register_likelihood_type",
    "check_covariance",
    "check_data",
]
