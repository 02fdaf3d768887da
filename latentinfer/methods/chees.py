"""ChEES-HMC: many chains in lockstep, one batched log-density call per leapfrog step (method ``chees``).

Hoffman, Radul & Sountsov (2021), "An adaptive MCMC scheme for setting trajectory lengths in Hamiltonian Monte Carlo"
(AISTATS). All chains share a step size, a dense metric and a trajectory length, adapted from all chains at once:

- **Start where the posterior is.** Each group's chains start at draws from its Laplace approximation (MAP and inverse
  Hessian in the unconstrained space, :func:`batched_laplace`), whose covariance is the metric from the first step.
- **Step size**: dual averaging (Hoffman & Gelman 2014) of the chains' mean acceptance probability to ``target_accept``.
- **Trajectory length** ``T``: Adam ascent on ``log T`` of the ChEES criterion (the change of the squared distance from
  the chains' centre, weighted by acceptance), with Halton-jittered lengths ``t = h_i T``, ``h_i`` in (0, 1).
- **Metric**: re-estimated from the pooled draws of all chains at the end of every window (``WINDOW`` iterations),
  shrunk towards the previous one.
- **Warmup stops when adapted**, not after a fixed count: after a window in which the metric changed by less than
  ``METRIC_TOL`` (largest |log eigenvalue| of new against old), the dual-averaged step size and the trajectory length
  by less than ``STEP_TOL`` and ``LENGTH_TOL`` in log, and the window's split R-hat is below ``RHAT_TOL`` on every
  parameter; ``warmup`` is the most it may take.

Groups: the chains form ``G`` independent groups of ``K`` (``(G, K, n)``), each group with its own target (one data
set per group in a coverage study: ``data={likelihood: (G, n_data)}``) and its own step size, metric and length;
groups whose trajectory is shorter are masked while the longest one finishes. One posterior is ``G = 1``.

Sample stats per draw: ``diverging`` (energy error > 1000 or not finite), ``acceptance_rate``, ``step_size``,
``n_steps`` (leapfrog steps, the counterpart of NUTS' tree size), ``energy``. Checkpoints (npz, no pickle) after
warmup and every ``$LATENTINFER_CHECKPOINT_SECONDS`` of sampling; a resumed run draws the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LatentInferError
from ..posterior import build_posterior
from ..program.laplace import batched_laplace  # noqa: F401  (re-exported: old import path)
from .base import METHODS, Method, Settings, setting
from .chain_state import checkpoint_seconds, load_chain_state, write_state
from ..program import LogDensity

__all__ = ["ChEESMethod", "OnePerGroup", "batched_laplace", "run_chees", "sample_groups", "WINDOW"]

WINDOW = 25
METRIC_TOL = 0.35
STEP_TOL = 0.15
LENGTH_TOL = 0.25
RHAT_TOL = 1.1
MAX_STEPS = 256
_DTYPES = {"float64": torch.float64, "float32": torch.float32}  # the setting precision
_STATE_VERSION = 1


def _halton(i: int, base: int = 2) -> float:
    """The ``i``-th (1-based) van der Corput number in (0, 1)."""
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r


def _split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split R-hat (Gelman et al.) of ``(K, S, n)`` draws per parameter (no rank normalisation: a warmup check)."""
    K, S, n = draws.shape
    h = S // 2
    if h < 2:
        return np.full(n, np.inf)
    x = np.concatenate([draws[:, :h], draws[:, h : 2 * h]], 0)  # (2K, h, n)
    means = x.mean(1)
    W = x.var(1, ddof=1).mean(0)
    B = h * means.var(0, ddof=1)
    var = (h - 1) / h * W + B / h
    return np.sqrt(var / np.maximum(W, 1e-300))


