"""Small, safe file I/O: the one reader of YAML, JSON and weights files (:func:`read_file`), the one sha256 check
(:func:`check_sha256`), atomic writes, and provenance records (versions, hashes).

Every reader fails with one line naming the file (an exception of the caller's class, so that the CLI exits 2);
YAML goes through ``yaml.safe_load`` only and weights through safetensors only (never pickle)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LatentInferError

__all__ = ["read_file", "check_sha256", "atomic_write_bytes", "atomic_write_text", "write_json", "sha256_file", "versions",
           "to_jsonable"]

_KINDS = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".safetensors": "safetensors"}


def read_file(path: str | os.PathLike, *, kind: str | None = None, error: type[Exception] = LatentInferError,
              missing: str = "file not found: {path}", label: str = "{path}", sha256: str | None = None) -> Any:
    """The contents of a YAML, JSON or safetensors file (``kind``, else from the suffix), or one ``error`` line.

    ``missing`` is the message for an absent file and ``label`` the prefix of every other message (both formatted
    with ``path``); YAML is read with ``safe_load``; a safetensors file is read only after its sha256 matches
    ``sha256`` when one is given (:func:`check_sha256`), and comes back as ``{name: tensor}``.
    """
    p = Path(path)
    kind = kind or _KINDS.get(p.suffix.lower())
    if kind not in ("YAML", "JSON", "safetensors"):
        raise ValueError(f"read_file: unknown kind {kind!r} for {p}")
    where = label.format(path=p)
    try:
        present = p.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        present = False
    if not present:
        raise error(missing.format(path=p))
    if kind == "safetensors":
        if sha256 is not None:
            check_sha256(p, sha256, error=error, label=where)
        from safetensors.torch import load_file  # torch: deferred so that YAML/JSON readers stay light

        try:
            return load_file(str(p))
        except Exception as exc:  # safetensors raises its own error types
            raise error(f"{where}: cannot read safetensors ({_first_line(exc)})") from None
    try:
        text = p.read_text()
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8
        what = "not a text file" if isinstance(exc, UnicodeDecodeError) else f"cannot read ({type(exc).__name__}: {_first_line(exc)})"
        raise error(f"{where}: {what}") from None
    try:
        if kind == "JSON":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except RecursionError:
        raise error(f"{where}: {kind} nested too deeply") from None
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, absurd numbers
        raise error(f"{where}: not valid {kind} ({_first_line(exc)})") from None


def check_sha256(path: str | os.PathLike, expected: str, *, error: type[Exception] = LatentInferError,
                 label: str | None = None) -> None:
    """Raise ``error`` (one line) unless the file's sha256 is ``expected``: corrupt or tampered files stop here."""
    got = sha256_file(path)
    if got != expected:
        raise error(f"{label or path}: sha256 mismatch (card {str(expected)[:12]}..., file {got[:12]}...): "
                    "corrupt or tampered file")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit] + "..."


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, default_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_mode() -> int:
    """Permissions of a newly created file under the current umask (mkstemp's own 0600 is too strict for outputs)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def to_jsonable(x: Any) -> Any:
    """Convert numpy/torch scalars and arrays to JSON types; NaN and inf become null."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_PKGS = ("latentinfer", "torch", "pyro-ppl", "numpy", "scipy", "arviz", "emcee", "sbi", "harmonic", "camb", "dask", "safetensors")


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages that shape the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in _PKGS:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
