"""The k-nearest-neighbour (Kraskov-Stoegbauer-Grassberger) estimator of mutual information, as a cross-check of
GMM-MI (:mod:`latentinfer.interpret.mi`).

KSG estimator 1 (Kraskov, Stoegbauer & Grassberger 2004, Phys. Rev. E 69, 066138) in the max-norm::

    I = psi(k) + psi(N) - < psi(n_x + 1) + psi(n_y + 1) >

with ``eps_i`` the distance of row i to its k-th neighbour in the joint space and ``n_x`` (``n_y``) the number of
rows closer than ``eps_i`` in x (y) alone. The marginals are first mapped to normal scores through their ranks, as
GMM-MI does by default (MI does not change under separate monotonic maps; the estimator's bias does). Ties are
broken by a 1e-10 jitter. The error is the spread over ``n_split`` random half-samples, scaled by 1/sqrt(2) to the
full sample (a bootstrap with replacement is not usable: duplicated rows are zero-distance neighbours).
It is cross-checked against scikit-learn's ``mutual_info_regression`` (the same estimator) in the tests.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from ..errors import DataError

__all__ = ["ksg_mi", "ksg_mi_error"]


def _prep(x, y, rng) -> np.ndarray:
    from scipy.special import ndtri
    from scipy.stats import rankdata

    X = np.column_stack([np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()])
    if not np.isfinite(X).all():
        raise DataError("KSG MI input has NaN or inf")
    X = ndtri(rankdata(X, axis=0) / (len(X) + 1))
    return X + 1e-10 * rng.standard_normal(X.shape)


def _ksg(X: np.ndarray, k: int) -> float:
    from scipy.spatial import cKDTree

    n = len(X)
    tree = cKDTree(X)
    eps = tree.query(X, k=k + 1, p=np.inf)[0][:, -1]
    counts = []
    for a in (0, 1):
        t = cKDTree(X[:, a : a + 1])
        # strictly closer than eps: the radius is shrunk by one ulp; the row itself is counted and removed
        c = t.query_ball_point(X[:, a : a + 1], np.nextafter(eps, 0), p=np.inf, return_length=True) - 1
        counts.append(c)
    return float(digamma(k) + digamma(n) - np.mean(digamma(counts[0] + 1) + digamma(counts[1] + 1)))


def ksg_mi(x, y, k: int = 3, seed: int = 0) -> float:
    """KSG estimate of MI(x; y) in nats (may be slightly negative for independent variables)."""
    if len(np.ravel(x)) != len(np.ravel(y)):
        raise DataError("KSG MI input: x and y differ in length")
    if len(np.ravel(x)) <= 2 * k:
        raise DataError(f"KSG MI input has {len(np.ravel(x))} rows; need more than {2 * k}")
    return _ksg(_prep(x, y, np.random.default_rng(seed)), k)


def ksg_mi_error(x, y, k: int = 3, seed: int = 0, n_split: int = 10) -> tuple[float, float]:
    """``(mi, err)``: the KSG estimate on all rows and the spread over ``n_split`` half-samples / sqrt(2)."""
    rng = np.random.default_rng(seed)
    X = _prep(x, y, rng)
    n = len(X)
    halves = [_ksg(X[rng.permutation(n)[: n // 2]], k) for _ in range(n_split)]
    return _ksg(X, k), float(np.std(halves, ddof=1) / np.sqrt(2))