class _Sampler:
    """The state of ``G x K`` chains and their adaptation; see the module docstring."""

    def __init__(self, value_and_grad, G: int, K: int, n: int, dtype, generator: torch.Generator, target_accept: float):
        self.vg, self.G, self.K, self.n, self.dtype, self.gen = value_and_grad, G, K, n, dtype, generator
        self.target = float(target_accept)

    # -- geometry ------------------------------------------------------------------------------------------------
    def set_metric(self, mu: torch.Tensor, cov: torch.Tensor) -> None:
        """Whitened coordinates ``x = mu + L y`` with ``cov = L L^T`` per group: the metric is ``cov``."""
        self.mu = mu.clone()
        jitter = 1e-12 * torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1)[:, None, None] * torch.eye(self.n, dtype=self.dtype)
        self.cov = cov.clone()
        self.L = torch.linalg.cholesky(cov + jitter)

    def to_x(self, y):
        return self.mu[:, None, :] + y @ self.L.transpose(-1, -2)

    def to_y(self, x):
        return torch.linalg.solve_triangular(self.L, (x - self.mu[:, None, :]).transpose(-1, -2), upper=False).transpose(-1, -2)

    def potential(self, y):
        """``(lp (G, K), grad_y (G, K, n))`` at whitened ``y``."""
        x = self.to_x(y)
        lp, g = self.vg(x)
        bad = ~torch.isfinite(lp) | ~torch.isfinite(g).all(-1)
        lp = torch.where(bad, torch.full_like(lp, -math.inf), lp)
        g = torch.where(bad[..., None], torch.zeros_like(g), g)
        return lp, g @ self.L  # grad_y = L^T grad_x (row vectors)

    # -- one transition ------------------------------------------------------------------------------------------
    def leapfrog(self, y, p, g, e):
        """One leapfrog step of size ``e (G, 1, 1)`` from ``(y, p, grad)``; returns ``(y, p, lp, grad)`` at its end."""
        ph = p + 0.5 * e * g
        yn = y + e * ph
        lpn, gn = self.potential(yn)
        return yn, ph + 0.5 * e * gn, lpn, gn

    def transition(self, y, lp, g, eps, n_steps):
        """One HMC transition of every chain: group ``g`` takes ``n_steps[g]`` leapfrog steps of size ``eps[g]``.

        Returns the new state, the proposal and its end momentum (for ChEES), acceptance probabilities, divergences
        and the energy."""
        p0 = torch.randn(y.shape, generator=self.gen, dtype=self.dtype)
        h0 = -lp + 0.5 * (p0 * p0).sum(-1)
        e = eps[:, None, None]
        yq, pq, gq, lpq = y, p0, g, lp
        for j in range(int(n_steps.max())):
            active = (j < n_steps)[:, None, None]
            yn, pn, lpn, gn = self.leapfrog(yq, pq, gq, e)
            yq = torch.where(active, yn, yq)
            pq = torch.where(active, pn, pq)
            gq = torch.where(active, gn, gq)
            lpq = torch.where(active[..., 0], lpn, lpq)
        h1 = -lpq + 0.5 * (pq * pq).sum(-1)
        dh = _energy_error(h0, h1)
        accept_prob = torch.exp(torch.clamp(-dh, max=0.0))
        diverging = dh > 1000.0
        u = torch.rand(accept_prob.shape, generator=self.gen, dtype=self.dtype)
        acc = u < accept_prob
        y_new = torch.where(acc[..., None], yq, y)
        lp_new = torch.where(acc, lpq, lp)
        g_new = torch.where(acc[..., None], gq, g)
        energy = torch.where(acc, h1, h0)
        return y_new, lp_new, g_new, yq, pq, accept_prob, diverging, energy


