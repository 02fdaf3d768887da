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
from ..io import atomic_write_text, sha256_file, versions
from .simulate import ProgramPrior, join_data, simulate, split_data

__all__ = ["AmortizedPosterior", "train", "SBI_DEFAULTS", "SBI_METHODS"]

SBI_METHODS = ("npe", "nle", "nre")

#: Settings of :func:`train` and their defaults (network sizes follow sbi's defaults).
SBI_DEFAULTS: dict[str, Any] = {
    "ensemble": 1,
    "embedding": None,  # None, "mlp" (a learned fully-connected summary) or "score" (fixed score compression)
    "embedding_dim": 20,
    "density_estimator": "maf",  # npe/nle: maf, nsf, mdn; nre: resnet or mlp
    "hidden_features": 50,
    "num_transforms": 5,
    "training_batch_size": 200,
    "learning_rate": 5e-4,
    "stop_after_epochs": 20,
    "max_num_epochs": 500,
    "mcmc_method": "slice_np_vectorized",  # nle/nre sampling
    "rounds": 1,  # > 1: truncated sequential NPE focused on ``observed`` (Deistler et al. 2022)
    "truncation_margin": 1.0,  # TSNPE box: [min, max] of 10,000 draws widened by this many posterior sd per side
    "progress": False,  # a progress bar over the rounds (simulate, train)
}

_FORMAT = "latentinfer-amortized/1"


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def _embedding(cfg: dict) -> torch.nn.Module:
    if cfg["embedding"] is None:
        return torch.nn.Identity()
    if cfg["embedding"] == "score":  # weights set by _score_compression (training) or the safetensors (loading)
        lin = torch.nn.Linear(cfg["x_dim"], cfg["theta_dim"])
        lin.requires_grad_(False)
        return lin
    from sbi.neural_nets.embedding_nets import FCEmbedding

    return FCEmbedding(input_dim=cfg["x_dim"], output_dim=cfg["embedding_dim"], num_layers=3, num_hiddens=128)


def _build_fn(cfg: dict, embedding: torch.nn.Module | None = None):
    """The sbi builder that makes one density estimator (or classifier) from the JSON config.

    ``embedding``: a ready embedding net (the score compression at training time); default from ``cfg``.
    """
    from sbi.neural_nets import classifier_nn, likelihood_nn, posterior_nn

    m = cfg["method"]
    emb = embedding if embedding is not None else _embedding(cfg)
    # the score compression takes raw data (its own centring and scaling): no z-scoring in front of it
    zx = {"z_score_x": "none"} if cfg["embedding"] == "score" else {}
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
    from ..tension.attribution import _jacobian

    transforms = analysis.transforms()
    if observed is not None:
        u0, _ = analysis.with_data(split_data(analysis, observed)).laplace(seed=seed)
        where = "MAP of the observed data"
    else:
        u0 = analysis.unconstrain({k: v.mean(0) for k, v in analysis.sample_prior(2000, seed=seed).items() if k in analysis.parameter_names}, transforms)
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


