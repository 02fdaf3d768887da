"""Same seed, same numbers: for every method, and for chains run in worker processes or in-process."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_linear_gaussian


@pytest.fixture(scope="module")
def analysis():
    return make_linear_gaussian(dim=2, n=10, seed=5).analysis()


@pytest.mark.parametrize(
    "method, settings",
    [
        ("nuts", dict(chains=2, warmup=50, draws=50)),
        ("emcee", dict(walkers=8, warmup=50, draws=50)),
        ("vi", dict(steps=50, num_samples=100)),
    ],
)
def test_same_seed_same_samples(analysis, method, settings):
    run = lambda seed: analysis.sample(method, seed=seed, progress=False, **settings) if method != "vi" else analysis.fit_vi(seed=seed, progress=False, **settings)  # noqa: E731
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a.samples(), b.samples())
    assert not np.array_equal(a.samples(), c.samples())


def test_parallel_chains_equal_sequential_chains(analysis):
    par = analysis.sample("nuts", chains=2, warmup=50, draws=50, seed=3, parallel=True, progress=False)
    seq = analysis.sample("nuts", chains=2, warmup=50, draws=50, seed=3, parallel=False, progress=False)
    np.testing.assert_array_equal(par.samples(flat=False), seq.samples(flat=False))