def _energy_error(h0: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
    """``h1 - h0``, infinite where it is not finite (a proposal that left the support is never accepted)."""
    dh = h1 - h0
    return torch.where(torch.isfinite(dh), dh, torch.full_like(dh, math.inf))


def _chees_gradient(y0, yq, pq, accept_prob, t):
    """Gradient of the ChEES criterion with respect to ``log T`` per group (Hoffman et al. 2021, eq. 6)."""
    w = accept_prob
    ok = torch.isfinite(yq).all(-1) & torch.isfinite(pq).all(-1)
    w = torch.where(ok, w, torch.zeros_like(w))
    yq = torch.where(ok[..., None], yq, y0)
    c0 = y0 - y0.mean(1, keepdim=True)
    cq = yq - yq.mean(1, keepdim=True)
    diff = (cq * cq).sum(-1) - (c0 * c0).sum(-1)
    grad = t[:, None] * diff * (cq * pq).sum(-1)
    return (w * grad).sum(1) / w.sum(1).clamp_min(1e-12)


def _initial_step(sampler, y, lp, g) -> torch.Tensor:
    """Per group, double or halve the step until one leapfrog step's mean acceptance crosses 1/2 (Stan's heuristic)."""
    eps = torch.ones(sampler.G, dtype=sampler.dtype)
    direction = None
    for _ in range(30):
        p = torch.randn(y.shape, generator=sampler.gen, dtype=sampler.dtype)
        _, pn, lpn, _ = sampler.leapfrog(y, p, g, eps[:, None, None])
        dh = _energy_error(-lp + 0.5 * (p * p).sum(-1), -lpn + 0.5 * (pn * pn).sum(-1))
        a = torch.exp(torch.clamp(-dh, max=0.0)).mean(1)
        d = torch.where(a > 0.5, 1.0, -1.0)
        if direction is None:
            direction = d
        done = d != direction
        if bool(done.all()):
            break
        eps = torch.where(done, eps, eps * torch.pow(torch.tensor(2.0, dtype=sampler.dtype), direction))
        eps = eps.clamp(1e-6, 1e3)
    return eps


class _DualAveraging:
    """Nesterov dual averaging of ``log eps`` per group (Hoffman & Gelman 2014), vectorised."""

    def __init__(self, eps: torch.Tensor, target: float):
        self.restart(eps)
        self.target = target

    def restart(self, eps):
        self.mu = torch.log(10 * eps)
        self.hbar = torch.zeros_like(eps)
        self.log_eps = torch.log(eps)
        self.log_eps_bar = torch.log(eps)
        self.t = 0

    def update(self, accept: torch.Tensor):
        self.t += 1
        t, t0, gamma, kappa = self.t, 10.0, 0.05, 0.75
        self.hbar = (1 - 1 / (t + t0)) * self.hbar + (self.target - accept) / (t + t0)
        self.log_eps = self.mu - math.sqrt(t) / gamma * self.hbar
        w = t ** (-kappa)
        self.log_eps_bar = w * self.log_eps + (1 - w) * self.log_eps_bar


class _Adam:
    """Adam ascent on ``log T`` per group with the ChEES paper's settings (rate 0.025, beta1 0, beta2 0.95)."""

    def __init__(self, log_t: torch.Tensor, rate: float = 0.025, beta2: float = 0.95):
        self.log_t, self.rate, self.beta2 = log_t.clone(), rate, beta2
        self.v = torch.zeros_like(log_t)
        self.t = 0

    def update(self, grad: torch.Tensor, log_t_max: torch.Tensor):
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        self.t += 1
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        vhat = self.v / (1 - self.beta2**self.t)
        self.log_t = torch.minimum(self.log_t + self.rate * grad / (torch.sqrt(vhat) + 1e-8), log_t_max)


def _steps(t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Leapfrog steps per group. In lockstep every group waits for the longest, so with many groups one whose step
    has collapsed (a poor start) is capped at 3x the median group's steps (at least 4): its trajectory is shorter,
    which is still a valid HMC move, instead of making every group pay for it."""
    n = torch.clamp(torch.ceil(t / eps), 1, MAX_STEPS)
    if n.numel() >= 10:
        n = torch.clamp(n, max=max(4.0, 3.0 * float(n.median())))
    return n.to(torch.int64)


def run_chees(
    value_and_grad,
    u_start: torch.Tensor,
    cov_start: torch.Tensor,
    *,
    warmup: int,
    draws: int,
    seed: int,
    target_accept: float = 0.8,
    state_path: str | os.PathLike | None = None,
    progress: bool = False,
    min_warmup: int = 2 * WINDOW,
) -> dict[str, Any]:
    """Run ChEES-HMC on ``G`` groups of ``K`` chains.

    ``value_and_grad(u (G, K, n)) -> (lp (G, K), grad (G, K, n))``; ``u_start (G, K, n)`` starting points,
    ``cov_start (G, n, n)`` the first metric. Returns ``{"u": (G, K, draws, n), stats...: (G, K, draws),
    "warmup_iterations": int, "step_size": (G,), "trajectory_length": (G,), "adapted": bool (every group),
    "adapted_groups": (G,), "resumed_at": int}``.
    """
    from tqdm.auto import tqdm

    G, K, n = u_start.shape
    dtype = u_start.dtype
    if K < 2:
        raise ConfigError(f"chees: needs at least 2 chains per target, got {K}")
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    s = _Sampler(value_and_grad, G, K, n, dtype, gen, target_accept)
    meta = {"G": G, "K": K, "n": n, "warmup": int(warmup), "draws": int(draws), "seed": int(seed), "target_accept": float(target_accept)}
    state = _load_state(state_path, meta) if state_path is not None else None
    bar = tqdm(total=warmup + draws, desc="chees", disable=not progress, leave=False)
    if state is None:
        s.set_metric(u_start.mean(1), cov_start)
        y = s.to_y(u_start)
        lp, g = s.potential(y)
        if not bool(torch.isfinite(lp).all()):
            bad = torch.nonzero(~torch.isfinite(lp))[0].tolist()
            raise LatentInferError(f"chees: the log density is not finite at the start of chain {bad[1]} of target {bad[0]} (check priors, data and model)")
        warm = _warmup(s, y, lp, g, warmup, min_warmup, bar)
        y, lp, g, eps, T, n_warm, adapted_groups = warm
        adapted = adapted_groups.numpy()
        out = {k: [] for k in ("u", "diverging", "acceptance_rate", "n_steps", "energy")}
        start_draw = 0
        resumed_at = -1
        if state_path is not None:
            _save_state(state_path, s, y, eps, T, out, meta, n_warm, adapted)
    else:
        y, eps, T, out, n_warm, adapted = _restore_state(s, state)
        lp, g = s.potential(y)
        start_draw = len(out["u"])
        resumed_at = start_draw
        bar.update(warmup + start_draw)
    last = time.monotonic()
    for i in range(start_draw, draws):
        t = torch.full((G,), _halton(i + 1), dtype=dtype) * T
        ns = _steps(t, eps)
        y, lp, g, _, _, a, div, energy = s.transition(y, lp, g, eps, ns)
        out["u"].append(s.to_x(y).numpy())
        out["diverging"].append(div.numpy())
        out["acceptance_rate"].append(a.numpy())
        out["n_steps"].append(np.broadcast_to(ns.numpy()[:, None], (G, K)).copy())
        out["energy"].append(energy.numpy())
        bar.update()
        if state_path is not None and time.monotonic() - last >= checkpoint_seconds():
            _save_state(state_path, s, y, eps, T, out, meta, n_warm, adapted)
            last = time.monotonic()
    bar.close()
    res = {k: np.stack(v, 2) for k, v in out.items()}  # (G, K, draws, ...)
    res.update(warmup_iterations=n_warm, step_size=eps.numpy(), trajectory_length=T.numpy(), adapted=bool(np.all(adapted)),
               adapted_groups=np.asarray(adapted, dtype=bool),
               resumed_at=resumed_at, metric=s.cov.numpy())
    return res


def _warmup(s: _Sampler, y, lp, g, warmup: int, min_warmup: int, bar):
    """Adapt step size, trajectory length and metric; stop when adapted (module docstring) or after ``warmup``.

    Each group stops adapting at the first window end where it passes every check (its step size, length and
    metric are then frozen) and keeps moving with them while the other groups adapt; warmup ends when all have."""
    G, K, n, dtype = s.G, s.K, s.n, s.dtype
    eps0 = _initial_step(s, y, lp, g) if warmup > 0 else torch.ones(G, dtype=dtype)
    da = _DualAveraging(eps0, s.target)
    adam = _Adam(torch.zeros(G, dtype=dtype))  # T = 1: a quarter period of a unit-variance direction, ~pi/2
    log_t_max = torch.full((G,), math.log(MAX_STEPS), dtype=dtype)
    done = torch.zeros(G, dtype=torch.bool)
    eps_done = torch.ones(G, dtype=dtype)
    logt_done = torch.zeros(G, dtype=dtype)
    window_x, window_logt = [], []
    prev, last_window = None, None
    grace = None
    i = 0
    while i < warmup:
        eps = torch.where(done, eps_done, torch.exp(da.log_eps))
        log_t = torch.where(done, logt_done, adam.log_t)
        t = torch.full((G,), _halton(i + 1), dtype=dtype) * torch.exp(log_t)
        ns = _steps(t, eps)
        y0 = y
        y, lp, g, yq, pq, a, div, _ = s.transition(y, lp, g, eps, ns)
        da.update(a.mean(1))
        grad = _chees_gradient(y0, yq, pq, a, t)
        if G > 1:  # one trajectory length (in whitened units) for all groups: pooled signal, equal lockstep lengths
            live = ~done
            grad = torch.where(live, grad[live].mean() if bool(live.any()) else grad.mean(), grad)
        adam.update(grad, log_t_max + da.log_eps_bar)
        window_x.append(s.to_x(y))
        window_logt.append(adam.log_t)
        i += 1
        bar.update()
        if i % WINDOW == 0 and i < warmup:
            xs = torch.stack(window_x, 2)  # (G, K, W, n)
            log_t_bar = torch.stack(window_logt).mean(0)
            tol = _metric_tolerance(s, xs)
            change = _update_metric(s, xs, ~done)
            y = s.to_y(window_x[-1])
            lp, g = s.potential(y)
            both = torch.cat([last_window, xs], 2) if last_window is not None else xs
            rhat = np.stack([_split_rhat(both[gi].numpy()) for gi in range(G)])
            last_window = xs
            now = (da.log_eps_bar.clone(), log_t_bar)
            if prev is not None and i >= min_warmup:
                ok = (change < tol) & ((now[0] - prev[0]).abs() < STEP_TOL) & ((now[1] - prev[1]).abs() < LENGTH_TOL)
                ok = ok & torch.as_tensor((rhat < RHAT_TOL).all(-1)) & ~done
                eps_done = torch.where(ok, torch.exp(now[0]), eps_done)
                logt_done = torch.where(ok, now[1], logt_done)
                done = done | ok
                if bool(done.all()):
                    break
                # many groups: once 90 % are adapted, the rest get one more window, then warmup ends for all (each
                # group's "adapted" flag is returned; a straggler's draws are still valid MCMC with its last settings)
                if G >= 10 and float(done.float().mean()) >= 0.9:
                    grace = i + WINDOW if grace is None else grace
                    if i >= grace:
                        break
            prev = now
            # the new metric changes the whitened scale: restart the step size search around the averaged step
            da.restart(torch.exp(da.log_eps_bar))
            window_x, window_logt = [], []
    bar.update(max(warmup - i, 0))
    log_t = torch.stack(window_logt).mean(0) if window_logt else adam.log_t
    eps = torch.where(done, eps_done, torch.exp(da.log_eps_bar))
    T = torch.exp(torch.where(done, logt_done, log_t))
    return y, lp, g, eps, T, i, done


def _metric_tolerance(s: _Sampler, xs: torch.Tensor) -> torch.Tensor:
    """How far a window's covariance estimate strays by chance, per group: ``max(METRIC_TOL, 3 sqrt(n / N_eff))``,
    the scale of the largest |log eigenvalue| of a sample covariance of ``N_eff`` independent draws in ``n``
    dimensions. ``N_eff`` is the window's effective size from the spread of the chains' window means (in the
    whitened coordinates, where every direction has unit variance): ``N_eff = K W / tau`` with
    ``tau = W var(chain means) / mean(within-chain variance)``, the worst direction."""
    G, K, W, n = xs.shape
    ys = s.to_y(xs.reshape(G, K * W, n)).reshape(G, K, W, n)
    within = ys.var(2, unbiased=True).mean(1)  # (G, n)
    between = W * ys.mean(2).var(1, unbiased=True)  # (G, n)
    tau = torch.clamp(between / within.clamp_min(1e-300), min=1.0).max(-1).values
    n_eff = K * W / tau
    return torch.clamp(3.0 * torch.sqrt(n / n_eff), min=METRIC_TOL)


def _update_metric(s: _Sampler, xs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Re-estimate each group's covariance from its window ``(G, K, W, n)`` of draws, shrunk towards the old metric
    (in the old whitened coordinates: ``(N S + 5 I) / (N + 5)``); returns the largest |log eigenvalue| of the
    change per group."""
    G, K, W, n = xs.shape
    N = K * W
    ys = s.to_y(xs.reshape(G, K * W, n))
    c = ys - ys.mean(1, keepdim=True)
    S = c.transpose(-1, -2) @ c / max(N - 1, 1)
    S = (N * S + 5 * torch.eye(n, dtype=xs.dtype)) / (N + 5)
    S = 0.5 * (S + S.transpose(-1, -2))
    ev = torch.linalg.eigvalsh(S)
    change = torch.log(ev).abs().max(-1).values
    cov = s.L @ S @ s.L.transpose(-1, -2)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    mu = xs.reshape(G, K * W, n).mean(1)
    if mask is not None:  # groups already adapted keep their metric
        cov = torch.where(mask[:, None, None], cov, s.cov)
        mu = torch.where(mask[:, None], mu, s.mu)
    s.set_metric(mu, cov)
    return change


# -- checkpoints (npz, no pickle) ---------------------------------------------------------------------------------
def _save_state(path, s: _Sampler, y, eps, T, out, meta, n_warm, adapted) -> None:
    arrays = {"y": y.numpy(), "mu": s.mu.numpy(), "cov": s.cov.numpy(), "eps": eps.numpy(), "T": T.numpy(),
              "rng": s.gen.get_state().numpy(), "adapted": np.asarray(adapted, dtype=bool)}
    for k, v in out.items():
        arrays[f"out/{k}"] = np.stack(v, 0) if v else np.zeros((0,))
    write_state(path, arrays, {"version": _STATE_VERSION, **meta, "n_draws": len(out["u"]), "warmup_iterations": int(n_warm)})


def _load_state(path, meta):
    """The saved state (``{"info", "arrays"}``), or None when there is none, it is unreadable or from other settings."""
    state = load_chain_state(path)  # same npz layout and version field as NUTS' chain states
    if state is None or state["info"].get("version") != _STATE_VERSION or any(state["info"].get(k) != v for k, v in meta.items()):
        return None
    return state


def _restore_state(s: _Sampler, state):
    a, info = state["arrays"], state["info"]
    t = lambda k: torch.as_tensor(a[k], dtype=s.dtype)  # noqa: E731
    s.set_metric(t("mu"), t("cov"))
    s.gen.set_state(torch.as_tensor(a["rng"], dtype=torch.uint8))
    y = t("y")
    out = {k.split("/", 1)[1]: list(a[k]) if a[k].ndim > 1 else [] for k in a if k.startswith("out/")}
    return y, t("eps"), t("T"), out, int(info["warmup_iterations"]), np.asarray(a["adapted"], dtype=bool)


@dataclasses.dataclass(frozen=True)
class ChEESSettings(Settings):
    """ChEES-HMC: chains as a batch dimension (see the module docstring)."""

    chains: int = setting(32, int, minimum=1, doc="chains advanced together (>= 2: they adapt together)")
    warmup: int = setting(1000, int, minimum=0, doc="cap on warmup iterations (warmup stops when adapted)")
    draws: int = setting(300, int, minimum=1, doc="kept draws per chain")
    target_accept: float = setting(0.8, float, above=0, below=1)
    init: str = setting("laplace", str, choices=("laplace", "prior"))
    precision: str = setting("float64", str, choices=("float64", "float32"), doc="float32: expansion + likelihoods")
    gradient: str = setting("handwritten", str, choices=("handwritten", "autograd"),
                            doc="log-density gradient: the hand-written backward (pieces it does not know use autograd) "
                                "or torch autograd throughout; same numbers to rounding")

    def validate(self, where: str) -> None:
        if self.chains < 2:
            raise ConfigError(f"{where}: key 'chains' must be >= 2 for method chees (chains adapt together), got {self.chains}")


@METHODS.register("chees")
class ChEESMethod(Method):
    """Registered as ``chees``: see the module docstring."""

    name = "chees"
    Settings = ChEESSettings

    def _run(self, analysis, **s):

        if s["chains"] < 2:
            raise ConfigError(f"inference method 'chees': key 'chains' must be >= 2, got {s['chains']}")
        dtype = _DTYPES[s["precision"]]
        ld = LogDensity(analysis, dtype=dtype, backend=s["gradient"])
        threads = torch.get_num_threads()
        # small batches: one thread is as fast and does not spin against other processes (same arithmetic as NUTS)
        torch.set_num_threads(1)
        try:
            u0, cov = _start(analysis, ld, s["chains"], s["seed"], s["init"])
            ckpt = (getattr(self, "execution", None) or {}).get("checkpoint_dir")
            state = str(Path(ckpt) / "chees.state.npz") if ckpt else None
            if state:
                Path(ckpt).mkdir(parents=True, exist_ok=True)
            res = run_chees(ld.value_and_grad, u0[None], cov[None], warmup=s["warmup"], draws=s["draws"], seed=s["seed"],
                            target_accept=s["target_accept"], state_path=state, progress=s["progress"])
        finally:
            torch.set_num_threads(threads)
        u = torch.as_tensor(res["u"][0], dtype=analysis.dtype)  # (K, draws, n)
        with torch.no_grad():
            xs, _ = ld.constrain(u)
        samples = {name: x.numpy() for name, x in zip(ld.names, xs)}
        stats = {k: res[k][0] for k in ("diverging", "acceptance_rate", "n_steps", "energy")}
        stats["step_size"] = np.full(stats["n_steps"].shape, float(res["step_size"][0]))
        extra = {"warmup_iterations": int(res["warmup_iterations"]), "adapted": bool(res["adapted"]),
                 "trajectory_length": float(res["trajectory_length"][0]), "gradient_backend": ld.describe_backend()}
        if res["resumed_at"] >= 0:
            extra["resumed_at"] = [int(res["resumed_at"])]
        ld64 = ld if ld.dtype == analysis.dtype else LogDensity(analysis)
        return build_posterior(analysis, samples, method=self.name, settings=s, sample_stats=stats, extra_attrs=extra,
                               log_density=ld64)


def _start(analysis, ld, chains: int, seed: int, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u (K, n), cov (n, n))``: chains drawn from the Laplace approximation and its covariance, or (``init:
    prior``) from the prior with the identity as first metric."""
    n = ld.n
    draws = analysis.sample_prior(chains, seed=seed)
    u_prior = analysis.unconstrain({k: draws[k] for k in ld.names}, ld.transforms).detach().reshape(chains, n)
    if init == "prior":
        return u_prior, torch.eye(n, dtype=analysis.dtype)
    u_map, cov, ok = batched_laplace(ld, u_prior[:1])
    if not bool(ok[0]):
        return u_map[0] + 1e-3 * torch.randn(chains, n, generator=torch.Generator().manual_seed(seed), dtype=analysis.dtype), cov[0]
    g = torch.Generator().manual_seed(int(seed) % (2**63))
    Lc = torch.linalg.cholesky(cov[0])
    u = u_map[0] + torch.randn(chains, n, generator=g, dtype=analysis.dtype) @ Lc.T
    return u, cov[0]


class OnePerGroup:
    """A :class:`~latentinfer.program.LogDensity` whose data carry a group axis ``(G, 1, n_data)``, seen at one point
    per group, ``u (G, n)`` (what :func:`batched_laplace` evaluates)."""

    def __init__(self, ld):
        self.ld = ld

    def __call__(self, u):
        return self.ld(u[:, None, :])[:, 0]

    def value_and_grad(self, u):
        lp, g = self.ld.value_and_grad(u[:, None, :])
        return lp[:, 0], g[:, 0]


def sample_groups(analysis, data, *, chains: int = 4, warmup: int = 1000, draws: int = 100, seed: int = 0,
                  target_accept: float = 0.8, precision: str = "float64", state_path=None,
                  gradient: str = "handwritten") -> dict[str, Any]:
    """ChEES-HMC on ``G`` data sets at once: ``data = {likelihood: (G, n_data)}``; ``chains`` chains per data set.

    Each data set is its own group: its own Laplace start and metric (one batched L-BFGS from a prior draw per data
    set), step size and trajectory length. Returns :func:`run_chees`'s record plus ``"names"``, ``"constrained"``
    ``(G, K, draws, n)`` and ``"log_target"`` ``(G, K, draws)``, the program's log posterior (unnormalised, constrained
    space) of each draw under its own data set, and a callable ``"log_target_at"`` for other points ``(G, ..., n)``.
    """

    data = {k: torch.as_tensor(v, dtype=analysis.dtype) for k, v in data.items()}
    G = int(next(iter(data.values())).shape[0])
    if chains < 2:
        raise ConfigError(f"chees: needs at least 2 chains per data set, got {chains}")
    dtype = _DTYPES[precision]
    grouped = {k: v[:, None, :] for k, v in data.items()}  # (G, 1, n_data): broadcasts over each group's points
    ld = LogDensity(analysis, dtype=dtype, data=grouped, backend=gradient)
    ld64 = ld if dtype == analysis.dtype else LogDensity(analysis, data=grouped)
    draws0 = analysis.sample_prior(G, seed=seed)
    u0 = analysis.unconstrain({k: draws0[k] for k in ld.names}, ld.transforms).detach().reshape(G, ld.n)
    u_map, cov, ok = batched_laplace(OnePerGroup(ld), u0)
    if bool(ok.any()) and not bool(ok.all()):  # no usable Hessian: borrow the other data sets' mean covariance
        cov = torch.where(ok[:, None, None], cov, cov[ok].mean(0))
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    Lc = torch.linalg.cholesky(cov)
    u_start = u_map[:, None, :] + torch.randn(G, chains, ld.n, generator=gen, dtype=analysis.dtype) @ Lc.transpose(-1, -2)
    res = run_chees(ld.value_and_grad, u_start, cov, warmup=warmup, draws=draws, seed=seed, target_accept=target_accept,
                    state_path=state_path)

    def log_target_at(values: np.ndarray) -> np.ndarray:
        """Log posterior (constrained space) of ``values (G, ..., n)`` under each group's data, in float64."""
        v = torch.as_tensor(values, dtype=analysis.dtype)
        flat = v.reshape(G, -1, v.shape[-1])  # (G, m, n): the layout the data broadcast over
        cols = [flat[..., i] for i in range(flat.shape[-1])]
        with torch.no_grad():
            return ld64.log_joint(cols, flat.shape[:-1]).reshape(v.shape[:-1]).numpy()

    u = torch.as_tensor(res["u"], dtype=analysis.dtype)
    with torch.no_grad():
        xs, _ = ld64.constrain(u)
    res["constrained"] = torch.stack(xs, -1).numpy()
    res["log_target"] = log_target_at(res["constrained"])
    res["names"] = list(ld.names)
    res["laplace_ok"] = ok.numpy()
    res["gradient_backend"] = ld.describe_backend()
    res["log_target_at"] = log_target_at
    return res
