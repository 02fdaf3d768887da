"""GetDist plain-text chains: ``PREFIX_1.txt ...``, ``PREFIX.paramnames``, ``PREFIX.ranges``.

Each chain file has one row per draw: ``weight  -ln(posterior)  p_1 ... p_n  chi2__<lik> ... chi2`` (weights are
1 for MCMC draws; column 2 is minus the log posterior, the ``loglikes`` column of GetDist and cobaya's
``minuslogpost``; ``chi2__<lik> = -2 ln L`` per likelihood and their total are derived parameters, marked ``*``
in ``.paramnames`` as cobaya does). ``.ranges`` gives the prior support of each sampled parameter (``N`` for an
unbounded side), read from the prior specs the run recorded.

>>> # from getdist import loadMCSamples; s = loadMCSamples("runs/planck/getdist/planck")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import LatentInferError
from ..io import atomic_write_text
from ..labels import latex
from .base import EXPORTERS

__all__ = ["write_getdist", "prior_ranges"]


def prior_ranges(post) -> dict[str, tuple[float | None, float | None]]:
    """``{name: (low, high)}`` of the sampled parameters' prior supports (None for an unbounded side)."""
    program = post.meta("program") or {}
    specs = {**program.get("nuisance", {}), **program.get("inputs", {})} if isinstance(program, dict) else {}
    out = {}
    for name in post.parameter_names:
        spec = specs.get(name)
        if isinstance(spec, dict) and ("uniform" in spec or "truncnormal" in spec):
            lo, hi = (spec.get("uniform") or spec["truncnormal"])[-2:]
            out[name] = (float(lo), float(hi))
        else:
            out[name] = (None, None)
    return out


def _fmt_range(x):
    return "N" if x is None else repr(float(x))


@EXPORTERS.register("getdist")
def write_getdist(post, prefix: str | os.PathLike) -> list[Path]:
    """Write ``post`` as GetDist chains under ``prefix``; returns the files written."""
    prefix = Path(prefix)
    if prefix.name in ("", ".", ".."):
        raise LatentInferError(f"export: --out must be a file prefix such as runs/x/getdist/x, got '{prefix}'")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = post.parameter_names
    cols = [post.samples(n, flat=False) for n in names]  # (chain, draw) each
    ll = getattr(post.idata, "log_likelihood", None)
    lik_names = list(ll.data_vars) if ll is not None else []
    chi2 = [-2.0 * np.asarray(ll[n].values, dtype=float) for n in lik_names]
    ss = getattr(post.idata, "sample_stats", None)
    if ss is not None and "lp" in ss:
        minus_lp = -np.asarray(ss["lp"].values, dtype=float)
    elif chi2:
        minus_lp = 0.5 * sum(chi2)
    else:
        raise LatentInferError("export: the posterior has neither sample_stats.lp nor log-likelihoods for the -ln(posterior) column")
    derived = [(f"chi2__{n}", rf"\chi^2_\mathrm{{{n}}}", c) for n, c in zip(lik_names, chi2)]
    if len(chi2) > 1:
        derived.append(("chi2", r"\chi^2", sum(chi2)))
    written = []
    for c in range(post.num_chains):
        table = np.column_stack(
            [np.ones(post.num_draws), minus_lp[c]] + [x[c] for x in cols] + [d[2][c] for d in derived]
        )
        if not np.isfinite(table).all():
            raise LatentInferError(f"export: chain {c + 1} has NaN/inf values; refusing to write GetDist chains")
        path = prefix.parent / f"{prefix.name}_{c + 1}.txt"
        lines = [" ".join(f"{v:.16e}" for v in row) for row in table]
        atomic_write_text(path, "\n".join(lines) + "\n")
        written.append(path)
    pn = [f"{n}\t{latex(n)}" for n in names] + [f"{n}*\t{lab}" for n, lab, _ in derived]
    path = prefix.parent / f"{prefix.name}.paramnames"
    atomic_write_text(path, "\n".join(pn) + "\n")
    written.append(path)
    ranges = prior_ranges(post)
    path = prefix.parent / f"{prefix.name}.ranges"
    atomic_write_text(path, "\n".join(f"{n} {_fmt_range(lo)} {_fmt_range(hi)}" for n, (lo, hi) in ranges.items()) + "\n")
    written.append(path)
    return written
