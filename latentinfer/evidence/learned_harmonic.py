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
import math
import os

import numpy as np

from ..errors import ConfigError, LatentInferError
from .base import EvidenceResult, posterior_chains, register_evidence

__all__ = ["harmonic_evidence", "HARMONIC_DEFAULTS", "check_harmonic_settings", "auto_epochs", "auto_blocks",
           "kurtosis_limit"]

#: Settings of :func:`harmonic_evidence` and their defaults.
HARMONIC_DEFAULTS = {
    "flow": "rqspline",  # or "realnvp"
    "temperature": 0.8,  # harmonic's recommended concentration of the flow (0 < T < 1)
    "epochs": "auto",  # "auto": enough epochs for AUTO_STEPS optimiser steps (10 to 300), or an integer
    "batch_size": 128,
    "training_proportion": 0.5,
    "blocks": "auto",  # evaluation draws cut into blocks for the error; "auto": equal cuts of each chain, >= AUTO_BLOCK_SIZE
    "n_layers": 4,
    "hidden_size": (32, 32),
    "n_bins": 8,
    "learning_rate": 1e-3,
    "seed": 0,
    "min_chains": 2,
    "min_samples": 1000,
}


#: Optimiser steps the flow gets when ``epochs`` is "auto". Ten epochs of 2,000 training draws (160 steps) left the
#: flow of the EDE example underfit: ln Z moved by 1.2 across flow seeds and harmonic's kurtosis was 47; with about
#: 2,000 steps the seeds agree within the reported error and the kurtosis is that of Gaussian block means.
AUTO_STEPS = 2000
#: Evaluation samples per block when ``blocks`` is "auto". harmonic counts the samples of each block and calls the
#: evidence inaccurate at 30 or fewer; blocks of 80 keep that count well clear of 30 and the block means near Gaussian.
AUTO_BLOCK_SIZE = 80
#: Tail probability at which the kurtosis of the block means is flagged (against Gaussian block means).
KURTOSIS_TAIL = 0.001
#: Kish effective sample size of the terms flow / (L pi) below which the estimate is flagged: a few evaluation
#: draws carry the inverse evidence.
MIN_TERM_ESS_FRACTION = 0.05


def auto_epochs(n_train: int, batch_size: int, steps: int = AUTO_STEPS) -> int:
    """Epochs that give the flow about ``steps`` optimiser steps on ``n_train`` draws (between 10 and 300)."""
    per_epoch = max(1, math.ceil(n_train / batch_size))
    return int(min(300, max(10, math.ceil(steps / per_epoch))))


