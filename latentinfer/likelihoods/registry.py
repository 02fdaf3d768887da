"""Likelihood types and the loader of likelihood folders.

A likelihood folder holds ``likelihood.yaml`` (safe-loaded) whose ``type`` key picks a loader registered with
:func:`register_likelihood_type`; the rest of the spec is that loader's business. Adding an experiment of an
existing type needs a folder, not code.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, LatentInferError
from ..io import read_file
from ..paths import available, resolve
from ..registry import Registry

__all__ = ["register_likelihood_type", "load_likelihood", "list_likelihoods", "read_spec", "SPEC_FILE"]

SPEC_FILE = "likelihood.yaml"
#: ``type -> loader(folder, spec, name, **options) -> Likelihood`` (plug-ins: modules of :mod:`latentinfer.likelihoods`).
TYPES: Registry = Registry("likelihood type", "latentinfer.likelihoods", error=ConfigError, skip=("base", "registry"))


def register_likelihood_type(kind: str):
    """Decorator: register ``loader(folder, spec, name, **options) -> Likelihood`` for ``type: kind``."""

    return TYPES.register(kind)


def read_spec(folder: Path) -> dict:
    path = folder / SPEC_FILE
    if not path.is_file():
        raise LatentInferError(f"likelihood folder {folder} has no {SPEC_FILE}")
    spec = read_file(path, kind="YAML", error=ConfigError)
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a likelihood spec must be a mapping")
    return spec


def load_likelihood(name_or_path: str | os.PathLike, **options):
    """Load a likelihood by name (a folder under ``likelihoods/``) or by path, with per-likelihood options.

    >>> lik = load_likelihood("planck2018-plik-lite", spectra="TT")  # doctest: +SKIP
    """
    folder = resolve("likelihoods", name_or_path)
    spec = read_spec(folder)
    loader = TYPES.get(spec.get("type"), where=str(folder / SPEC_FILE))
    name = spec.get("name", folder.name)
    return loader(folder, spec, name=name, **options)


def list_likelihoods() -> dict[str, str]:
    """``{name: one-line description}`` of the likelihood folders on the search path."""
    out = {}
    for name, folder in available("likelihoods").items():
        try:
            out[name] = str(read_spec(folder).get("description", "")).strip().splitlines()[0]
        except (LatentInferError, IndexError):
            out[name] = ""
    return out
