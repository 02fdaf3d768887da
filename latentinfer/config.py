"""Run configs: YAML, safe-loaded, validated on load with errors that name the key.

The shape::

    model: cmb-lcdm                 # a bundle name from models/ or a path
    space: latent                   # or physical
    likelihoods: [planck2018-plik-lite, {name: planck2018-lowl-tt}]
    prior: standard_normal          # default prior of latents: standard_normal | uniform
    priors: {tau: {normal: [0.0544, 0.0073]}}
    inference: {method: nuts, chains: 4, warmup: 500, draws: 1000, seed: 0}
    emulator_error: false
    evidence: null                  # or harmonic, or {method: harmonic, epochs: 200, ...} (harmonic's settings)
    report: true
    cluster: {address: tcp://host:8786}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .checks import _MISSING, _type_name, check_keys, choice, require  # noqa: F401  (re-exported: old import path)
from .errors import ConfigError
from .io import read_file
from .priors import check_spec
from .execution import backend_from
from .methods.base import METHODS  # the registry and interface only: samplers load on first lookup

_choice = choice

__all__ = ["load_config", "validate_config", "inference_block", "foreign_settings", "evidence_request", "check_keys",
           "require", "dump_yaml", "DEFAULT_METHOD"]

#: The method of a config that names none (the reference sampler).
DEFAULT_METHOD = "nuts"

_TOP: dict[str, tuple[Any, type | tuple[type, ...]]] = {
    "model": (_MISSING, str),
    "space": ("latent", str),
    "likelihoods": (_MISSING, list),
    "prior": ("standard_normal", str),
    "priors": ({}, dict),
    "inference": ({}, dict),
    "emulator_error": (False, bool),
    "evidence": (None, (str, dict, type(None))),
    "report": (True, bool),
    "cluster": (None, (dict, type(None))),
    "coverage": (None, (str, type(None))),
    "name": ("", str),
}


def validate_config(raw: Any, source: str = "config") -> dict:
    """Check a config mapping and fill defaults; returns the resolved config. Raises :class:`ConfigError`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a run config must be a mapping of keys, got {type(raw).__name__}")
    check_keys(raw, set(_TOP), source)
    cfg = {key: require(raw, key, typ, source, default) for key, (default, typ) in _TOP.items()}
    _choice(cfg["space"], ("latent", "physical"), "space", source)
    _choice(cfg["prior"], ("standard_normal", "uniform"), "prior", source)
    if cfg["evidence"] is not None:
        evidence_request(cfg, source)

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

    cfg["inference"] = inference_block(cfg["inference"], f"{source}: inference")

    if cfg["cluster"] is not None:
        check_keys(cfg["cluster"], {"address", "slurm"}, f"{source}: cluster")

        backend_from({"cluster": cfg["cluster"]})  # address and slurm block checked at load
    return cfg


def evidence_request(cfg: Mapping[str, Any], source: str = "config") -> tuple[str, dict] | None:
    """``(method, settings)`` of a config's ``evidence:`` key (a method name, or a mapping with ``method`` and that
    method's settings), checked; None when the config asks for no evidence. Raises :class:`ConfigError`."""
    ev = cfg.get("evidence")
    if ev is None:
        return None
    where = f"{source}: evidence"
    if isinstance(ev, str):
        method, settings = ev, {}
    else:
        method = require(ev, "method", str, where, "harmonic")
        settings = {str(k): v for k, v in ev.items() if k != "method"}
    _choice(method, ("harmonic",), "evidence" if isinstance(ev, str) else "method", source if isinstance(ev, str) else where)
    from .evidence.learned_harmonic import check_harmonic_settings  # deferred: the evidence station loads torch

    check_harmonic_settings(settings, where)
    return method, settings


def _owners(key: str) -> list:
    """The methods that have a setting ``key``, the reference method first."""
    order = [DEFAULT_METHOD] + sorted(n for n in METHODS.names() if n != DEFAULT_METHOD)
    return [METHODS.get(n) for n in order if key in METHODS.get(n).Settings.keys()]


def inference_block(raw: Mapping, where: str) -> dict:
    """The resolved ``inference:`` block: ``method`` plus every setting of that method, checked by its own
    ``Settings`` (defaults filled in), plus any other method's settings that ``raw`` names (type-checked; a run
    refuses them unless at their default, see :func:`foreign_settings`; ``coverage --method`` reads them)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping, got {type(raw).__name__}")
    known = {"method"}.union(*(METHODS.get(n).Settings.keys() for n in METHODS.names()))
    check_keys(raw, known, where)
    method = require(raw, "method", str, where, DEFAULT_METHOD)
    choice(method, tuple(METHODS.names()), "method", where)
    inf = {"method": method, **METHODS.get(method).Settings.check(raw, where)}
    for key in raw:
        if key not in inf:
            inf[key] = require(raw, key, _owners(key)[0].Settings.types()[key], where)
    return inf


def foreign_settings(cfg: dict) -> None:
    """Refuse, with one line, a setting of another method than the config's, set to other than its default (a run
    would ignore it). ``coverage`` may still read other methods' settings from the same config."""
    inf = cfg["inference"]
    own = METHODS.get(inf["method"]).Settings.keys()
    foreign = [k for k, v in inf.items() if k != "method" and k not in own
               and all(v != m.Settings.default(k) for m in _owners(k))]
    if foreign:
        raise ConfigError(f"inference: key '{foreign[0]}' is not a setting of method '{inf['method']}' "
                          f"(its settings: {', '.join(own)})")


def __getattr__(name: str):
    if name == "INFERENCE_DEFAULTS":  # old flat table {key: (default, type)}: now each method's Settings own them
        out = {"method": (DEFAULT_METHOD, str)}
        for n in METHODS.names():
            for key in METHODS.get(n).Settings.keys():
                if key not in out:
                    m = _owners(key)[0].Settings
                    out[key] = (m.default(key), m.types()[key])
        return out
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_config(path: str | os.PathLike) -> dict:
    """Read and validate a YAML run config."""
    p = Path(path)
    raw = read_file(p, kind="YAML", error=ConfigError, missing="config file not found: {path}", label=str(p)[:200])
    return validate_config(raw, source=str(p))


def dump_yaml(cfg: Mapping) -> str:
    return yaml.safe_dump(_plain(cfg), sort_keys=False)


def _plain(x):
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
