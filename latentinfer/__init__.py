"""latentinfer: Bayesian inference with the decoders of interpretable variational encoders as forward models.

The pipeline, one station per module::

    simulate (CAMB) -> ive (train, interpret, bundle) -> forward (ForwardModel) -> likelihoods
    -> analysis (one Pyro program) -> inference (NUTS, emcee, VI, SBI) -> posterior (arviz)
    -> evidence / coverage / tension -> report
"""

from .analysis import Analysis
from .bundle import load_model, save_bundle
from .errors import LatentInferError
from .forward import ForwardModel
from .likelihoods import GaussianLikelihood, Likelihood, Nuisance, load_likelihood
from .posterior import Posterior
from . import tension  # callable module: latentinfer.tension(post_a, post_b, joint=None)

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "ForwardModel",
    "GaussianLikelihood",
    "LatentInferError",
    "Likelihood",
    "Nuisance",
    "Posterior",
    "load_likelihood",
    "load_model",
    "save_bundle",
    "tension",
    "__version__",
]
