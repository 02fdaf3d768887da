"""The No-U-Turn sampler (Pyro), chains run as independent tasks on the execution backend.

Each chain is driven step by step through Pyro's kernel interface (``setup`` / ``sample``), the same loop as
``pyro.infer.MCMC``. When the run has a checkpoint folder, a chain saves its state (position, adapted step size
and mass matrix, draws so far, RNG states; see :mod:`.chain_state`) after warmup and then every
``$LATENTINFER_CHECKPOINT_SECONDS`` (default 30 s) of sampling; a restarted run continues from there and ends
with the same numbers as an uninterrupted one. Finished chains are checkpointed whole by
:func:`~latentinfer.execution.map_tasks`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from pyro.infer import NUTS
from pyro.infer.autoguide.initialization import init_to_value

from ..execution import default_workers, map_tasks
from ..posterior import build_posterior
from .base import METHODS, Method, Settings, chain_seeds, setting
from .chain_state import checkpoint_seconds as _checkpoint_seconds
from .chain_state import load_chain_state, restore_kernel, save_chain_state

__all__ = ["NUTSMethod", "run_chain"]


def run_chain(task) -> dict:
    """One NUTS chain: ``task = (analysis, chain, seed, settings[, state_path])``; returns the constrained
    draws ``{name: (draws,)}`` plus ``__diverging``, ``__step_size`` and ``resumed_at`` (the draw from which an
    interrupted chain was continued, -1 if none). Top level so that workers unpickle it."""
    analysis, chain, seed, s = task[:4]
    state_path = Path(task[4]) if len(task) > 4 and task[4] else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic in-process and in workers: same numbers
    try:
        with pyro.validation_enabled(False):  # as pyro.infer.MCMC does
            return _drive(analysis, chain, seed, s, state_path)
    finally:
        torch.set_num_threads(threads)


def _drive(analysis, chain, seed, s, state_path) -> dict:
    from tqdm.auto import tqdm

    warmup, n_draws = s["warmup"], s["draws"]
    meta = {"seed": int(seed), "chain": int(chain), "warmup_steps": int(warmup), "num_draws": int(n_draws),
            "dense_mass": bool(s["dense_mass"]), "init": s["init"]}
    state = load_chain_state(state_path) if state_path is not None else None
    if state is not None and any(state["info"].get(k) != v for k, v in meta.items()):
        state = None  # a state from other settings: start afresh
    start = _laplace_start(analysis, seed) if s["init"] == "laplace" and state is None else None
    pyro.set_rng_seed(seed)
    kernel = NUTS(
        analysis.model,
        jit_compile=s["jit"],
        ignore_jit_warnings=True,
        target_accept_prob=s["target_accept"],
        max_tree_depth=s["max_tree_depth"],
        full_mass=s["dense_mass"],
        **({"init_strategy": init_to_value(values=start[0])} if start else {}),
    )
    bar = tqdm(total=warmup + n_draws, desc=f"chain {chain}", disable=not s["progress"], leave=False)
    if state is not None:
        kernel.initial_params = {k.split("/", 1)[1]: torch.as_tensor(v, dtype=analysis.dtype) for k, v in state["arrays"].items() if k.startswith("param/")}
        kernel.setup(warmup)
        params, draws = restore_kernel(kernel, state, analysis.dtype)
        resumed_at = int(state["info"]["n_draws"])
        bar.update(warmup + resumed_at)
    else:
        kernel.setup(warmup)
        if start and start[1] is not None:
            _set_inverse_mass(kernel, analysis.parameter_names, start[1])
        params = kernel.initial_params
        for _ in range(warmup):
            params = kernel.sample(params)
            bar.update()
        draws = {}
        resumed_at = -1
        if state_path is not None:
            save_chain_state(state_path, kernel, params, draws, meta)
    names = list(params)
    transforms = kernel.transforms or {}
    last = time.monotonic()
    for _ in range(len(draws.get("__diverging", [])), n_draws):
        n_div = len(kernel._divergences)
        params = kernel.sample(params)
        for name in names:
            u = params[name]
            x = transforms[name].inv(u) if name in transforms else u
            draws.setdefault(name, []).append(x.detach().numpy())
        draws.setdefault("__diverging", []).append(np.asarray(len(kernel._divergences) > n_div))
        bar.update()
        if state_path is not None and time.monotonic() - last >= _checkpoint_seconds():
            save_chain_state(state_path, kernel, params, draws, meta)
            last = time.monotonic()
    bar.close()
    out = {name: np.stack(draws[name]) for name in names}
    out["__diverging"] = np.stack(draws["__diverging"]).astype(bool)
    out["__step_size"] = np.full(n_draws, float(kernel.step_size))
    out["resumed_at"] = resumed_at  # draw index where an interrupted chain was continued, -1 if it was not
    kernel.cleanup()
    return out


def _laplace_start(analysis, seed: int):
    """``(values, cov)``: a start drawn from the Laplace approximation at the MAP (so that chains start dispersed,
    as R-hat needs, but inside the bulk) and its covariance in the unconstrained space, the first inverse mass
    matrix. None when no MAP is found; ``cov`` None when the Hessian there is not positive definite (the chain then
    starts at the MAP with Pyro's unit mass matrix)."""
    try:
        u0, cov = analysis.laplace(seed=seed)
    except (RuntimeError, ValueError):  # a failed MAP search: fall back to Pyro's default start
        return None
    if not bool(torch.isfinite(u0).all()):
        return None
    u = u0
    if cov is not None:
        g = torch.Generator().manual_seed(int(seed) % (2**63))
        u = u0 + torch.linalg.cholesky(cov) @ torch.randn(u0.shape[-1], generator=g, dtype=u0.dtype)
    values, _ = analysis.constrain(u)
    return {k: v.detach() for k, v in values.items()}, cov


def _set_inverse_mass(kernel, names, cov) -> None:
    """Put the Laplace covariance in as the kernel's inverse mass matrix (dense, or its diagonal)."""
    imm = {}
    for sites, old in kernel.inverse_mass_matrix.items():
        idx = [names.index(n) for n in sites]
        block = cov[np.ix_(idx, idx)].to(old.dtype)
        imm[sites] = block if old.dim() == 2 else torch.diagonal(block).clone()
    kernel.mass_matrix_adapter.inverse_mass_matrix = imm


# old name, kept for code that imported it
_run_chain = run_chain


@dataclasses.dataclass(frozen=True)
class NUTSSettings(Settings):
    """Pyro NUTS, one chain per task (processes or a Dask cluster)."""

    chains: int = setting(4, int, minimum=1, doc="independent chains")
    warmup: int = setting(500, int, minimum=0, doc="adaptation iterations per chain")
    draws: int = setting(1000, int, minimum=1, doc="kept draws per chain")
    jit: bool = setting(True, bool, doc="Pyro's JIT of the potential")
    parallel: bool = setting(True, bool, doc="chains in parallel processes")
    target_accept: float = setting(0.8, float, above=0, below=1, doc="dual-averaging target acceptance")
    max_tree_depth: int = setting(10, int, minimum=1)
    dense_mass: bool = setting(True, bool, doc="dense mass matrix")
    init: str = setting("laplace", str, choices=("laplace", "prior"), doc="chain starts")


@METHODS.register("nuts")
class NUTSMethod(Method):
    name = "nuts"
    Settings = NUTSSettings

    def _run(self, analysis, **s):
        seeds = chain_seeds(s["seed"], s["chains"])
        ex = dict(getattr(self, "execution", None) or {})
        ckpt = ex.get("checkpoint_dir")
        keys = [f"nuts-chain-{c:03d}" for c in range(s["chains"])]
        states = [str(Path(ckpt) / f"{k}.state.npz") if ckpt else None for k in keys]
        tasks = [(analysis, c, seeds[c], s, states[c]) for c in range(s["chains"])]
        workers = min(s["chains"], default_workers()) if s["parallel"] else 1
        results = map_tasks(run_chain, tasks, keys=keys, workers=workers, **ex)
        names = analysis.parameter_names
        samples = {n: np.stack([r[n] for r in results]) for n in names}
        stats = {
            "diverging": np.stack([r["__diverging"] for r in results]),
            "step_size": np.stack([r["__step_size"] for r in results]),
        }
        resumed = [int(r.get("resumed_at", -1)) for r in results]
        extra = {"resumed_at": resumed} if any(r >= 0 for r in resumed) else None
        return build_posterior(analysis, samples, method=self.name, settings=s, sample_stats=stats, extra_attrs=extra)
