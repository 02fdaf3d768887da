"""Amortized posteriors: train sbi density estimators (NPE, NLE, NRE) on simulations of the program, then
give a :class:`~latentinfer.Posterior` for any new data vector; saved as safetensors + JSON (no pickle).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LatentInferError
from ..io import atomic_write_text, read_file, sha256_file, versions
from .simulate import ProgramPrior, join_data, prior_draws, simulate, split_data
from ..program.jacobian import jacobian as _jacobian
from ..posterior import build_posterior

__all__ = ["AmortizedPosterior", "train", "SBI_DEFAULTS", "SBI_METHODS"]

SBI_METHODS = ("npe", "nle", "nre")

#: Settings of :func:`train` and their defaults (network sizes follow sbi's defaults).
SBI_DEFAULTS: dict[str, Any] = {
    "ensemble": 1,
    "embedding": None,  # None, "mlp" (learned summary), "pca" (fixed whitened principal components) or "score"
    "embedding_dim": None,  # mlp: output size (default 20); pca: number of components (default: from pca_tolerance)
    "pca_tolerance": 0.01,  # pca: keep components until 99 % of the simulations lose chi2 < this to the projection
    "density_estimator": "maf",  # npe/nle: maf, nsf, mdn; nre: resnet or mlp
    "hidden_features": 50,
    "num_transforms": 5,
    "training_batch_size": 200,
    "learning_rate": 5e-4,
    "stop_after_epochs": 20,
    "max_num_epochs": 500,
    "mcmc_method": "slice_np_vectorized",  # nle/nre sampling
    "rounds": 1,  # > 1: truncated sequential NPE focused on ``observed`` (Deistler et al. 2022)
    "truncation_margin": 1.0,  # TSNPE region: the largest Mahalanobis distance of 10,000 draws plus this
    "progress": False,  # a progress bar over the rounds (simulate, train)
    "centring": None,  # "linear": the flow learns u's residual from a ridge regression on x, in units of its scatter
}

_FORMAT = "latentinfer-amortized/1"


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


EMBEDDINGS = (None, "mlp", "pca", "score")
_FIXED = ("pca", "score")  # linear compressions fixed before training (no z-scoring of x in front of them)


def _embedding(cfg: dict) -> torch.nn.Module:
    if cfg["embedding"] is None:
        return torch.nn.Identity()
    if cfg["embedding"] in _FIXED:  # weights set by _score_compression / _pca_compression, or the safetensors
        lin = torch.nn.Linear(cfg["x_dim"], cfg["theta_dim"] if cfg["embedding"] == "score" else cfg["embedding_dim"])
        lin.requires_grad_(False)
        return lin
    from sbi.neural_nets.embedding_nets import FCEmbedding

    return FCEmbedding(input_dim=cfg["x_dim"], output_dim=cfg["embedding_dim"] or 20, num_layers=3, num_hiddens=128)


def _build_fn(cfg: dict, embedding: torch.nn.Module | None = None):
    """The sbi builder that makes one density estimator (or classifier) from the JSON config.

    ``embedding``: a ready embedding net (the score compression at training time); default from ``cfg``.
    """
    from sbi.neural_nets import classifier_nn, likelihood_nn, posterior_nn

    m = cfg["method"]
    emb = embedding if embedding is not None else _embedding(cfg)
    # a fixed compression takes raw data (its own centring and scaling): no z-scoring in front of it
    zx = {"z_score_x": "none"} if cfg["embedding"] in _FIXED else {}
    if m == "npe":
        return posterior_nn(
            model=cfg["density_estimator"], hidden_features=cfg["hidden_features"], num_transforms=cfg["num_transforms"], embedding_net=emb, **zx
        )
    if m == "nle":
        return likelihood_nn(model=cfg["density_estimator"], hidden_features=cfg["hidden_features"], num_transforms=cfg["num_transforms"])
    model = cfg["density_estimator"] if cfg["density_estimator"] in ("resnet", "mlp", "linear") else "resnet"
    return classifier_nn(model=model, hidden_features=cfg["hidden_features"], embedding_net_x=emb, **zx)


def _data_mean(analysis, u: torch.Tensor, transforms) -> torch.Tensor:
    """The expected data vector (all likelihoods, program order) at unconstrained parameters ``u`` ``(p,)``."""
    from pyro import poutine

    values, _ = analysis.constrain(u, transforms)
    theory = analysis.theory(values)
    _, nuisance = poutine.condition(analysis.prior_model, data=values)()  # fixed nuisances included
    return torch.cat([lik.distribution(theory, nuisance).mean for lik in analysis.likelihoods], -1)


def _score_compression(analysis, observed, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Score (MOPED-like) compression of the data to one number per parameter, ``t = W x + b``.

    At a fiducial point u0 (the MAP of ``observed``, else the prior's centre) with ``J = d mu / d u`` and the
    likelihoods' covariance C: ``t = diag(F^-1)^-1/2 F^-1 J^T C^-1 (x - mu(u0))``, ``F = J^T C^-1 J``: the
    quasi-maximum-likelihood estimate of u in units of its Fisher error, centred on u0. Lossless to first order
    for Gaussian likelihoods (Alsing & Wandelt 2018); for any other it is still a valid summary (NPE stays
    correct, only information may be lost).
    """

    transforms = analysis.transforms()
    if observed is not None:
        u0, _ = analysis.with_data(split_data(analysis, observed)).laplace(seed=seed)
        where = "MAP of the observed data"
    else:
        u0 = analysis.unconstrain({k: v.mean(0) for k, v in prior_draws(analysis, 2000, seed=seed).items()}, transforms)
        where = "prior mean"
    u0 = u0.detach().to(analysis.dtype)
    with torch.no_grad():
        mu0 = _data_mean(analysis, u0, transforms)
    J = _jacobian(lambda u: _data_mean(analysis, u, transforms), u0).reshape(mu0.shape[0], -1)
    C = torch.block_diag(*[lik.cov.to(analysis.dtype) for lik in analysis.likelihoods])
    CiJ = torch.linalg.solve(C, J)
    F = J.T @ CiJ
    Finv = torch.linalg.inv(0.5 * (F + F.T))
    sd = Finv.diagonal().clamp_min(1e-300).sqrt()
    A = (Finv @ CiJ.T) / sd[:, None]
    info = {"fiducial": where, "u0": u0.tolist(), "fisher_sd": sd.tolist()}
    return A, -(A @ mu0), info


