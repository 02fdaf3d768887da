"""Likelihoods: the generic interface, the Gaussian likelihood, and the loader of experiment folders."""

from .base import Likelihood, Nuisance, check_covariance, check_data
from .gaussian import GaussianLikelihood
from .registry import list_likelihoods, load_likelihood, register_likelihood_type

__all__ = [
    "Likelihood",
    "Nuisance",
    "GaussianLikelihood",
    "load_likelihood",
    "list_likelihoods",
    "register_likelihood_type",
    "check_covariance",
    "check_data",
]
