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
    "embedding": None,  # None or "mlp" (a fully-connected embedding of the data vector, for long data)
    "embedding_dim": 20,
    "density_estimator": "maf",  # npe/nle: maf, nsf, mdn; nre: resnet or mlp
    "hidden_features": 50,
    "num_transforms": 5,
    "training_batch_size": 200,
    "learning_rate": 5e-4,
    "stop_after_epochs": 20,
    "max_num_epochs": 500,
    "mcmc_method": "slice_np_vectorized",  # nle/nre sampling
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
    from sbi.neural_nets.embedding_nets import FCEmbedding

    return FCEmbedding(input_dim=cfg["x_dim"], output_dim=cfg["embedding_dim"], num_layers=3, num_hiddens=128)


def _build_fn(cfg: dict):
    """The sbi builder that makes one density estimator (or classifier) from the JSON config."""
    from sbi.neural_nets import classifier_nn, likelihood_nn, posterior_nn

    m = cfg["method"]
    if m == "npe":
        return posterior_nn(
            model=cfg["density_estimator"], hidden_features=cfg["hidden_features"], num_transforms=cfg["num_transforms"], embedding_net=_embedding(cfg)
        )
    if m == "nle":
        return likelihood_nn(model=cfg["density_estimator"], hidden_features=cfg["hidden_features"], num_transforms=cfg["num_transforms"])
    model = cfg["density_estimator"] if cfg["density_estimator"] in ("resnet", "mlp", "linear") else "resnet"
    return classifier_nn(model=model, hidden_features=cfg["hidden_features"], embedding_net_x=_embedding(cfg))


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


def train(analysis, method: str = "npe", num_simulations: int = 10000, seed: int = 0, **settings) -> "AmortizedPosterior":
    """Simulate ``num_simulations`` draws of the program and train an sbi estimator (or an ensemble).

    ``method``: ``"npe"`` (posterior), ``"nle"`` (likelihood; sampled by MCMC), ``"nre"`` (ratio; MCMC).
    ``settings`` override :data:`SBI_DEFAULTS` (``ensemble``: number of estimators trained with different seeds
    and mixed with equal weights; ``embedding="mlp"``: learn a summary of long data vectors, NPE/NRE).
    """
    if method not in SBI_METHODS:
        raise ConfigError(f"train_sbi: method must be one of {', '.join(SBI_METHODS)}, got {method!r}")
    unknown = set(settings) - set(SBI_DEFAULTS)
    if unknown:
        raise ConfigError(f"train_sbi: unknown settings {sorted(unknown)} (allowed: {', '.join(SBI_DEFAULTS)})")
    cfg = {**SBI_DEFAULTS, **settings, "method": method, "num_simulations": int(num_simulations), "seed": int(seed)}
    if cfg["ensemble"] < 1:
        raise ConfigError(f"train_sbi: ensemble must be >= 1, got {cfg['ensemble']}")
    if cfg["embedding"] not in (None, "mlp"):
        raise ConfigError(f"train_sbi: embedding must be null or 'mlp', got {cfg['embedding']!r}")
    if cfg["embedding"] and method == "nle":
        raise ConfigError("train_sbi: an embedding net summarises data for npe/nre; nle models the data itself")
    if num_simulations < 50:
        raise ConfigError(f"train_sbi: num_simulations must be >= 50, got {num_simulations}")
    t0 = time.perf_counter()
    sims = simulate(analysis, num_simulations, seed=seed)
    t_sim = time.perf_counter() - t0
    theta, x = sims["u"].float(), sims["x"].float()
    cfg.update(theta_dim=int(theta.shape[1]), x_dim=int(x.shape[1]))
    estimators = []
    ctx = _quiet()
    try:
        prior = ProgramPrior(analysis)
        for k in range(cfg["ensemble"]):
            torch.manual_seed(seed * 1000 + k)
            trainer = _trainer(cfg, prior, _build_fn(cfg))  # a fresh builder: members share no embedding net
            trainer.append_simulations(theta, x)
            with contextlib.redirect_stdout(io.StringIO()):  # sbi prints "converged after N epochs"
                est = trainer.train(
                    training_batch_size=cfg["training_batch_size"],
                    learning_rate=cfg["learning_rate"],
                    stop_after_epochs=cfg["stop_after_epochs"],
                    max_num_epochs=cfg["max_num_epochs"],
                )
            cfg.setdefault("epochs", []).append(int(trainer.summary["epochs_trained"][-1]) if trainer.summary.get("epochs_trained") else None)
            estimators.append(est.eval())
    finally:
        ctx.__exit__(None, None, None)
    cfg["simulation_seconds"] = t_sim
    cfg["training_seconds"] = time.perf_counter() - t0 - t_sim
    return AmortizedPosterior(analysis, estimators, cfg)


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
