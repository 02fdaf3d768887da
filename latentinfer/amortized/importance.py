"""NPE as an importance-sampling proposal where the likelihood is known (issue 22).

A trained NPE posterior ``q(u | x)`` (a normalised flow on the unconstrained space) is a cheap proposal: draw ``M``
points ``u_i ~ q(. | x)`` and weight them by ``w_i = p(u_i, x) / q(u_i | x)``, with ``p`` the program's own
unnormalised log density in the same space (:class:`~latentinfer.program.LogDensity`: prior, likelihoods and the
log-Jacobian of the constraining transforms). The weights correct whatever the network got wrong, as long as ``q``
covers the posterior; Pareto-smoothed importance sampling (PSIS; Vehtari et al. 2024) says whether it does:

- ``k-hat``, the shape of a generalised Pareto fit to the largest weights: below 0.7 the weighted estimates
  converge at a practical rate; above it the proposal misses mass the posterior has (too narrow or offset), and no
  number of proposals fixes that in practice.
- ``ESS = 1 / sum(w_norm^2)`` of the smoothed, normalised weights: how many independent posterior draws the
  weighted set is worth.
- ``log Z = log mean(w)`` (raw weights: ``mean(w)`` is unbiased for the evidence), with the delta-method error
  ``sd(w) / (sqrt(M) mean(w))``.

>>> # post = amortized.importance_sample(data_vector, num_proposals=10000, num_samples=4000, seed=0)
>>> # post.attrs["importance_khat"], post.attrs["importance_ess"], post.attrs["importance_verdict"]
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import LatentInferError
from ..program import LogDensity
from ..posterior import build_posterior

__all__ = ["KHAT_MAX", "MIN_ESS", "check_tractable", "psis", "importance_weights", "verdict", "systematic_resample", "importance_sample"]

#: Above this Pareto k-hat the importance weights are not trusted (Vehtari et al. 2024).
KHAT_MAX = 0.7
#: Default effective sample size a proposal must reach to be "good enough" (issue 22's goal).
MIN_ESS = 1000

_CHUNK = 1024  # proposals per LogDensity call (batched decoder; larger chunks are no faster on CPU)


def check_tractable(analysis, log_density=None) -> None:
    """Raise a one-line :class:`LatentInferError` unless every likelihood of ``analysis`` has a log-density.

    Importance weights need ``log p(x | theta)``; a likelihood that can only simulate (``tractable = False``, or
    whose ``distribution``/``log_prob`` raises ``NotImplementedError``) cannot weight. Probed once at ``u = 0``.
    """
    for lik in analysis.likelihoods:
        if getattr(lik, "tractable", True) is False:
            raise LatentInferError(
                f"importance sampling needs each likelihood's log-density; likelihood '{lik.name}' has none (tractable=False): use npe without importance"
            )

    ld = log_density if log_density is not None else LogDensity(analysis)
    u0 = torch.zeros(1, len(analysis.parameter_names), dtype=analysis.dtype)
    try:
        with torch.no_grad():
            ld(u0)
    except NotImplementedError as exc:
        # name the culprit: the likelihoods evaluated through their own distribution (not the fixed Gaussian)
        suspects = [lik for lik in analysis.likelihoods if not lik.fixed_gaussian]
        who = ", ".join(f"'{lik.name}' ({type(lik).__name__})" for lik in suspects) or "of the program"
        why = f": {exc}" if str(exc) else ""
        raise LatentInferError(
            f"importance sampling needs each likelihood's log-density; likelihood {who} has none (NotImplementedError{why}): use npe without importance"
        ) from None


def psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, normalised log weights and k-hat (arviz's PSIS, ``reff = 1`` for independent draws).

    NaN log weights count as zero weight (``-inf``)."""
    import arviz as az

    lw = np.where(np.isnan(log_w), -np.inf, np.asarray(log_w, dtype=np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns on k-hat > 0.7 itself; the verdict says it in words
        smoothed, khat = az.psislw(lw.copy(), reff=1.0)
    return np.asarray(smoothed, dtype=np.float64), float(khat)


def verdict(khat: float, ess: float, min_ess: float, num_proposals: int) -> tuple[bool, str]:
    """``(good, line)``: "proposal good enough" when ``khat < 0.7`` and ``ess >= min_ess``, else the reason and
    what to do about it."""
    if not khat < KHAT_MAX:  # also inf/nan: too few tail draws to fit, or all weight on a handful of draws
        k = "inf" if not math.isfinite(khat) else f"{khat:.2f}"
        return False, (
            f"k-hat {k} > {KHAT_MAX}: the NPE posterior misses mass the likelihood puts there; "
            "use more simulations or a gradient sampler"
        )
    if ess < min_ess:
        return False, (
            f"ESS {ess:.0f} < {min_ess:.0f} ({100 * ess / num_proposals:.1f}% of {num_proposals} proposals): "
            f"raise num_proposals to about {math.ceil(min_ess * num_proposals / max(ess, 1.0))} or train the NPE on more simulations"
        )
    return True, "proposal good enough"


def importance_weights(log_p: np.ndarray, log_q: np.ndarray, min_ess: float = MIN_ESS) -> dict[str, Any]:
    """PSIS diagnostics of the log weights ``log_p - log_q`` of ``M`` proposals.

    Returns ``log_weights`` (smoothed, normalised: ``logsumexp = 0``), ``khat``, ``ess`` (smoothed weights),
    ``ess_raw``, ``log_evidence`` and ``log_evidence_err`` (raw weights), ``good`` and ``verdict``.
    """
    from scipy.special import logsumexp

    log_w = np.asarray(log_p, dtype=np.float64) - np.asarray(log_q, dtype=np.float64)
    log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    M = int(log_w.shape[0])
    if not np.isfinite(log_w).any():
        raise LatentInferError(f"importance sampling: the log density is -inf or NaN at all {M} proposals (the NPE proposes where the program has no mass)")
    smoothed, khat = psis(log_w)
    w_s = np.exp(smoothed)
    ess = float(1.0 / np.sum(w_s**2))
    raw = log_w - logsumexp(log_w)
    ess_raw = float(1.0 / np.sum(np.exp(2 * raw)))
    # evidence: mean of the raw weights, and the delta-method error of its log, sd(w) / (sqrt(M) mean(w))
    log_z = float(logsumexp(log_w) - math.log(M))
    rel = np.exp(log_w - log_z)  # w / mean(w)
    log_z_err = float(np.sqrt(np.sum((rel - 1.0) ** 2) / (M * max(M - 1, 1))))
    good, line = verdict(khat, ess, min_ess, M)
    return {
        "log_weights": smoothed,
        "khat": khat,
        "ess": ess,
        "ess_raw": ess_raw,
        "log_evidence": log_z,
        "log_evidence_err": log_z_err,
        "num_proposals": M,
        "num_finite": int(np.isfinite(log_w).sum()),
        "good": good,
        "verdict": line,
    }


def systematic_resample(log_weights: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices drawn by systematic resampling with normalised ``log_weights``: one uniform offset, then
    ``n`` evenly spaced points through the cumulative weights. Each index appears ``floor(n w_i)`` or
    ``ceil(n w_i)`` times (the least resampling noise of the standard schemes); indices come out sorted, i.e.
    in the proposals' (independent, random) order, so repeated draws sit next to each other."""
    w = np.exp(np.asarray(log_weights, dtype=np.float64))
    c = np.cumsum(w)
    c /= c[-1]
    rng = np.random.default_rng(seed)
    points = (rng.uniform() + np.arange(n)) / n
    return np.minimum(np.searchsorted(c, points, side="right"), len(w) - 1)


def importance_sample(
    amortized, observed, num_proposals: int = 10000, num_samples: int = 4000, seed: int = 0, min_ess: float = MIN_ESS, warn: bool = True
):
    """A :class:`~latentinfer.Posterior` for ``observed`` from NPE draws importance-weighted by the program.

    ``num_proposals`` draws of the NPE posterior are weighted by ``p(u, x) / q(u | x)`` in the unconstrained space
    and Pareto-smoothed; the returned posterior holds ``num_samples`` draws picked from them by **systematic
    resampling** (with replacement) in proportion to the smoothed weights. Resampling (rather than carrying
    weights) keeps every downstream tool (summaries, reports, evidence, tension) valid unchanged, since they all
    treat draws as equally weighted; systematic resampling adds the least noise of the with-replacement schemes
    and, unlike resampling without replacement, keeps the draws exactly proportional to the weights. Repeats are
    left next to each other, so arviz's ESS of the chain sees them as correlated rather than as independent
    draws; the importance-sampling ESS (how many independent draws the weighted set is worth) is in the attrs.

    ``attrs``: ``importance_khat``, ``importance_ess``, ``importance_ess_raw``, ``importance_log_evidence`` and
    ``importance_log_evidence_err`` (``log mean w``: the log evidence), ``importance_num_proposals``,
    ``importance_good`` (1 or 0) and ``importance_verdict`` ("proposal good enough" when ``k-hat < 0.7`` and
    ``ESS >= min_ess``, else the reason; also warned when ``warn``).
    """
    from .simulate import join_data, split_data

    t0 = time.perf_counter()
    if amortized.method != "npe":
        raise LatentInferError(
            f"importance sampling needs a normalised proposal (an NPE posterior); this estimator is {amortized.method.upper()}, whose density is known only up to a constant"
        )
    num_proposals, num_samples = int(num_proposals), int(num_samples)
    if num_proposals < 10:
        raise LatentInferError(f"importance sampling: num_proposals must be >= 10, got {num_proposals}")
    if num_samples < 1:
        raise LatentInferError(f"importance sampling: num_samples must be >= 1, got {num_samples}")
    a = amortized.analysis
    vec = join_data(a, observed)
    data = split_data(a, vec)
    ld = LogDensity(a, data={k: torch.as_tensor(v, dtype=a.dtype) for k, v in data.items()})
    check_tractable(a, ld)
    u = amortized.sample_unconstrained(vec, num_proposals, seed)
    with torch.no_grad():
        log_q = amortized.log_prob_unconstrained(u, vec).numpy()
        log_p = torch.cat([ld(c) for c in u.split(_CHUNK)]).numpy()
    res = importance_weights(log_p, log_q, min_ess=min_ess)
    idx = systematic_resample(res["log_weights"], num_samples, seed)
    with torch.no_grad():
        values, _ = a.constrain(u[torch.as_tensor(idx)], amortized._transforms)
    samples = {n: v.numpy()[None] for n, v in values.items()}
    from .posterior import SBI_DEFAULTS

    settings = {
        "seed": int(seed),
        "num_samples": num_samples,
        "importance": True,
        "num_proposals": num_proposals,
        **{k: v for k, v in amortized.config.items() if k in SBI_DEFAULTS},
    }
    extra = {f"importance_{k}": res[k] for k in ("khat", "ess", "ess_raw", "log_evidence", "log_evidence_err", "num_proposals", "verdict")}
    extra["importance_good"] = int(res["good"])
    extra["importance_unique_draws"] = int(len(np.unique(idx)))
    post = build_posterior(a.with_data(data), samples, method="npe", settings=settings, extra_attrs=extra, log_density=ld)
    if warn and not res["good"]:
        warnings.warn(f"NPE importance sampling: {res['verdict']}", stacklevel=3)
    post.attrs["wall_seconds"] = time.perf_counter() - t0
    return post
