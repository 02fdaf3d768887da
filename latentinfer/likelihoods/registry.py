"""Likelihood types and the loader of likelihood folders.

A likelihood folder holds ``likelihood.yaml`` (safe-loaded) whose ``type`` key picks a loader registered with
:func:`register_likelihood_type`; the rest of the spec is that loader's business. Adding an experiment of an
existing type needs a folder, not code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from ..errors import ConfigError, LatentInferError
from ..paths import available, resolve

__all__ = ["register_likelihood_type", "load_likelihood", "list_likelihoods", "read_spec", "SPEC_FILE"]

SPEC_FILE = "likelihood.yaml"
_TYPES: dict[str, Callable] = {}


def register_likelihood_type(kind: str):
    """Decorator: register ``loader(folder, spec, name, **options) -> Likelihood`` for ``type: kind``."""

    def deco(fn):
        _TYPES[kind] = fn
        return fn

    return deco


def read_spec(folder: Path) -> dict:
    path = folder / SPEC_FILE
    if not path.is_file():
        raise LatentInferError(f"likelihood folder {folder} has no {SPEC_FILE}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (UnicodeDecodeError, RecursionError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable YAML text file ({type(exc).__name__})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a likelihood spec must be a mapping")
    return spec


def load_likelihood(name_or_path: str | os.PathLike, **options):
    """Load a likelihood by name (a folder under ``likelihoods/``) or by path, with per-likelihood options.

    >>> lik = load_likelihood("planck2018-plik-lite", spectra="TT")  # doctest: +SKIP
    """
    _import_builtin_types()
    folder = resolve("likelihoods", name_or_path)
    spec = read_spec(folder)
    kind = spec.get("type")
    if kind not in _TYPES:
        raise ConfigError(f"{folder / SPEC_FILE}: unknown likelihood type {kind!r} (known: {', '.join(sorted(_TYPES))})")
    name = spec.get("name", folder.name)
    return _TYPES[kind](folder, spec, name=name, **options)


def list_likelihoods() -> dict[str, str]:
    """``{name: one-line description}`` of the likelihood folders on the search path."""
    out = {}
    for name, folder in available("likelihoods").items():
        try:
            out[name] = str(read_spec(folder).get("description", "")).strip().splitlines()[0]
        except (LatentInferError, IndexError):
            out[name] = ""
    return out


def _import_builtin_types() -> None:
    import importlib
    import pkgutil

    from .. import likelihoods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name not in ("base", "registry"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