def _pca_compression(analysis, mean: torch.Tensor, k: int | None, tolerance: float):
    """Whitened principal components of the noiseless data ``mean`` ``(n, n_data)`` of the simulations.

    With ``L`` the Cholesky factor of the likelihoods' covariance, ``w = L^-1 mu(theta)`` has unit noise in every
    direction; the top ``k`` right singular vectors ``V`` of the centred ``w`` span how the data move across the
    simulated parameters. ``t = V L^-1 (x - <mu>)``. For a Gaussian likelihood with fixed covariance,
    ``log L(theta) = x^T C^-1 mu(theta) + f(theta)``, so ``t`` is sufficient up to the part of ``w`` outside the
    span: ``k`` (default) is the smallest number for which 99 % of the simulations lose chi2 < ``tolerance``. Unlike
    the score at one point it follows curved degeneracies.
    """
    L = torch.block_diag(*[lik.scale_tril.to(analysis.dtype) for lik in analysis.likelihoods])
    m = mean.to(analysis.dtype)
    w = torch.linalg.solve_triangular(L, (m - m.mean(0)).T, upper=False).T
    _, S, Vh = torch.linalg.svd(w, full_matrices=False)
    proj2 = (w @ Vh.T) ** 2
    lost = (w**2).sum(1, keepdim=True) - proj2.cumsum(1)  # (n, r): chi2 outside the first k+1 components
    p99 = torch.quantile(lost, 0.99, dim=0)
    if k is None:
        ok = torch.nonzero(p99 < tolerance)
        k = int(ok[0]) + 1 if len(ok) else int(Vh.shape[0])
    k = min(int(k), int(Vh.shape[0]))
    W = torch.linalg.solve_triangular(L.T, Vh[:k].T, upper=True).T  # V L^-1
    info = {"components": k, "chi2_lost_p99": float(p99[k - 1]), "variance": (S[:k] ** 2 / len(w)).tolist()}
    return W, -(W @ m.mean(0)), info


