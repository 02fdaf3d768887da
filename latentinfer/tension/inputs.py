"""Line two posteriors up for comparison: same model, same parameters, their prior covariance.

The compared parameters are the forward model's inputs (latents, or physical parameters) sampled in both runs;
nuisance parameters are experiment-specific and are marginalised. Runs of different models, spaces or
parameter sets are refused with an error naming both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LatentInferError
from ..priors import moments
from .base import TensionInputs

__all__ = ["prepare_inputs", "prior_covariance", "model_identity", "input_parameters"]


def _meta(post, key: str) -> Any:
    val = post.attrs.get(key)
    if val is None:
        return None
    if isinstance(val, str):
        try:
            return json.loads(val)
        except json.JSONDecodeError:
            return val
    return val


def model_identity(post) -> dict[str, Any]:
    """``{"model", "space"}`` of the run that drew ``post`` (from its recorded config; None when unknown)."""
    cfg = _meta(post, "config") or {}
    return {"model": cfg.get("model"), "space": cfg.get("space", "latent") if cfg else None}


def input_parameters(post) -> list[str]:
    """The forward-model inputs sampled in ``post`` (all parameters when no program is recorded)."""
    program = _meta(post, "program")
    names = post.parameter_names
    if not isinstance(program, Mapping) or "inputs" not in program:
        return names
    return [n for n in program["inputs"] if n in names]


def _prior_specs(post) -> dict[str, Any]:
    program = _meta(post, "program")
    if not isinstance(program, Mapping):
        return {}
    specs = dict(program.get("nuisance", {}))
    specs.update(program.get("inputs", {}))
    return specs


def _block_index(specs: Mapping[str, Any], name: str) -> tuple[list[str], int]:
    """The names of the mvnormal block ``name`` belongs to (consecutive names with the same spec) and its index."""
    keys = list(specs)
    spec = specs[name]
    i = keys.index(name)
    start = i
    while start > 0 and specs[keys[start - 1]] == spec:
        start -= 1
    size = len(spec["mvnormal"][0])
    block = keys[start : start + size]
    return block, block.index(name)


def prior_covariance(post, names: Sequence[str]) -> np.ndarray | None:
    """Prior covariance ``(d, d)`` of ``names`` from the prior specs recorded in the posterior attrs ``program``.

    normal ``[m, s]`` -> ``s^2``; uniform ``[lo, hi]`` -> ``(hi - lo)^2 / 12``; truncnormal its exact variance; mvnormal blocks keep their
    correlations. None when a spec is missing or is not one of these.
    """
    specs = _prior_specs(post)
    d = len(names)
    cov = np.zeros((d, d))
    for i, name in enumerate(names):
        spec = specs.get(name)
        if not isinstance(spec, Mapping) or len(spec) != 1:
            return None
        (kind, args), = spec.items()
        if kind in ("normal", "uniform", "truncnormal"):
            cov[i, i] = moments(spec)[1]
        elif kind == "mvnormal":
            block, k = _block_index(specs, name)
            bcov = np.asarray(args[1], dtype=float)
            for j, other in enumerate(names):
                if other in block:
                    cov[i, j] = bcov[k, block.index(other)]
        else:
            return None
    return cov


def _ess(post, names: Sequence[str]) -> float:
    """Smallest bulk ESS over ``names`` (the number of independent draws a Monte-Carlo error may count on)."""
    import warnings

    import arviz as az

    if post.num_chains * post.num_draws < 8:
        return float(post.num_chains * post.num_draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(post.idata, var_names=list(names), method="bulk")
    vals = [float(ess[n].values) for n in names]
    vals = [v for v in vals if math.isfinite(v)]
    return min(vals) if vals else float(post.num_chains * post.num_draws)


def prepare_inputs(
    post_a,
    post_b,
    joint=None,
    *,
    params: Sequence[str] | None = None,
    evidence: Mapping[str, Mapping | None] | None = None,
    seed: int = 0,
    labels: Sequence[str] = ("A", "B"),
) -> TensionInputs:
    """Check that the runs are comparable and collect what metrics read (see :class:`TensionInputs`)."""
    ida, idb = model_identity(post_a), model_identity(post_b)
    for key in ("model", "space"):
        if ida[key] is not None and idb[key] is not None and ida[key] != idb[key]:
            raise LatentInferError(
                f"tension needs runs of the same {key}: run {labels[0]} has {key} '{ida[key]}', run {labels[1]} has '{idb[key]}'"
            )
    ins_a, ins_b = input_parameters(post_a), input_parameters(post_b)
    if params is None:
        if ins_a != ins_b:
            raise LatentInferError(
                f"tension needs the same parameters in both runs: run {labels[0]} samples {ins_a}, run {labels[1]} samples {ins_b}"
            )
        names = list(ins_a)
    else:
        names = [str(p) for p in params]
        for lab, post in zip(labels, (post_a, post_b)):
            lacking = [n for n in names if n not in post.parameter_names]
            if lacking:
                raise LatentInferError(f"run {lab} has no parameters {lacking} (it has {post.parameter_names})")
    if not names:
        raise LatentInferError("tension: no parameters to compare")
    if joint is not None:
        lacking = [n for n in names if n not in joint.parameter_names]
        if lacking:
            raise LatentInferError(f"the joint run has no parameters {lacking} (it has {joint.parameter_names})")
        idj = model_identity(joint)
        for key in ("model", "space"):
            if ida[key] is not None and idj[key] is not None and ida[key] != idj[key]:
                raise LatentInferError(
                    f"tension needs runs of the same {key}: run {labels[0]} has {key} '{ida[key]}', the joint run has '{idj[key]}'"
                )
    a = np.stack([post_a.samples(n) for n in names], -1)
    b = np.stack([post_b.samples(n) for n in names], -1)
    for lab, x in zip(labels, (a, b)):
        if not np.isfinite(x).all():
            raise LatentInferError(f"run {lab}: posterior samples of {names} contain NaN/inf")
        if x.shape[0] < 2:
            raise LatentInferError(f"run {lab}: needs at least 2 posterior samples, got {x.shape[0]}")
    cov_pa, cov_pb = prior_covariance(post_a, names), prior_covariance(post_b, names)
    prior_cov = None if cov_pa is None or cov_pb is None else 0.5 * (cov_pa + cov_pb)
    return TensionInputs(
        names=names,
        a=a,
        b=b,
        prior_cov=prior_cov,
        post_a=post_a,
        post_b=post_b,
        joint=joint,
        evidence=dict(evidence or {}),
        seed=int(seed),
        ess_a=_ess(post_a, names),
        ess_b=_ess(post_b, names),
    )