def _score_layer(cfg, W, b, x) -> torch.nn.Module:
    """The fixed embedding ``t = W x + b``, standardised over the (first-round) simulations ``x``: the flow then sees
    inputs of unit scale, on which u depends (nearly) linearly."""
    t = x.to(W.dtype) @ W.T + b
    m, s = t.mean(0), t.std(0).clamp_min(1e-12)
    W, b = W / s[:, None], (b - m) / s
    lin = _embedding(cfg)
    with torch.no_grad():
        lin.weight.copy_(W.float())
        lin.bias.copy_(b.float())
    return lin


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
    and mixed with equal weights; ``embedding="mlp"``: learn a summary of long data vectors, NPE/NRE).

    ``rounds > 1`` (NPE only) runs truncated sequential NPE (TSNPE; Deistler, Goncalves & Macke 2022) for the
    data ``observed``: the simulation budget is split over the rounds; after each round the prior is truncated to
    a box holding the current posterior of ``observed`` (the range of 10,000 draws widened by
    ``truncation_margin`` posterior sd per side, intersected with the previous box) and the next round simulates
    from the prior restricted to that box. Inside the box the proposal is proportional to the prior, so the
    ordinary NPE loss on the pooled simulations stays correct there. The result is no longer amortized over
    the whole prior: it is valid for data whose posterior lies inside the final box, and :meth:`posterior`
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
    if cfg["embedding"] not in (None, "mlp", "score"):
        raise ConfigError(f"train_sbi: embedding must be null, 'mlp' or 'score', got {cfg['embedding']!r}")
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
    transforms = analysis.transforms()
    score = None
    if cfg["embedding"] == "score":
        W, b, info = _score_compression(analysis, obs, seed)
        cfg["score_compression"] = info
        score = (W, b)
    names = analysis.parameter_names
    sizes = [num_simulations // rounds + (1 if r < num_simulations % rounds else 0) for r in range(rounds)]
    t_sim = t_train = 0.0
    box: dict[str, list[float]] | None = None
    trainers: list = []
    estimators: list = []
    from tqdm.auto import tqdm

    bar = tqdm(total=rounds, desc=f"NPE ({num_simulations} simulations)", unit="round", disable=not cfg["progress"])
    ctx = _quiet()
    try:
        prior = ProgramPrior(analysis)
        for r, n_r in enumerate(sizes):
            bar.set_postfix_str(f"simulating {n_r}")
            t0 = time.perf_counter()
            source = analysis if box is None else analysis.restricted(box)
            sims = simulate(source, n_r, seed=seed + 7919 * r)
            with torch.no_grad():  # the original program's unconstrained space for every round
                theta = analysis.unconstrain({n: sims[n] for n in names}, transforms).float()
            x = sims["x"].float()
            if r == 0:
                cfg.update(theta_dim=int(theta.shape[1]), x_dim=int(x.shape[1]))
            t_sim += time.perf_counter() - t0
            t0 = time.perf_counter()
            bar.set_postfix_str(f"training on {sum(sizes[: r + 1])}")
            estimators = []
            for k in range(cfg["ensemble"]):
                if r == 0:
                    torch.manual_seed(seed * 1000 + k)
                    emb = _score_layer(cfg, *score, x) if score is not None else None
                    trainers.append(_trainer(cfg, prior, _build_fn(cfg, emb)))  # a fresh builder: no shared embedding net
                trainers[k].append_simulations(theta, x)  # proposal = prior (restricted): the NPE loss stays exact
                with contextlib.redirect_stdout(io.StringIO()):  # sbi prints "converged after N epochs"
                    est = trainers[k].train(
                        training_batch_size=cfg["training_batch_size"],
                        learning_rate=cfg["learning_rate"],
                        stop_after_epochs=cfg["stop_after_epochs"],
                        max_num_epochs=cfg["max_num_epochs"],
                        **({"force_first_round_loss": True} if r > 0 else {}),  # pooled proposal = prior inside the box
                    )
                if r == rounds - 1:
                    summary = trainers[k].summary
                    cfg.setdefault("epochs", []).append(int(summary["epochs_trained"][-1]) if summary.get("epochs_trained") else None)
                estimators.append(est.eval())
            t_train += time.perf_counter() - t0
            if r < rounds - 1:
                box = _truncation_box(AmortizedPosterior(analysis, estimators, cfg), obs, box, cfg["truncation_margin"], seed + r)
                cfg.setdefault("truncation_boxes", []).append(box)
            bar.update(1)
    finally:
        ctx.__exit__(None, None, None)
        bar.close()
    cfg["truncation"] = box
    cfg["simulations_per_round"] = sizes
    cfg["simulation_seconds"] = t_sim
    cfg["training_seconds"] = t_train
    return AmortizedPosterior(analysis, estimators, cfg)


def _truncation_box(amortized, observed, previous, margin: float, seed: int) -> dict[str, list[float]]:
    """Per-parameter [low, high] (constrained) holding the current posterior of ``observed``."""
    a = amortized.analysis
    u = amortized.sample_unconstrained(observed, 10000, seed=seed)
    with torch.no_grad():
        values, _ = a.constrain(u, amortized._transforms)
    box = {}
    for name, v in values.items():
        v = v[torch.isfinite(v)].numpy()
        sd = float(np.std(v))
        lo, hi = float(v.min()) - margin * sd, float(v.max()) + margin * sd
        if previous is not None:
            lo, hi = max(lo, previous[name][0]), min(hi, previous[name][1])
        if not lo < hi:  # the new posterior left the old box: keep the old one rather than an empty one
            lo, hi = previous[name]
        box[name] = [lo, hi]
    return box


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
        return u.detach().to(torch.float64).reshape(int(num_samples), -1)

    def log_prob_unconstrained(self, u: torch.Tensor, observed) -> torch.Tensor:
        """The estimator's log posterior density at unconstrained ``u`` ``(m, n_params)`` (NPE: normalised;
        NLE/NRE: up to a constant)."""
        x = join_data(self.analysis, observed).float()
        ctx = _quiet()
        try:
            if self.method == "npe":
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
        from ..inference import build_posterior

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
            inside = np.ones(int(num_samples), dtype=bool)
            for n, (lo, hi) in box.items():
                v = values[n].numpy()
                inside &= (v >= lo) & (v <= hi)
            outside = float(1.0 - inside.mean())
            post.attrs["outside_truncation"] = outside
            if outside > 0.01:
                warnings.warn(
                    f"{100 * outside:.1f}% of the draws lie outside the truncation box this TSNPE estimator was "
                    "trained in: the data are not those it was focused on; retrain for them (rounds > 1, observed=...)",
                    stacklevel=2,
                )
        post.attrs["wall_seconds"] = time.perf_counter() - t0
        post.attrs["training"] = json.dumps({k: self.config.get(k) for k in ("num_simulations", "seed", "training_seconds", "simulation_seconds")})
        return post

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
        from safetensors.torch import load_file

        folder = Path(folder)
        path = folder / "config.json"
        if not path.is_file():
            raise LatentInferError(f"amortized posterior: no config.json in {folder}")
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise LatentInferError(f"amortized posterior: cannot read {path}: {exc}") from None
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
                if sha256_file(f) != item["sha256"]:
                    raise LatentInferError(f"{f}: sha256 does not match config.json (file changed or corrupt)")
                est = _build_fn(cfg)(torch.randn(64, cfg["theta_dim"]), torch.randn(64, cfg["x_dim"]))
                try:
                    est.load_state_dict(load_file(str(f)))
                except RuntimeError as exc:
                    raise LatentInferError(f"{f}: weights do not fit the estimator of config.json ({str(exc).splitlines()[0]})") from None
                estimators.append(est.eval())
        finally:
            ctx.__exit__(None, None, None)
        return cls(analysis, estimators, cfg)
