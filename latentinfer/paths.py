"""Where bundled decoder models and experiment likelihoods are found.

Search order for a name: an existing path given by the user; the folders in ``$LATENTINFER_MODELS`` /
``$LATENTINFER_LIKELIHOODS`` (``os.pathsep``-separated); the repository's top-level ``models/`` and
``likelihoods/`` (source checkout or editable install); ``latentinfer/_bundled/`` (wheel install).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LatentInferError

__all__ = ["search_dirs", "resolve", "available"]

_PKG = Path(__file__).resolve().parent
_ENV = {"models": "LATENTINFER_MODELS", "likelihoods": "LATENTINFER_LIKELIHOODS"}


def search_dirs(kind: str) -> list[Path]:
    """Folders searched for ``kind`` in ``{"models", "likelihoods"}``, first match wins."""
    dirs = [Path(p) for p in os.environ.get(_ENV[kind], "").split(os.pathsep) if p]
    if (_PKG.parent / "pyproject.toml").is_file():  # a source checkout or editable install
        dirs.append(_PKG.parent / kind)
    dirs.append(_PKG / "_bundled" / kind)
    return [d for d in dirs if d.is_dir()]


def available(kind: str) -> dict[str, Path]:
    """Names of the bundles of ``kind`` found on the search path, mapped to their folders."""
    found: dict[str, Path] = {}
    for d in search_dirs(kind):
        for sub in sorted(d.iterdir()):
            if sub.is_dir() and not sub.name.startswith((".", "_")) and sub.name not in found:
                found[sub.name] = sub
    return found


def resolve(kind: str, name_or_path: str | os.PathLike) -> Path:
    """The folder of a bundle given by name or by path; a clear error if there is none."""
    p = Path(name_or_path)
    if p.is_dir():
        return p.resolve()
    found = available(kind)
    if str(name_or_path) in found:
        return found[str(name_or_path)]
    singular = kind[:-1]
    names = ", ".join(found) or "none"
    raise LatentInferError(f"unknown {singular} '{name_or_path}' (available: {names})")
