"""MAP and Laplace approximations of many targets at once (the start and first metric of the batched samplers).

:meth:`Program.find_map` and :meth:`Program.laplace` do the same for one program through Pyro; this works on any
batched log density, e.g. :class:`~latentinfer.program.LogDensity` with data sets as a batch dimension.
"""

from __future__ import annotations

import torch

__all__ = ["batched_laplace"]


def batched_laplace(log_density, u0: torch.Tensor, *, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAP and Laplace covariance of ``G`` independent targets at once.

    ``log_density(u (G, n)) -> lp (G,)`` differentiable (e.g. a :class:`~latentinfer.program.LogDensity`); ``u0 (G, n)``
    starting points. The targets are independent,
    so the sum of their negative log densities is separable: one L-BFGS run minimises all, and ``n`` gradient passes
    of ``sum_g d lp_g / d u_j`` give every group's Hessian (block diagonal). Returns ``(u_map (G, n), cov (G, n, n),
    ok (G,))``; ``ok`` is False where the Hessian is not positive definite or the MAP not finite (their ``cov`` is
    the identity).
    """
    u = u0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([u], max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        lp, g = log_density.value_and_grad(u.detach())
        lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -1e30))
        u.grad = torch.where(torch.isfinite(g), -g, torch.zeros_like(g))
        return -lp.sum()

    opt.step(closure)
    u_map = u.detach()
    G, n = u_map.shape
    H = torch.empty(G, n, n, dtype=u_map.dtype)
    x = u_map.clone().requires_grad_(True)
    with torch.enable_grad():
        lp = log_density(x)
        (g,) = torch.autograd.grad(lp.sum(), x, create_graph=True)
        for j in range(n):
            (h,) = torch.autograd.grad(g[:, j].sum(), x, retain_graph=j < n - 1)
            H[:, j, :] = -h
    H = 0.5 * (H + H.transpose(-1, -2))
    evals, evecs = torch.linalg.eigh(H)
    ok = (evals > 0).all(-1) & torch.isfinite(u_map).all(-1) & torch.isfinite(evals).all(-1)
    safe = torch.where(ok[:, None], evals, torch.ones_like(evals))
    cov = (evecs / safe[:, None, :]) @ evecs.transpose(-1, -2)
    eye = torch.eye(n, dtype=u_map.dtype).expand(G, n, n)
    cov = torch.where(ok[:, None, None], cov, eye)
    return u_map, 0.5 * (cov + cov.transpose(-1, -2)), ok