def _fixed_layer(cfg, W, b, x) -> torch.nn.Module:
    """The fixed embedding ``t = W x + b``, standardised over the (first-round) simulations ``x``: the flow then sees
    inputs of unit scale. (On Planck, PCA components left in noise units, up to ~50 across the prior, gave mean
    offsets of up to 1.1 posterior sd against NUTS; standardised, 0.11.)"""
    t = x.to(W.dtype) @ W.T + b
    m, s = t.mean(0), t.std(0).clamp_min(1e-12)
    W, b = W / s[:, None], (b - m) / s
    lin = _embedding(cfg)
    with torch.no_grad():
        lin.weight.copy_(W.float())
        lin.bias.copy_(b.float())
    return lin


def _linear_centring(theta: torch.Tensor, x: torch.Tensor, ridge: float = 1e-6) -> dict:
    """A ridge regression of the unconstrained parameters ``theta`` on the data ``x`` (both standardised; float64):
    ``mu(x) = mean_u + (x - mean_x) B`` and the residuals' sd ``s``. NPE then learns ``(u - mu(x)) / s``: the flow
    sees a posterior of unit scale wherever the data put it, instead of one 10-100x narrower than the prior whose
    location it must place to a fraction of its width (issue 22: the over-confidence of NPE on Planck)."""
    X, U = x.double(), theta.double()
    mx, sx = X.mean(0), X.std(0).clamp_min(1e-12)
    mu = U.mean(0)
    Z = (X - mx) / sx
    G = Z.T @ Z / len(Z)
    A = torch.linalg.solve(G + ridge * torch.eye(G.shape[0], dtype=G.dtype), Z.T @ (U - mu) / len(Z))
    B = A / sx[:, None]
    s = (U - mu - (X - mx) @ B).std(0).clamp_min(1e-12)
    return {"mean_x": mx.tolist(), "mean_u": mu.tolist(), "B": B.tolist(), "scale": s.tolist()}


