"""The coordinates of the trained latents: a linear change of basis that the decoder absorbs exactly.

After training, the encoder means ``z (N, d)`` of the training rows are re-expressed as ``z' = A (z - m)``:

* ``standardise``: ``A = diag(1 / sd)``; zero mean and unit variance per latent, but the latents stay correlated;
* ``whiten``: ``A = C^(-1/2)`` (symmetric square root of the covariance ``C``); uncorrelated as well;
* ``ica`` (default): ``A = R C^(-1/2)`` with the rotation ``R`` of FastICA (scikit-learn, logcosh contrast): of
  all whitened bases, the one whose coordinates are most nearly independent. If FastICA does not converge, the
  whitened basis is kept and the card says so. Convergence alone does not prove the rotation identifiable (on
  Gaussian sources FastICA sometimes converges to an arbitrary one), so each component's stability under bootstrap
  refits is recorded as well: ``identified`` counts those above ``STABLE``.

Why independent components: the corpus design draws the physical parameters independently and uniformly (far from
Gaussian), so where the latents are close to a linear function of them, the independent components are
identifiable up to order and sign and line up with single parameters or fixed combinations of them. With the small
beta that Planck precision needs, the KL term alone leaves the latents strongly dependent (pairs of the first
``cmb-lcdm`` shared up to 0.95 nat). Every choice leaves the decoded spectra unchanged, and makes the N(0, I)
prior of inference match the corpus's first two moments (``whiten`` and ``ica``: its correlations too).

The new latents are then ordered by their effect on the data, the median over training rows of the noise-unit
chi^2 of a unit step along the latent (largest first), and signed so that each rises with the parameter (input
or derived) it is most rank-correlated with.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import ConfigError, LatentInferError

__all__ = ["BASES", "fit_basis", "set_latent_basis"]

BASES = ("ica", "whiten", "standardise")


def fit_basis(z: np.ndarray, method: str = "ica", seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Shift ``m (d,)`` and matrix ``A (d, d)`` such that ``A (z - m)`` has the properties of ``method``.

    ``z (N, d)``: encoder means of the training rows. Returns ``(m, A, info)``.
    """
    if method not in BASES:
        raise ConfigError(f"train config: key 'latent_basis' must be one of {', '.join(BASES)}, got {method!r}")
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    if n <= 2 * d:
        raise LatentInferError(f"latent_basis {method!r}: {n} training rows are too few for {d} latents")
    m = z.mean(0)
    if method == "standardise":
        return m, np.diag(1.0 / z.std(0, ddof=1)), {"method": method}
    ev, V = np.linalg.eigh(np.cov(z, rowvar=False))
    if ev.min() <= 1e-10 * ev.max():
        raise LatentInferError(f"latent_basis {method!r}: the latents' covariance is singular (eigenvalues {ev.min():.3g} "
                            f"to {ev.max():.3g}): some latents are unused; train with fewer latent_dim")
    W = (V / np.sqrt(ev)) @ V.T
    if method == "whiten":
        return m, W, {"method": method}
    R, stability, converged = _ica_rotation((z - m) @ W.T, seed)
    diag = {"stability": stability.tolist(), "identified": int((stability > STABLE).sum()), "stability_rule": _STABILITY_RULE}
    if not converged:  # no fixed point: no rotation singled out
        return m, W, {"method": "whiten", "requested": "ica", "ica_diagnostics": diag,
                      "note": "FastICA did not converge (latents too close to Gaussian for independent components): "
                              "whitened basis kept"}
    return m, R @ W, {"method": method, "ica_contrast": "logcosh", **diag}


STABLE = 0.9
N_BOOT = 20
_STABILITY_RULE = (f"10th percentile over {N_BOOT} bootstrap refits of FastICA of the best |cos| between a component "
                   f"and the refit's components; > {STABLE}: identified")


