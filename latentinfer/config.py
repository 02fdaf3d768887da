"""Run configs: YAML, safe-loaded, validated on load with errors that name the key.

The shape::

    model: cmb-lcdm                 # a bundle name from models/ or a path
    space: latent                   # or physical
    likelihoods: [planck2018-plik-lite, {name: planck2018-lowl-tt}]
    prior: standard_normal          # default prior of latents: standard_normal | uniform
    priors: {tau: {normal: [0.0544, 0.0073]}}
    inference: {method: nuts, chains: 4, warmup: 500, draws: 1000, seed: 0}
    emulator_error: false
    evidence: null                  # or harmonic
    report: true
    cluster: {address: tcp://host:8786}
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .priors import check_spec

__all__ = ["load_config", "validate_config", "check_keys", "require", "INFERENCE_DEFAULTS", "dump_yaml"]

_MISSING = object()

#: Defaults and types of the ``inference:`` block (keys not used by a method are ignored by it).
INFERENCE_DEFAULTS: dict[str, tuple[Any, type | tuple[type, ...]]] = {
    "method": ("nuts", str),
    "seed": (0, int),
    "chains": (4, int),
    "warmup": (500, int),
    "draws": (1000, int),
    "thin": (1, int),
    "jit": (True, bool),
    "parallel": (True, bool),
    "target_accept": (0.8, float),
    "max_tree_depth": (10, int),
    "dense_mass": (True, bool),
    "init": ("laplace", str),
    "walkers": (32, int),
    "guide": ("multivariate_normal", str),
    "steps": (3000, int),
    "lr": (0.01, float),
    "num_samples": (4000, int),
    "progress": (True, bool),
    "num_simulations": (10000, int),
    "rounds": (1, int),
    "embedding": (None, (str, type(None))),
    "ensemble": (1, int),
    "importance": (False, bool),
    "precision": ("float64", str),
}

_TOP: dict[str, tuple[Any, type | tuple[type, ...]]] = {
    "model": (_MISSING, str),
    "space": ("latent", str),
    "likelihoods": (_MISSING, list),
    "prior": ("standard_normal", str),
    "priors": ({}, dict),
    "inference": ({}, dict),
    "emulator_error": (False, bool),
    "evidence": (None, (str, type(None))),
    "report": (True, bool),
    "cluster": (None, (dict, type(None))),
    "coverage": (None, (str, type(None))),
    "name": ("", str),
}


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in ts)


def check_keys(d: Mapping, allowed: set[str], where: str) -> None:
    """Reject unknown keys, naming the first one and the allowed set."""
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(allowed)) or 'none'})")


def require(d: Mapping, key: str, typ: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """``d[key]`` checked against ``typ`` (ints are accepted as floats), or a :class:`ConfigError`."""
    if key not in d or d[key] is None and default is not _MISSING and default is not None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing key '{key}'")
        return copy.deepcopy(default)
    val = d[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    if float in types and isinstance(val, int) and not isinstance(val, bool):
        try:
            val = float(val)
        except OverflowError:
            raise ConfigError(f"{where}: key '{key}' is too large for a number, got an integer of {len(str(val))} digits") from None
    if isinstance(val, float) and float in types and not math.isfinite(val):
        raise ConfigError(f"{where}: key '{key}' must be a finite number, got {val!r}")
    if isinstance(val, bool) and bool not in types:
        raise ConfigError(f"{where}: key '{key}' must be {_type_name(typ)}, got {val!r}")
    if not isinstance(val, types):
        raise ConfigError(f"{where}: key '{key}' must be {_type_name(typ)}, got {type(val).__name__} {val!r}")
    return val


def _choice(val: str, choices, key: str, where: str) -> str:
    if val not in choices:
        raise ConfigError(f"{where}: key '{key}' must be one of {', '.join(choices)}, got {val!r}")
    return val


def validate_config(raw: Any, source: str = "config") -> dict:
    """Check a config mapping and fill defaults; returns the resolved config. Raises :class:`ConfigError`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a run config must be a mapping of keys, got {type(raw).__name__}")
    check_keys(raw, set(_TOP), source)
    cfg = {key: require(raw, key, typ, source, default) for key, (default, typ) in _TOP.items()}
    _choice(cfg["space"], ("latent", "physical"), "space", source)
    _choice(cfg["prior"], ("standard_normal", "uniform"), "prior", source)
    if cfg["evidence"] is not None:
        _choice(cfg["evidence"], ("harmonic",), "evidence", source)

    liks = []
    if not cfg["likelihoods"]:
        raise ConfigError(f"{source}: key 'likelihoods' must list at least one likelihood")
    for i, item in enumerate(cfg["likelihoods"]):
        where = f"{source}: likelihoods[{i}]"
        if isinstance(item, str):
            liks.append({"name": item})
        elif isinstance(item, Mapping):
            name = require(item, "name", str, where)
            liks.append({"name": name, **{str(k): v for k, v in item.items() if k != "name"}})
        else:
            raise ConfigError(f"{where}: must be a name or a mapping with key 'name', got {item!r}")
    cfg["likelihoods"] = liks

    cfg["priors"] = {str(k): check_spec(v, str(k)) for k, v in cfg["priors"].items()}

    inf_where = f"{source}: inference"
    check_keys(cfg["inference"], set(INFERENCE_DEFAULTS), inf_where)
    from .inference import available_methods, get_method

    method = require(cfg["inference"], "method", str, inf_where, INFERENCE_DEFAULTS["method"][0])
    _choice(method, available_methods(), "method", inf_where)
    meth = get_method(method)
    inf = {k: require(cfg["inference"], k, typ, inf_where, meth.default(k)) for k, (_, typ) in INFERENCE_DEFAULTS.items()}
    _choice(inf["guide"], ("normal", "multivariate_normal", "flow"), "guide", inf_where)
    _choice(inf["init"], ("laplace", "prior"), "init", inf_where)
    _choice(inf["precision"], ("float64", "float32"), "precision", inf_where)
    if inf["embedding"] is not None:
        from .amortized.posterior import EMBEDDINGS

        _choice(inf["embedding"], tuple(e for e in EMBEDDINGS if e), "embedding", inf_where)
    for key in ("chains", "draws", "walkers", "steps", "num_samples", "thin", "rounds", "ensemble"):
        if inf[key] < 1:
            raise ConfigError(f"{inf_where}: key '{key}' must be >= 1, got {inf[key]}")
    if method == "chees" and inf["chains"] < 2:
        raise ConfigError(f"{inf_where}: key 'chains' must be >= 2 for method chees (chains adapt together), got {inf['chains']}")
    if inf["num_simulations"] < 50:
        raise ConfigError(f"{inf_where}: key 'num_simulations' must be >= 50, got {inf['num_simulations']}")
    for key in ("warmup", "seed"):
        if inf[key] < 0:
            raise ConfigError(f"{inf_where}: key '{key}' must be >= 0, got {inf[key]}")
    if not 0 < inf["target_accept"] < 1:
        raise ConfigError(f"{inf_where}: key 'target_accept' must be in (0, 1), got {inf['target_accept']}")
    if not inf["lr"] > 0:
        raise ConfigError(f"{inf_where}: key 'lr' must be > 0, got {inf['lr']}")
    cfg["inference"] = inf

    if cfg["cluster"] is not None:
        check_keys(cfg["cluster"], {"address", "slurm"}, f"{source}: cluster")
        from .execution import backend_from

        backend_from({"cluster": cfg["cluster"]})  # address and slurm block checked at load
    return cfg


