"""Mutual information of two scalar variables from a Gaussian-mixture fit of their joint density (GMM-MI).

The method of Piras et al. (2023, MLST; the ``gmm-mi`` package), implemented on scikit-learn's
``GaussianMixture``:

1. map each variable to normal scores through its ranks, ``Phi^-1(rank / (n + 1))`` (``marginals="rank"``,
   the default), or only standardise it (``"standardise"``, as ``gmm-mi`` does). MI is invariant under separate
   monotonic maps of x and y, so this changes nothing but the difficulty of the fit: with Gaussian marginals an
   independent pair is fitted by one component and gets MI ~ 0, where uniform marginals (a Sobol design) need
   several components that do not factorise and bias MI upwards by a few 0.01 nat at n ~ 500;
2. choose the number of mixture components K by k-fold cross-validation: add components while the mean
   held-out log-likelihood per sample improves by more than ``cv_threshold`` (with ``patience``), keep the best K;
3. fit the joint mixture p(x, y) with K components on all rows; its marginals p(x), p(y) are mixtures of the
   components' marginals, so ``MI = E_p[log p(x, y) - log p(x) - log p(y)]`` is a Monte-Carlo average over
   ``mc_samples`` draws from the fitted mixture;
4. the error is the standard deviation of the MI over ``n_bootstrap`` refits on rows resampled with replacement
   (same K, warm-started from the full fit).

MI is in nats. The bootstrap error covers the sampling noise of the data and the Monte-Carlo noise of the
integral, not the bias of the mixture as a density model (small when K is chosen by cross-validation; see
``tests/interpret/test_interpret.py`` for checks against closed forms).

We do not call the ``gmm-mi`` package itself: its 0.8.2 release calls ``GaussianMixture._validate_data``, which
scikit-learn removed in 1.6, so it fails on the installed scikit-learn (1.9).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=2000); y = 0.8 * x + 0.6 * rng.normal(size=2000)
>>> est = gmm_mi(x, y, MISettings(n_bootstrap=5), seed=1)
>>> bool(abs(est.mi - gaussian_mi(0.8)) < 4 * est.err)
True
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp

from ..errors import ConfigError, DataError

__all__ = ["MISettings", "MIEstimate", "gmm_mi", "mixture_mi", "select_components", "gaussian_mi"]


@dataclass(frozen=True)
class MISettings:
    """Settings of the GMM-MI estimator (they validate themselves; a bad value names its key).

    n_bootstrap : refits on resampled rows for the error (>= 2)
    max_components : largest K tried by cross-validation
    n_folds : folds of the cross-validation (>= 2)
    cv_threshold : smallest gain in mean held-out log-likelihood per sample (nat) that justifies one more component
    patience : components tried past the last improvement before stopping
    mc_samples : Monte-Carlo draws from the fitted mixture for the MI integral
    tol, max_iter, n_init, reg_covar : passed to ``sklearn.mixture.GaussianMixture`` (on standardised data)
    """

    n_bootstrap: int = 20
    max_components: int = 8
    n_folds: int = 3
    cv_threshold: float = 1e-3
    patience: int = 1
    mc_samples: int = 20_000
    tol: float = 1e-4
    max_iter: int = 500
    n_init: int = 1
    reg_covar: float = 1e-6
    marginals: str = "rank"

    def __post_init__(self):
        ints = {"n_bootstrap": 2, "max_components": 1, "n_folds": 2, "patience": 1, "mc_samples": 100, "max_iter": 10, "n_init": 1}
        for key, low in ints.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"MI setting '{key}' must be an integer >= {low}, got {v!r}")
        for key in ("cv_threshold", "tol", "reg_covar"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ConfigError(f"MI setting '{key}' must be a finite number >= 0, got {v!r}")

        if self.marginals not in ("rank", "standardise"):
            raise ConfigError(f"MI setting 'marginals' must be 'rank' or 'standardise', got {self.marginals!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MIEstimate:
    """One MI estimate in nats: ``mi`` from the fit on all rows, ``err`` the bootstrap standard deviation."""

    mi: float
    err: float
    n_components: int
    n: int
    bootstrap: np.ndarray = field(repr=False)
    cv_loglik: dict[int, float] = field(default_factory=dict, repr=False)
    n_unconverged: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mi": self.mi,
            "err": self.err,
            "n_components": self.n_components,
            "n": self.n,
            "bootstrap_mean": float(np.mean(self.bootstrap)),
            "cv_loglik": {str(k): v for k, v in self.cv_loglik.items()},
            "n_unconverged": self.n_unconverged,
        }


def gaussian_mi(rho: float | np.ndarray) -> float | np.ndarray:
    """Closed-form MI (nat) of a bivariate Gaussian with correlation ``rho``: ``-0.5 ln(1 - rho^2)``."""
    return -0.5 * np.log1p(-np.square(rho))


def _mixture(k: int, s: MISettings, seed: int, init=None):
    from sklearn.mixture import GaussianMixture

    kw = {}
    if init is not None:
        kw = {"weights_init": init.weights_, "means_init": init.means_, "precisions_init": init.precisions_}
    return GaussianMixture(
        n_components=k, covariance_type="full", tol=s.tol, max_iter=s.max_iter, n_init=1 if init is not None else s.n_init,
        reg_covar=s.reg_covar, random_state=seed, **kw,
    )


def _fit(gm, X) -> tuple[Any, bool]:
    """Fit quietly; returns the model and whether EM converged (sklearn's ConvergenceWarning is recorded, not raised)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        gm.fit(X)
    bad = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return gm, bool(gm.converged_) and not bad


def select_components(X: np.ndarray, settings: MISettings, seed: int) -> tuple[int, dict[int, float], int]:
    """K with the best mean held-out log-likelihood per sample over ``n_folds`` folds.

    ``X`` is ``(n, 2)`` standardised data. Returns ``(K, {K: score}, n_unconverged)``.
    """
    from sklearn.model_selection import KFold

    folds = list(KFold(n_splits=settings.n_folds, shuffle=True, random_state=seed).split(X))
    scores: dict[int, float] = {}
    best_k, best, waited, unconverged = 1, -np.inf, 0, 0
    for k in range(1, settings.max_components + 1):
        vals = []
        for train, valid in folds:
            if len(train) < 10 * k:  # too few rows for k full-covariance components (6 numbers each)
                break
            gm, ok = _fit(_mixture(k, settings, seed), X[train])
            unconverged += not ok
            vals.append(gm.score(X[valid]))
        if len(vals) < len(folds):
            break
        scores[k] = float(np.mean(vals))
        if scores[k] > best + settings.cv_threshold:
            best_k, best, waited = k, scores[k], 0
        else:
            if scores[k] > best:
                best = scores[k]
            waited += 1
            if waited >= settings.patience:
                break
    return best_k, scores, unconverged


def mixture_mi(gm, n_samples: int, rng: np.random.Generator) -> float:
    """MI (nat) of a fitted 2-D ``GaussianMixture`` by Monte Carlo: mean of ``log p(x,y) - log p(x) - log p(y)``."""
    w, mu, cov = gm.weights_, gm.means_, gm.covariances_
    counts = rng.multinomial(n_samples, w / w.sum())
    pts = np.concatenate([rng.multivariate_normal(mu[k], cov[k], size=c) for k, c in enumerate(counts) if c > 0])
    log_joint = gm.score_samples(pts)
    log_marg = []
    for a in (0, 1):
        var = cov[:, a, a]
        d = pts[:, a, None] - mu[None, :, a]
        comp = -0.5 * (d * d / var + np.log(2 * np.pi * var)) + np.log(w)
        log_marg.append(logsumexp(comp, axis=1))
    return float(np.mean(log_joint - log_marg[0] - log_marg[1]))


def _paired(x, y) -> np.ndarray:
    """``(n, 2)`` float64 from two equally long 1-D arrays; NaN/inf and constant columns are errors."""
    X = np.column_stack([np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()])
    if not np.all(np.isfinite(X)):
        raise DataError(f"MI input has {int((~np.isfinite(X)).any(axis=1).sum())} rows with NaN or inf")
    if np.any(X.std(axis=0) == 0):
        raise DataError("MI input has a constant variable (zero variance): its MI with anything is 0")
    return X


def _transform(X: np.ndarray, marginals: str) -> np.ndarray:
    """Normal scores ``Phi^-1(rank / (n + 1))`` (ties share their mean rank) or standardised columns."""
    if marginals == "rank":
        from scipy.special import ndtri
        from scipy.stats import rankdata

        return ndtri(rankdata(X, axis=0) / (len(X) + 1))
    return (X - X.mean(axis=0)) / X.std(axis=0)


def gmm_mi(x: np.ndarray, y: np.ndarray, settings: MISettings | None = None, seed: int = 0) -> MIEstimate:
    """Estimate MI(x; y) in nats with GMM-MI and a bootstrap error.

    Parameters
    ----------
    x, y : arrays of shape (n,), the paired samples
    settings : :class:`MISettings` (defaults if None)
    seed : integer; the same seed gives the same numbers
    """
    from threadpoolctl import threadpool_limits

    s = settings or MISettings()
    # 2-D fits are tiny: BLAS/OpenMP thread pools only add overhead (10x slower on a loaded machine)
    with threadpool_limits(limits=1):
        return _gmm_mi(x, y, s, seed)


def _gmm_mi(x, y, s: MISettings, seed: int) -> MIEstimate:
    if len(np.ravel(x)) != len(np.ravel(y)):
        raise DataError(f"MI input: x has {len(np.ravel(x))} rows but y has {len(np.ravel(y))}")
    n = len(np.ravel(x))
    if n < 10 * s.n_folds:
        raise DataError(f"MI input has {n} rows; need at least {10 * s.n_folds} (10 per cross-validation fold)")
    raw = _paired(x, y)
    X = _transform(raw, s.marginals)
    ss = np.random.SeedSequence(int(seed))
    cv_seed, fit_seed, mc_seed, boot_seed = (int(c.generate_state(1)[0]) for c in ss.spawn(4))
    k, scores, unconverged = select_components(X, s, cv_seed)
    full, ok = _fit(_mixture(k, s, fit_seed), X)
    unconverged += not ok
    mi = mixture_mi(full, s.mc_samples, np.random.default_rng(mc_seed))
    rng = np.random.default_rng(boot_seed)
    boot = np.empty(s.n_bootstrap)
    for b in range(s.n_bootstrap):
        idx = rng.integers(0, n, size=n)
        # the whole estimator is bootstrapped, marginal transform included (re-ranking the resampled rows)
        gm, ok = _fit(_mixture(k, s, fit_seed, init=full), _transform(raw[idx], s.marginals))
        unconverged += not ok
        boot[b] = mixture_mi(gm, s.mc_samples, rng)
    return MIEstimate(mi=mi, err=float(np.std(boot, ddof=1)), n_components=k, n=n, bootstrap=boot, cv_loglik=scores, n_unconverged=unconverged)