def _fastica(x: np.ndarray, seed: int) -> tuple[np.ndarray, bool]:
    """FastICA rotation (rows: unit unmixing vectors) of whitened ``x`` and whether it converged."""
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    ica = FastICA(whiten=False, fun="logcosh", max_iter=1000, tol=1e-6, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ica.fit(x)
    R = ica.components_
    return R / np.linalg.norm(R, axis=1, keepdims=True), not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _ica_rotation(x: np.ndarray, seed: int, n_boot: int = N_BOOT) -> tuple[np.ndarray, np.ndarray, bool]:
    """The FastICA rotation of whitened ``x``, each component's bootstrap stability (ICASSO's idea: an identifiable
    component comes back in refits on resampled rows; in a subspace of Gaussian sources any rotation is as good, and
    refits wander), and whether the main fit converged. Convergence alone does not tell: on Gaussian sources
    FastICA sometimes converges to an arbitrary rotation."""
    R, converged = _fastica(x, seed)
    rng = np.random.default_rng(seed)
    match = np.array([np.abs(R @ _fastica(x[rng.integers(0, len(x), len(x))], seed + 1 + b)[0].T).max(1)
                      for b in range(n_boot)])
    return R, np.quantile(match, 0.1, axis=0), converged


def _rank(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a, axis=0), axis=0).astype(float)


@torch.no_grad()
def set_latent_basis(model, pmap, train, loss, method: str = "ica", seed: int = 0, n_steps: int = 500) -> dict:
    """Re-express the latents of a trained ``IVE`` (and the output of its ``PhysicalMap``) in the ``method`` basis,
    ordered and signed as the module describes. ``train``: the training :class:`~latentinfer.ive.train.Split`;
    ``loss``: its :class:`~latentinfer.ive.train.NoiseChi2`. Returns what the card records."""
    z, _ = model.encoder(train.c)
    m, A, info = fit_basis(z.double().numpy(), method, seed)
    model.change_basis(torch.as_tensor(m), torch.as_tensor(A))
    pmap.change_basis(torch.as_tensor(m), torch.as_tensor(A))
    z, _ = model.encoder(train.c)
    d = z.shape[1]
    zs = z[:n_steps]
    c0 = model.decoder.coefficients(zs)
    zero_b, zero_c = torch.zeros_like(c0), torch.zeros(len(zs), dtype=c0.dtype)
    step = np.array([float(loss(model.decoder.coefficients(zs + torch.eye(d, dtype=zs.dtype)[i]), c0, zero_b, zero_c).median())
                     for i in range(d)])
    corpus = train.corpus
    theta = np.concatenate([corpus.params, corpus.derived], 1)
    names = list(corpus.names) + list(corpus.derived_names)
    keep = np.isfinite(theta).all(0) & (theta.std(0) > 0)
    theta, names = theta[:, keep], [nm for nm, k in zip(names, keep) if k]
    rz, rt = _rank(z.double().numpy()), _rank(theta)
    rho = np.corrcoef(rz.T, rt.T)[:d, d:]
    order = np.argsort(-step, kind="stable")
    best = np.abs(rho).argmax(1)
    sign = np.sign(rho[np.arange(d), best])
    sign[sign == 0] = 1.0
    P = np.zeros((d, d))
    P[np.arange(d), order] = sign[order]
    model.change_basis(torch.zeros(d), torch.as_tensor(P))
    pmap.change_basis(torch.zeros(d), torch.as_tensor(P))
    if "stability" in info:  # per latent, in the new order
        info["stability"] = [info["stability"][i] for i in order]
    return {**info, "fit_rows": int(len(train)),
            "order": "decreasing median noise-unit chi2 of a unit step along the latent (training rows)",
            "unit_step_chi2": [float(step[i]) for i in order],
            "sign": "rises with the parameter of largest |Spearman rho| (training rows)",
            "sign_parameter": {f"z{j + 1}": {"name": names[best[i]], "spearman": float(abs(rho[i, best[i]]))}
                               for j, i in enumerate(order)}}
