"""Where bundled decoder models, experiment likelihoods and CAMB corpus files are found.

Models and likelihoods, by name: an existing path given by the user; the folders in ``$LATENTINFER_MODELS`` /
``$LATENTINFER_LIKELIHOODS`` (``os.pathsep``-separated); the repository's top-level ``models/`` and
``likelihoods/`` (source checkout or editable install); ``latentinfer/_bundled/`` (wheel install).

Corpus files (training data, :func:`corpus_path`): training configs, bundle cards and tests name them *relative to
the corpus root* (``lcdm.npz``, ``ede-ext/ede.npz``), each with its sha256 in the card. The root is
``$LATENTINFER_CORPUS`` (``os.pathsep``-separated folders, first match wins; the ``--corpus DIR`` option of
``train``, ``simulate``, ``interpret`` and ``accuracy`` puts DIR first), else ``./corpus``. ``simulate`` writes new
files under the first folder. An absolute path is used as given.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LatentInferError

__all__ = ["search_dirs", "resolve", "available", "corpus_roots", "corpus_path", "corpus_name", "use_corpus_root", "CORPUS_ENV"]

_PKG = Path(__file__).resolve().parent
_ENV = {"models": "LATENTINFER_MODELS", "likelihoods": "LATENTINFER_LIKELIHOODS"}
#: The environment variable naming the corpus root folder(s).
CORPUS_ENV = "LATENTINFER_CORPUS"


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


def corpus_roots() -> list[Path]:
    """The corpus root folders, first match wins: ``$LATENTINFER_CORPUS`` (``os.pathsep``-separated), else
    ``./corpus``."""
    roots = [Path(p).expanduser() for p in os.environ.get(CORPUS_ENV, "").split(os.pathsep) if p]
    return roots or [Path.cwd() / "corpus"]


def use_corpus_root(folder: str | os.PathLike | None) -> None:
    """Put ``folder`` first on the corpus root path of this process (the CLI's ``--corpus DIR``)."""
    if folder:
        rest = os.environ.get(CORPUS_ENV, "")
        os.environ[CORPUS_ENV] = os.pathsep.join([str(Path(folder).expanduser().resolve())] + ([rest] if rest else []))


def corpus_path(name: str | os.PathLike) -> Path:
    """The file a corpus name means: an absolute path as given; a relative name in the first root that has it, else
    under the first root (where ``simulate`` writes it)."""
    p = Path(name).expanduser()
    if p.is_absolute():
        return p
    roots = corpus_roots()
    for root in roots:
        if (root / p).exists():
            return root / p
    return roots[0] / p


def corpus_name(path: str | os.PathLike) -> str:
    """The name to record for a corpus file: relative to the corpus root that holds it, else the path as given."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    for root in corpus_roots():
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(p)