def foreign_settings(cfg: dict) -> None:
    """Refuse, with one line, a setting of another method than the config's, set to other than its default (a run
    would ignore it). Resolved configs list every key at its default and pass; ``coverage`` may still read other
    methods' settings from the same config."""
    from .inference import get_method

    inf = cfg["inference"]
    meth = get_method(inf["method"])
    foreign = [k for k, v in inf.items() if k != "method" and k not in meth.settings and v != INFERENCE_DEFAULTS[k][0]]
    if foreign:
        raise ConfigError(f"inference: key '{foreign[0]}' is not a setting of method '{inf['method']}' "
                          f"(its settings: {', '.join(meth.settings)})")


def load_config(path: str | os.PathLike) -> dict:
    """Read and validate a YAML run config."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        text = p.read_text()
    except (OSError, ValueError) as exc:  # unreadable, a name too long, a NUL byte, not UTF-8
        what = "not a text file" if isinstance(exc, UnicodeDecodeError) else f"cannot read ({type(exc).__name__}: {exc})"
        raise ConfigError(f"{str(p)[:200]!r}: {what}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{p}: YAML nested too deeply") from None
    return validate_config(raw, source=str(p))


def dump_yaml(cfg: Mapping) -> str:
    return yaml.safe_dump(_plain(cfg), sort_keys=False)


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
