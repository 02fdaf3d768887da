"""``latentinfer loglike NAME --theory FILE``: one likelihood evaluated at a theory file, printed as JSON.

The file has the CAMB/cobaya text layout (columns ell, D_TT, D_TE, D_EE[, D_PP], muK^2, ell from 2; see
:func:`latentinfer.likelihoods.theory.read_theory_file`). Nuisance parameters not given with ``--set`` take the
centre of their prior. Output: ``{"loglike": -chi2/2, "chi2": ..., "n_data": ...}`` (``loglike`` without the
Gaussian normalisation, as cobaya and the experiment codes report it).
"""

from __future__ import annotations

import json
import math

from ..errors import ConfigError

__all__ = ["register", "evaluate"]


def register(sub) -> None:
    p = sub.add_parser("loglike", help="evaluate one likelihood at a theory file (CAMB/cobaya text layout); prints JSON")
    p.add_argument("name", help="likelihood name (see `latentinfer likelihoods`) or folder")
    p.add_argument("--theory", required=True, help="text file: ell, D_TT, D_TE, D_EE[, D_PP] in muK^2, ell from 2")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a nuisance value, e.g. A_planck=1.0")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a likelihood option, e.g. spectra=TT")
    p.set_defaults(func=_loglike)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = val.strip()
    return out


def evaluate(name: str, theory_path: str, nuisance: dict[str, float] | None = None, options: dict | None = None) -> dict:
    """``{"loglike", "chi2", "n_data"}`` of likelihood ``name`` at the theory file, in float64."""
    import torch

    from ..likelihoods import load_likelihood
    from ..likelihoods.theory import read_theory_file, to_tensors
    from ..priors import centre  # pyro and torch: imported when a likelihood is evaluated, not by `--help`

    lik = load_likelihood(name, **(options or {}))
    theory = read_theory_file(theory_path)
    missing = [k for k in lik.requires if k not in theory]
    if missing:
        raise ConfigError(f"theory file {theory_path}: likelihood '{lik.name}' needs {missing}; the file has {[k for k in theory if k != 'ell']}")
    lik.check_theory({k: len(v) for k, v in theory.items() if k != "ell"})
    given = dict(nuisance or {})
    unknown = sorted(set(given) - set(lik.nuisance_names))
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: not a nuisance parameter of '{lik.name}' (has: {', '.join(lik.nuisance_names) or 'none'})")
    values = {}
    for block in lik.nuisance:
        for i, n in enumerate(block.names):
            values[n] = torch.tensor(given.get(n, centre(block.prior, i)), dtype=torch.float64)
    with torch.no_grad():
        chi2 = float(lik.chi2(to_tensors(theory), values))
    if not math.isfinite(chi2):
        raise ConfigError(f"chi2 of '{lik.name}' is not finite for theory file {theory_path} and nuisances {given}")
    return {"loglike": -0.5 * chi2, "chi2": chi2, "n_data": lik.n_data}


def _loglike(args) -> int:
    nuis = {}
    for key, val in _pairs(args.set, "--set").items():
        try:
            nuis[key] = float(val)
        except ValueError:
            raise ConfigError(f"--set {key}: value {val!r} is not a number") from None
        if not math.isfinite(nuis[key]):
            raise ConfigError(f"--set {key}: value {val!r} is not finite")
    import yaml

    options = {}
    for key, val in _pairs(args.option, "--option").items():
        try:
            options[key] = yaml.safe_load(val)
        except yaml.YAMLError:
            options[key] = val
    print(json.dumps(evaluate(args.name, args.theory, nuis, options)))
    return 0