def auto_blocks(n_eval: int, n_chains: int) -> int:
    """Blocks for the error: each evaluation chain cut into the same number of blocks of at least
    :data:`AUTO_BLOCK_SIZE` draws (one block per chain where a chain is shorter), at most 100 blocks in all unless
    there are more chains. Equal cuts per chain matter: harmonic hands the rounding remainder of an uneven split to
    one chain, which then falls into many small blocks."""
    per_chain = max(1, min((n_eval // max(n_chains, 1)) // AUTO_BLOCK_SIZE, 100 // max(n_chains, 1)))
    return int(n_chains * per_chain)


def kurtosis_limit(blocks, tail: float = KURTOSIS_TAIL, reps: int = 20000) -> float:
    """The ``1 - tail`` quantile of harmonic's kurtosis statistic when the block means are Gaussian: ``blocks`` is
    the number of equal blocks or the list of block sizes (simulated with a fixed seed). harmonic weighs block ``i``
    of ``n_i`` samples by ``n_i``: kurtosis = sum n_i z_i^4 / N / (sum n_i z_i^2 / N)^2 with z_i the block mean's
    deviation from the overall mean. A larger kurtosis says a few blocks carry the inverse evidence."""
    n = np.full(int(blocks), 1.0) if np.ndim(blocks) == 0 else np.asarray(blocks, dtype=np.float64)
    rng = np.random.default_rng(12345)
    x = rng.standard_normal((reps, n.size)) / np.sqrt(n)
    w = n / n.sum()
    z = x - (x * w).sum(axis=1, keepdims=True)
    kur = (w * z**4).sum(axis=1) / ((w * z**2).sum(axis=1)) ** 2
    return float(np.quantile(kur, 1.0 - tail))


def check_harmonic_settings(settings, where: str = "evidence harmonic") -> dict:
    """``settings`` merged over :data:`HARMONIC_DEFAULTS`, checked; a bad key or value raises :class:`ConfigError`."""
    unknown = set(settings) - set(HARMONIC_DEFAULTS)
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)} (allowed: {', '.join(HARMONIC_DEFAULTS)})")
    s = {**HARMONIC_DEFAULTS, **settings}
    if isinstance(s["temperature"], bool) or not isinstance(s["temperature"], (int, float)) or not 0 < s["temperature"] < 1:
        raise ConfigError(f"{where}: temperature must be in (0, 1), got {s['temperature']!r}")
    if s["flow"] not in ("rqspline", "realnvp"):
        raise ConfigError(f"{where}: flow must be rqspline or realnvp, got {s['flow']!r}")
    for key, low in (("epochs", 1), ("blocks", 2)):
        v = s[key]
        if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ConfigError(f"{where}: {key} must be 'auto' or an integer >= {low}, got {v!r}")
    for key in ("batch_size", "min_chains", "min_samples", "n_layers", "n_bins", "seed"):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
            raise ConfigError(f"{where}: {key} must be a {'non-negative' if key == 'seed' else 'positive'} integer, got {v!r}")
    if not isinstance(s["training_proportion"], (int, float)) or not 0 < s["training_proportion"] < 1:
        raise ConfigError(f"{where}: training_proportion must be in (0, 1), got {s['training_proportion']!r}")
    if not isinstance(s["learning_rate"], (int, float)) or isinstance(s["learning_rate"], bool) or not s["learning_rate"] > 0:
        raise ConfigError(f"{where}: learning_rate must be a positive number, got {s['learning_rate']!r}")
    hs = s["hidden_size"]
    if not isinstance(hs, (list, tuple)) or not hs or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hs):
        raise ConfigError(f"{where}: hidden_size must be a list of positive integers, got {hs!r}")
    return s


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
    s = check_harmonic_settings(settings)
    u, logd = posterior_chains(analysis, posterior, min_chains=s["min_chains"], min_samples=s["min_samples"])
    nchains, ndraws, ndim = u.shape
    hm, jax = _import_harmonic()

    chains = hm.Chains(ndim)
    chains.add_chains_3d(u.astype(np.float64), logd.astype(np.float64))
    train, test = hm.utils.split_data(chains, training_proportion=s["training_proportion"])
    blocks = auto_blocks(test.nsamples, test.nchains) if s["blocks"] == "auto" else int(s["blocks"])
    epochs = auto_epochs(train.nsamples, s["batch_size"]) if s["epochs"] == "auto" else int(s["epochs"])
    if blocks > test.nchains and test.nsamples >= 2 * blocks:
        test.split_into_blocks(blocks)
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
    model.fit(jax.numpy.asarray(train.samples, dtype=jax.numpy.float32), batch_size=s["batch_size"], epochs=epochs, key=key)
    with _harmonic_messages() as messages:
        ev = hm.Evidence(test.nchains, model)
        ev.add_chains(test)
        ln_z, _ = ev.compute_ln_evidence()
        err_neg, err_pos = ev.compute_ln_inv_evidence_errors()
        diagnostics_pass = bool(ev.check_basic_diagnostic())
    ln_z, err_neg, err_pos = float(ln_z), float(err_neg), float(err_pos)
    # the terms flow / (L pi) of the estimator on the evaluation draws: how many of them carry it
    lnargs = np.asarray(model.predict(jax.numpy.asarray(test.samples, dtype=jax.numpy.float32)), dtype=np.float64)
    lnargs = lnargs - np.asarray(test.ln_posterior, dtype=np.float64)
    lnargs = lnargs[np.isfinite(lnargs)]
    w = np.exp(lnargs - lnargs.max()) if lnargs.size else np.zeros(0)
    term_ess = float(w.sum() ** 2 / (w**2).sum()) if w.size else 0.0
    kurt_limit = kurtosis_limit(np.diff(np.asarray(test.start_indices)))
    per_block = float(np.mean(ev.nsamples_eff_per_chain))
    flags = []
    if float(ev.kurtosis) > kurt_limit:
        flags.append(f"kurtosis {float(ev.kurtosis):.1f} of the block estimates > {kurt_limit:.1f} (Gaussian block means, "
                     f"p = {KURTOSIS_TAIL:g}): a few blocks carry the estimate")
    if term_ess < MIN_TERM_ESS_FRACTION * test.nsamples:
        flags.append(f"effective samples of the estimator's terms {term_ess:.0f} < {MIN_TERM_ESS_FRACTION:.0%} of "
                     f"{test.nsamples} evaluation draws: the flow reaches where the posterior draws are not")
    if per_block <= 30:
        flags.append(f"{per_block:.0f} evaluation samples per block (harmonic asks for more than 30): fewer blocks or more draws")
    if float(ev.lnargmax - ev.lnargmin) >= 1000:
        flags.append("dynamic range of ln(flow / (L pi)) >= 1000 (harmonic's limit)")
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
            "kurtosis_limit": kurt_limit,
            "term_ess": term_ess,
            "samples_per_block": per_block,
            "epochs": epochs,
            "flags": flags,
            "reliable": not flags,
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
