"""The learned harmonic mean estimator of the evidence (harmonic 1.3; McEwen et al. 2021, Polanska et al. 2023).

Recipe, as harmonic recommends: split the chains, fit a normalizing flow (rational-quadratic spline by default)
to the first part, concentrate it with a temperature T < 1 so that it lives inside the posterior, and
average ``flow(u) / (L(u) pi(u))`` over the other part, whose chains are cut into blocks for the error.
Everything runs in the program's unconstrained space (``log_density`` includes the Jacobian), so bounded priors
do not leak flow mass outside the support.
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from ..errors import ConfigError, LatentInferError
from .base import EvidenceResult, posterior_chains, register_evidence

__all__ = ["harmonic_evidence", "HARMONIC_DEFAULTS"]

#: Settings of :func:`harmonic_evidence` and their defaults.
HARMONIC_DEFAULTS = {
    "flow": "rqspline",  # or "realnvp"
    "temperature": 0.8,  # harmonic's recommended concentration of the flow (0 < T < 1)
    "epochs": 10,
    "batch_size": 128,
    "training_proportion": 0.5,
    "blocks": 100,  # the evaluation chains are cut into this many blocks for the error estimate
    "n_layers": 4,
    "hidden_size": (32, 32),
    "n_bins": 8,
    "learning_rate": 1e-3,
    "seed": 0,
    "min_chains": 2,
    "min_samples": 1000,
}


def _import_harmonic():
    """Import jax quietly on the CPU (single-threaded unless the user set XLA_FLAGS) and harmonic."""
    import sys

    if "jax" not in sys.modules:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import harmonic as hm
        import jax
    return hm, jax


@register_evidence("harmonic")
def harmonic_evidence(analysis, posterior, **settings) -> EvidenceResult:
    """ln Z by the learned harmonic mean estimator; ``settings`` override :data:`HARMONIC_DEFAULTS`.

    Needs at least ``min_chains`` chains (the flow is trained on some chains and evaluated on the others) and
    ``min_samples`` samples in all. The error is harmonic's: the spread of the inverse-evidence estimate over
    blocks of the evaluation chains, propagated to ln Z (symmetrised log-space error).
    """
    unknown = set(settings) - set(HARMONIC_DEFAULTS)
    if unknown:
        raise ConfigError(f"evidence harmonic: unknown settings {sorted(unknown)} (allowed: {', '.join(HARMONIC_DEFAULTS)})")
    s = {**HARMONIC_DEFAULTS, **settings}
    if not 0 < s["temperature"] < 1:
        raise ConfigError(f"evidence harmonic: temperature must be in (0, 1), got {s['temperature']}")
    if s["flow"] not in ("rqspline", "realnvp"):
        raise ConfigError(f"evidence harmonic: flow must be rqspline or realnvp, got {s['flow']!r}")
    u, logd = posterior_chains(analysis, posterior, min_chains=s["min_chains"], min_samples=s["min_samples"])
    nchains, ndraws, ndim = u.shape
    hm, jax = _import_harmonic()

    chains = hm.Chains(ndim)
    chains.add_chains_3d(u.astype(np.float64), logd.astype(np.float64))
    train, test = hm.utils.split_data(chains, training_proportion=s["training_proportion"])
    if s["blocks"] > test.nchains and test.nsamples >= 2 * s["blocks"]:
        test.split_into_blocks(s["blocks"])
    if s["flow"] == "rqspline":
        model = hm.model.RQSplineModel(
            ndim,
            n_layers=s["n_layers"],
            n_bins=s["n_bins"],
            hidden_size=list(s["hidden_size"]),
            standardize=True,
            learning_rate=s["learning_rate"],
            temperature=s["temperature"],
        )
    else:
        model = hm.model.RealNVPModel(ndim, standardize=True, learning_rate=s["learning_rate"], temperature=s["temperature"])
    key = jax.random.PRNGKey(int(s["seed"]))
    model.fit(jax.numpy.asarray(train.samples, dtype=jax.numpy.float32), batch_size=s["batch_size"], epochs=s["epochs"], key=key)
    with _harmonic_messages() as messages:
        ev = hm.Evidence(test.nchains, model)
        ev.add_chains(test)
        ln_z, _ = ev.compute_ln_evidence()
        err_neg, err_pos = ev.compute_ln_inv_evidence_errors()
        diagnostics_pass = bool(ev.check_basic_diagnostic())
    ln_z, err_neg, err_pos = float(ln_z), float(err_neg), float(err_pos)
    if not np.isfinite(ln_z) or not np.isfinite(err_neg):
        raise LatentInferError(
            "evidence harmonic: the estimate is not finite (the flow does not fit the posterior); "
            "use more samples, more epochs or a lower temperature"
        )
    return EvidenceResult(
        ln_z=ln_z,
        ln_z_err=0.5 * (err_pos - err_neg),
        method="harmonic",
        n_samples=int(nchains * ndraws),
        details={
            "ln_inv_z_err_neg": err_neg,
            "ln_inv_z_err_pos": err_pos,
            "chains_train": int(train.nchains),
            "blocks_eval": int(test.nchains),
            "samples_train": int(train.nsamples),
            "samples_eval": int(test.nsamples),
            "kurtosis": float(ev.kurtosis),
            "diagnostics_pass": diagnostics_pass,
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
            "space": "unconstrained",
            # harmonic's own log lines, kept rather than printed: its "low number of effective samples" warning
            # counts the samples of each of our error-estimation blocks, not of the chains
            "harmonic_messages": sorted(set(messages)),
        },
    )


@contextlib.contextmanager
def _harmonic_messages():
    """Collect what harmonic logs (logger ``Harmonic``) instead of letting it print; yields the list of messages."""
    logger = logging.getLogger("Harmonic")
    messages: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    saved = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [_Keep()], False
    try:
        yield messages
    finally:
        logger.handlers, logger.propagate = saved