def _centre(c: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu(x), s)`` float64 of a linear centring for data ``x`` ``(n, D)`` or ``(D,)``."""
    X = x.double()
    mu = torch.as_tensor(c["mean_u"], dtype=torch.float64) + (X - torch.as_tensor(c["mean_x"], dtype=torch.float64)) @ torch.as_tensor(c["B"], dtype=torch.float64)
    return mu, torch.as_tensor(c["scale"], dtype=torch.float64)


class _NullTracker:
    """sbi's training tracker that records nothing (sbi's default writes TensorBoard logs to ./sbi-logs)."""

    log_dir = ""

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


def _trainer(cfg: dict, prior, build):
    from sbi.inference import NLE, NPE, NRE

    cls = {"npe": NPE, "nle": NLE, "nre": NRE}[cfg["method"]]
    kw = {"density_estimator": build} if cfg["method"] != "nre" else {"classifier": build}
    return cls(prior=prior, show_progress_bars=False, tracker=_NullTracker(), **kw)


def _sbi_posterior(cfg, trainer, estimator):
    if cfg["method"] == "npe":
        return trainer.build_posterior(estimator)
    return trainer.build_posterior(estimator, sample_with="mcmc", mcmc_method=cfg["mcmc_method"])


def train(
    analysis, method: str = "npe", num_simulations: int = 10000, seed: int = 0, observed=None, **settings
) -> "AmortizedPosterior":
    """Simulate ``num_simulations`` draws of the program and train an sbi estimator (or an ensemble).

    ``method``: ``"npe"`` (posterior), ``"nle"`` (likelihood; sampled by MCMC), ``"nre"`` (ratio; MCMC).
    ``settings`` override :data:`SBI_DEFAULTS` (``ensemble``: number of estimators trained with different seeds
    and mixed with equal weights). Long data vectors are summarised before the density estimator (NPE/NRE):
    ``embedding="pca"``: whitened principal components of the first round's noiseless simulated data (see
    :func:`_pca_compression`; near-sufficient for Gaussian likelihoods, the choice for CMB bandpowers);
    ``"mlp"``: a learned fully-connected summary; ``"score"``: the score at the MAP, one number per parameter.

    ``rounds > 1`` (NPE only) runs truncated sequential NPE (TSNPE; Deistler, Goncalves & Macke 2022) for the
    data ``observed``: the simulation budget is split over the rounds; after each round the prior is truncated to
    a region holding the current posterior of ``observed``: an ellipsoid in the unconstrained space (mean and
    covariance of 10,000 draws, radius their largest Mahalanobis distance plus ``truncation_margin``) within its
    bounding box, intersected with the previous region. The next round simulates from the prior restricted to it.
    The regions are nested, so all simulations so far that fall inside the current region are distributed as the
    prior restricted to it: each round trains a fresh estimator on them with the ordinary NPE loss, its input
    scaling fitted to them (near the data the inputs keep unit scale). The result is no longer amortized over
    the whole prior: it is valid for data whose posterior lies inside the final region, and :meth:`posterior`
    reports the fraction of draws that fall outside it.
    """
    if method not in SBI_METHODS:
        raise ConfigError(f"train_sbi: method must be one of {', '.join(SBI_METHODS)}, got {method!r}")
    unknown = set(settings) - set(SBI_DEFAULTS)
    if unknown:
        raise ConfigError(f"train_sbi: unknown settings {sorted(unknown)} (allowed: {', '.join(SBI_DEFAULTS)})")
    cfg = {**SBI_DEFAULTS, **settings, "method": method, "num_simulations": int(num_simulations), "seed": int(seed)}
    if cfg["ensemble"] < 1:
        raise ConfigError(f"train_sbi: ensemble must be >= 1, got {cfg['ensemble']}")
    if cfg["embedding"] not in EMBEDDINGS:
        raise ConfigError(f"train_sbi: embedding must be null, 'mlp', 'pca' or 'score', got {cfg['embedding']!r}")
    dim = cfg["embedding_dim"]
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise ConfigError(f"train_sbi: embedding_dim must be an integer >= 1 or null, got {dim!r}")
    if not (isinstance(cfg["pca_tolerance"], (int, float)) and cfg["pca_tolerance"] > 0):
        raise ConfigError(f"train_sbi: pca_tolerance must be a number > 0, got {cfg['pca_tolerance']!r}")
    if cfg["centring"] not in (None, "linear"):
        raise ConfigError(f"train_sbi: centring must be null or 'linear', got {cfg['centring']!r}")
    if cfg["centring"] and method != "npe":
        raise ConfigError(f"train_sbi: centring (of the posterior on a regression of u on x) needs method 'npe', got {method!r}")
    if cfg["embedding"] and method == "nle":
        raise ConfigError("train_sbi: an embedding net summarises data for npe/nre; nle models the data itself")
    if num_simulations < 50:
        raise ConfigError(f"train_sbi: num_simulations must be >= 50, got {num_simulations}")
    rounds = cfg["rounds"]
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"train_sbi: rounds must be an integer >= 1, got {rounds!r}")
    if rounds > 1 and method != "npe":
        raise ConfigError(f"train_sbi: rounds > 1 (truncated sequential NPE) needs method 'npe', got {method!r}")
    if rounds > 1 and observed is None:
        raise ConfigError("train_sbi: rounds > 1 focuses the simulations on one data set: pass observed=...")
    if rounds > 1 and num_simulations // rounds < 50:
        raise ConfigError(f"train_sbi: {num_simulations} simulations over {rounds} rounds leaves < 50 per round")
    if not (isinstance(cfg["truncation_margin"], (int, float)) and cfg["truncation_margin"] >= 0):
        raise ConfigError(f"train_sbi: truncation_margin must be a number >= 0, got {cfg['truncation_margin']!r}")
    obs = join_data(analysis, observed) if observed is not None else None
    fixed = None
    if cfg["embedding"] == "score":
        W, b, info = _score_compression(analysis, obs, seed)
        cfg["score_compression"] = info
        fixed = (W, b)
    names = analysis.parameter_names
    sizes = [num_simulations // rounds + (1 if r < num_simulations % rounds else 0) for r in range(rounds)]
    t_sim = t_train = 0.0
    box: dict[str, list[float]] | None = None
    ellipsoids: list[dict] = []
    pool: dict[str, list[torch.Tensor]] = {"theta": [], "x": [], **{n: [] for n in names}}
    estimators: list = []
    from tqdm.auto import tqdm

    bar = tqdm(total=rounds, desc=f"NPE ({num_simulations} simulations)", unit="round", disable=not cfg["progress"])
    ctx = _quiet()
    try:
        prior = ProgramPrior(analysis)
        for r, n_r in enumerate(sizes):
            bar.set_postfix_str(f"simulating {n_r}")
            t0 = time.perf_counter()
            given = _draw_in_region(analysis, box, ellipsoids, n_r, seed + 7919 * r) if box is not None else None
            sims = simulate(analysis, n_r, seed=seed + 7919 * r, with_mean=cfg["embedding"] == "pca" and r == 0, parameters=given)
            pool["theta"].append(sims["u"].float())  # simulated with the original program: its unconstrained space
            pool["x"].append(sims["x"].float())
            for n in names:
                pool[n].append(sims[n])
            if r == 0:
                cfg.update(theta_dim=int(pool["theta"][0].shape[1]), x_dim=int(pool["x"][0].shape[1]))
                if cfg["embedding"] == "pca":
                    W, b, info = _pca_compression(analysis, sims["mean"], cfg["embedding_dim"], cfg["pca_tolerance"])
                    cfg["embedding_dim"] = info["components"]
                    cfg["pca_compression"] = info
                    fixed = (W, b)
            # every simulation so far whose parameters lie in the current region: the regions are nested, so each
            # round's proposal (the prior on a larger region) restricted to this one is the prior on it, and so is
            # the pool: a fresh estimator trained on it with the plain NPE loss is the posterior under the prior
            # truncated to the region, which is the posterior itself for data whose posterior lies inside.
            theta, x = torch.cat(pool["theta"]), torch.cat(pool["x"])
            if box is not None:
                inside = _in_region({n: torch.cat(pool[n]) for n in names}, theta.double(), box, ellipsoids)
                theta, x = theta[inside], x[inside]
            t_sim += time.perf_counter() - t0
            t0 = time.perf_counter()
            bar.set_postfix_str(f"training on {len(theta)}")
            target = theta
            if cfg["centring"] == "linear":
                cfg["linear_centring"] = _linear_centring(theta, x)
                mu, sc = _centre(cfg["linear_centring"], x)
                target = ((theta.double() - mu) / sc).float()
            estimators = []
            for k in range(cfg["ensemble"]):
                torch.manual_seed(seed * 1000 + k + 7919 * r)
                # standardised on this pool: near the data the inputs keep unit scale (a fresh builder each time)
                emb = _fixed_layer(cfg, *fixed, x) if fixed is not None else None
                trainer = _trainer(cfg, prior, _build_fn(cfg, emb))
                trainer.append_simulations(target, x)
                with contextlib.redirect_stdout(io.StringIO()):  # sbi prints "converged after N epochs"
                    est = trainer.train(
                        training_batch_size=cfg["training_batch_size"],
                        learning_rate=cfg["learning_rate"],
                        stop_after_epochs=cfg["stop_after_epochs"],
                        max_num_epochs=cfg["max_num_epochs"],
                    )
                if r == rounds - 1:
                    epochs = trainer.summary.get("epochs_trained")
                    cfg.setdefault("epochs", []).append(int(epochs[-1]) if epochs else None)
                estimators.append(est.eval())
            t_train += time.perf_counter() - t0
            if r < rounds - 1:
                box, ell = _truncation_region(AmortizedPosterior(analysis, estimators, cfg), obs, box, cfg["truncation_margin"], seed + r)
                ellipsoids.append(ell)
                cfg.setdefault("truncation_boxes", []).append(box)
            cfg.setdefault("training_set_sizes", []).append(int(len(theta)))
            bar.update(1)
    finally:
        ctx.__exit__(None, None, None)
        bar.close()
    cfg["truncation"] = box
    cfg["truncation_ellipsoids"] = ellipsoids or None
    cfg["simulations_per_round"] = sizes
    cfg["simulation_seconds"] = t_sim
    cfg["training_seconds"] = t_train
    return AmortizedPosterior(analysis, estimators, cfg)


def _truncation_region(amortized, observed, previous, margin: float, seed: int):
    """The region holding the current posterior of ``observed``: an ellipsoid in the unconstrained space (mean and
    covariance of 10,000 draws, radius their largest Mahalanobis distance plus ``margin``) and its bounding box
    (constrained values), intersected with the previous box. Returns ``(box, ellipsoid)``."""
    a = amortized.analysis
    u = amortized.sample_unconstrained(observed, 10000, seed=seed)
    u = u[torch.isfinite(u).all(1)]
    mean, cov = u.mean(0), torch.cov(u.T).reshape(u.shape[1], u.shape[1])
    d2 = ((u - mean) @ torch.linalg.inv(cov) * (u - mean)).sum(1)
    radius = float(d2.max().sqrt()) + margin
    half = radius * cov.diagonal().sqrt()
    with torch.no_grad():
        ends, _ = a.constrain(torch.stack([mean - half, mean + half]), amortized._transforms)
    box = {}
    for name, v in ends.items():
        lo, hi = float(v.min()), float(v.max())
        if previous is not None:
            lo, hi = max(lo, previous[name][0]), min(hi, previous[name][1])
        if not lo < hi:  # the new posterior left the old box: keep the old one rather than an empty one
            lo, hi = previous[name]
        box[name] = [lo, hi]
    return box, {"mean": mean.tolist(), "cov": cov.tolist(), "radius": radius}


def _in_region(values: dict[str, torch.Tensor], u: torch.Tensor, box, ellipsoids) -> torch.Tensor:
    """Boolean ``(n,)``: constrained ``values`` inside ``box`` and unconstrained ``u`` inside every ellipsoid."""
    inside = torch.ones(len(u), dtype=torch.bool)
    for n, (lo, hi) in box.items():
        inside &= (values[n] >= lo) & (values[n] <= hi)
    for e in ellipsoids:
        d = u - torch.as_tensor(e["mean"], dtype=u.dtype)
        P = torch.linalg.inv(torch.as_tensor(e["cov"], dtype=u.dtype))
        inside &= (d @ P * d).sum(1) <= e["radius"] ** 2
    return inside


def _draw_in_region(analysis, box, ellipsoids, n: int, seed: int, batch: int = 100_000) -> dict[str, torch.Tensor]:
    """``n`` prior draws inside the region (the prior restricted to the box, then rejection on the ellipsoids):
    proportional to the prior there. Prior sites only, so the rejected draws cost no forward model."""
    source = analysis.restricted(box)
    transforms = analysis.transforms()
    kept: dict[str, list[torch.Tensor]] = {}
    total = 0
    for i in range(1000):
        vals = prior_draws(source, batch, seed=seed + 104729 * i)
        with torch.no_grad():
            u = analysis.unconstrain(vals, transforms)
        ok = _in_region(vals, u, box, ellipsoids)
        for k, v in vals.items():
            kept.setdefault(k, []).append(v[ok])
        total += int(ok.sum())
        if total >= n:
            return {k: torch.cat(v)[:n] for k, v in kept.items()}
    raise LatentInferError(f"TSNPE: only {total} of {1000 * batch} prior draws fell in the truncation region; increase truncation_margin")


class AmortizedPosterior:
    """A trained amortized posterior for one :class:`~latentinfer.Analysis` program.

    ``posterior(observed)`` returns a :class:`~latentinfer.Posterior` (one chain of ``num_samples`` draws) for
    a data vector ``{likelihood name: (n_data,)}`` or the concatenated ``(n_data_total,)``.
    """

    def __init__(self, analysis, estimators, config: dict):
        self.analysis = analysis
        self.estimators = list(estimators)
        self.config = dict(config)
        self._transforms = analysis.transforms()
        ctx = _quiet()
        try:
            prior = ProgramPrior(analysis)
            trainer = _trainer(self.config, prior, _build_fn(self.config))
            posts = [_sbi_posterior(self.config, trainer, est) for est in self.estimators]
            if len(posts) > 1:
                from sbi.inference.posteriors.ensemble_posterior import EnsemblePosterior

                self._sbi = EnsemblePosterior(posts)
            else:
                self._sbi = posts[0]
        finally:
            ctx.__exit__(None, None, None)

    @property
    def method(self) -> str:
        return self.config["method"]

    # -- inference -------------------------------------------------------------------------------------------
    def sample_unconstrained(self, observed, num_samples: int = 10000, seed: int = 0) -> torch.Tensor:
        """Draws ``(num_samples, n_params)`` in the unconstrained space, float64."""
        x = join_data(self.analysis, observed).float()
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))
        ctx = _quiet()
        try:
            kw = {"show_progress_bars": False}
            if self.method == "npe":  # the flow lives on all of R^p (unconstrained space): nothing to reject
                kw["reject_outside_prior"] = False
            u = self._sbi.sample((int(num_samples),), x=x, **kw)
        finally:
            ctx.__exit__(None, None, None)
        u = u.detach().to(torch.float64).reshape(int(num_samples), -1)
        if self.config.get("linear_centring"):
            mu, sc = _centre(self.config["linear_centring"], x)
            u = mu + sc * u
        return u

    def log_prob_unconstrained(self, u: torch.Tensor, observed) -> torch.Tensor:
        """The estimator's log posterior density at unconstrained ``u`` ``(m, n_params)`` (NPE: normalised;
        NLE/NRE: up to a constant)."""
        x = join_data(self.analysis, observed).float()
        ctx = _quiet()
        try:
            if self.method == "npe" and self.config.get("linear_centring"):
                mu, sc = _centre(self.config["linear_centring"], x)
                r = (torch.as_tensor(u, dtype=torch.float64) - mu) / sc
                lp = self._sbi.log_prob(r.float(), x=x, norm_posterior=False).double() - sc.log().sum()
            elif self.method == "npe":
                # normalised already: support is all of R^p, so no leakage correction (a costly sampling step)
                lp = self._sbi.log_prob(torch.as_tensor(u).float(), x=x, norm_posterior=False)
            else:
                self._sbi.set_default_x(x)
                lp = self._sbi.potential(torch.as_tensor(u).float())
        finally:
            ctx.__exit__(None, None, None)
        return lp.detach().to(torch.float64)

    def posterior(self, observed, num_samples: int = 10000, seed: int = 0):
        """A :class:`~latentinfer.Posterior` for ``observed`` (constrained parameters, log-likelihoods attached)."""

        t0 = time.perf_counter()
        vec = join_data(self.analysis, observed)
        u = self.sample_unconstrained(vec, num_samples, seed)
        with torch.no_grad():
            values, _ = self.analysis.constrain(u, self._transforms)
        samples = {n: v.numpy()[None] for n, v in values.items()}
        data = {k: v for k, v in split_data(self.analysis, vec).items()}
        settings = {"seed": int(seed), "num_samples": int(num_samples), **{k: v for k, v in self.config.items() if k in SBI_DEFAULTS}}
        post = build_posterior(self.analysis.with_data(data), samples, method=self.method, settings=settings)
        box = self.config.get("truncation")
        if box:  # TSNPE is valid only where its proposal was proportional to the prior
            inside = _in_region(values, u, box, self.config.get("truncation_ellipsoids") or [])
            outside = float(1.0 - inside.double().mean())
            post.attrs["outside_truncation"] = outside
            if outside > 0.01:
                warnings.warn(
                    f"{100 * outside:.1f}% of the draws lie outside the truncation region this TSNPE estimator was "
                    "trained in: the data are not those it was focused on; retrain for them (rounds > 1, observed=...)",
                    stacklevel=2,
                )
        post.attrs["wall_seconds"] = time.perf_counter() - t0
        post.attrs["training"] = json.dumps({k: self.config.get(k) for k in ("num_simulations", "seed", "training_seconds", "simulation_seconds")})
        return post

    def importance_sample(
        self, observed, num_proposals: int = 10000, num_samples: int = 4000, seed: int = 0, min_ess: float = 1000, warn: bool = True
    ):
        """NPE draws importance-weighted by the program's own density (PSIS): a :class:`~latentinfer.Posterior` of
        ``num_samples`` draws systematically resampled from ``num_proposals`` weighted proposals, with Pareto k-hat,
        ESS, the log evidence ``log mean w`` (and its error) and a verdict in ``attrs``; see
        :func:`latentinfer.amortized.importance.importance_sample`. NPE only; every likelihood needs a log-density."""
        from .importance import importance_sample

        return importance_sample(self, observed, num_proposals=num_proposals, num_samples=num_samples, seed=seed, min_ess=min_ess, warn=warn)

    # -- files -----------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``estimator-K.safetensors`` (state dicts; sha256 recorded) into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for k, est in enumerate(self.estimators):
            name = f"estimator-{k}.safetensors"
            tmp = folder / f".{name}.tmp"
            save_file({key: v.detach().contiguous().cpu() for key, v in est.state_dict().items()}, str(tmp))
            os.replace(tmp, folder / name)
            files.append({"file": name, "sha256": sha256_file(folder / name)})
        record = {
            "format": _FORMAT,
            "config": self.config,
            "parameters": self.analysis.parameter_names,
            "likelihoods": {lik.name: lik.n_data for lik in self.analysis.likelihoods},
            "estimators": files,
            "versions": versions(),
        }
        atomic_write_text(folder / "config.json", json.dumps(record, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, analysis) -> "AmortizedPosterior":
        """Rebuild the estimators from ``config.json`` and load their weights (sha256-checked safetensors)."""

        folder = Path(folder)
        path = folder / "config.json"
        record = read_file(path, kind="JSON", missing=f"amortized posterior: no config.json in {folder}",
                           label="amortized posterior: cannot read {path}")
        if record.get("format") != _FORMAT:
            raise LatentInferError(f"{path}: not a latentinfer amortized posterior (format {record.get('format')!r})")
        if record["parameters"] != analysis.parameter_names:
            raise LatentInferError(f"{path}: trained for parameters {record['parameters']}, the analysis has {analysis.parameter_names}")
        liks = {lik.name: lik.n_data for lik in analysis.likelihoods}
        if record["likelihoods"] != liks:
            raise LatentInferError(f"{path}: trained for likelihoods {record['likelihoods']}, the analysis has {liks}")
        cfg = record["config"]
        estimators = []
        ctx = _quiet()
        try:
            for item in record["estimators"]:
                f = folder / item["file"]
                if f.parent.resolve() != folder.resolve() or not f.is_file():
                    raise LatentInferError(f"{path}: estimator file {item['file']!r} missing or outside the folder")
                state = read_file(f, kind="safetensors", sha256=item["sha256"])
                est = _build_fn(cfg)(torch.randn(64, cfg["theta_dim"]), torch.randn(64, cfg["x_dim"]))
                try:
                    est.load_state_dict(state)
                except RuntimeError as exc:
                    raise LatentInferError(f"{f}: weights do not fit the estimator of config.json ({str(exc).splitlines()[0]})") from None
                estimators.append(est.eval())
        finally:
            ctx.__exit__(None, None, None)
        return cls(analysis, estimators, cfg)
