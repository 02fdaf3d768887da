"""latentinfer: Bayesian inference with the decoders of interpretable variational encoders as forward models.

The pipeline, one station per package (arrows point one way; see the README's "Layout")::

    simulate (CAMB) -> ive (training, scans) -> bundle (runtime decoders, ForwardModel) -> likelihoods
    -> program (one Pyro program, its log density) -> methods (NUTS, ChEES, emcee, VI, NPE, NLE, NRE)
    -> posterior (arviz) -> diagnostics / evidence / coverage / tension -> report, cli

The public names below are imported on first use (a module ``__getattr__``, as scipy and sbi do), so that
``import latentinfer`` and the quick CLI commands (``--help``, ``models``, ``likelihoods``) do not pay for
torch, pyro and arviz. ``latentinfer.Analysis`` and ``from latentinfer import Analysis`` work as before; so
does ``latentinfer.<submodule>`` without importing the submodule first.
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

# public name -> submodule that defines it (imported on first access)
_LAZY = {
    "Analysis": "analysis",
    "ForwardModel": "bundle",
    "Program": "program",  # the program without the front door (not in __all__: the public front is Analysis)
    "GaussianLikelihood": "likelihoods",
    "LatentInferError": "errors",
    "Likelihood": "likelihoods",
    "Nuisance": "likelihoods",
    "Posterior": "posterior",
    "load_likelihood": "likelihoods",
    "load_model": "bundle",
    "save_bundle": "bundle",
}

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
    "tension",  # callable module: latentinfer.tension(post_a, post_b, joint=None)
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a submodule, e.g. latentinfer.tension
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
