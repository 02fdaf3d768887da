"""Reading a model bundle's ``card.json`` without torch: the card checks, the bundle path guard, and the listing
behind ``latentinfer models``.

:mod:`latentinfer.bundle` (which needs torch for the weights) re-exports everything here; this module imports
only the standard library and the project's torch-free helpers, so that listing the installed models answers at
once. The prior check on a card's ``priors`` (:func:`check_prior`) follows :func:`latentinfer.priors.check_spec`
for JSON values (same normal form, same messages; a test compares the two).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import BundleError, ConfigError, LatentInferError
from ..io import read_file
from ..paths import available

__all__ = ["FORMAT", "read_card", "bundle_file", "list_models", "model_rows", "model_mode", "check_prior"]

FORMAT = "latentinfer-bundle/1"
_KINDS = {"normal": 2, "uniform": 2, "fixed": None, "mvnormal": 2, "truncnormal": 4}


def bundle_file(folder: Path, rel: str, key: str) -> Path:
    """``folder / rel``, refusing anything that resolves outside the bundle folder."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise BundleError(f"{folder / 'card.json'}: key '{key}' must be a file name")
    try:
        p = (folder / rel).resolve()  # follows symlinks: a link inside the bundle to a file outside is refused
    except (OSError, RuntimeError) as exc:
        raise BundleError(f"{folder / 'card.json'}: key '{key}' is not a usable path ({_one_line(exc)})") from None
    if not p.is_relative_to(folder.resolve()):
        raise BundleError(f"{folder / 'card.json'}: key '{key}' points outside the bundle ({rel})")
    return p


def read_card(folder: Path) -> dict:
    path = folder / "card.json"
    card = read_file(path, error=BundleError, missing=f"model bundle {folder} has no card.json")
    if not isinstance(card, dict):
        raise BundleError(f"{path}: a card must be a JSON object")
    for key in ("format", "architecture", "latent_names", "weights", "sha256"):
        if key not in card:
            raise BundleError(f"{path}: missing key '{key}'")
    if card["format"] != FORMAT:
        raise BundleError(f"{path}: unsupported format {_short(card['format'])} (expected {FORMAT})")
    if not isinstance(card["architecture"], dict) or not isinstance(card["architecture"].get("type"), str):
        raise BundleError(f"{path}: key 'architecture' must be an object with a string 'type'")
    names = card["latent_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise BundleError(f"{path}: key 'latent_names' must be a list of distinct non-empty names, got {_short(names)}")
    if not isinstance(card["weights"], str):
        raise BundleError(f"{path}: key 'weights' must be a file name, got {_short(card['weights'])}")
    sha = card["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"{path}: key 'sha256' must be 64 lower-case hex digits, got {_short(sha)}")
    for key in ("priors", "units"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            raise BundleError(f"{path}: key '{key}' must be an object, got {_short(card[key])}")
    corpus = card.get("corpus") if isinstance(card.get("corpus"), dict) else {}
    physical = corpus.get("names") if isinstance(corpus.get("names"), list) else []
    for name, spec in (card.get("priors") or {}).items():
        if name not in names and name not in physical:
            raise BundleError(f"{path}: key 'priors' names '{name}', which is neither a latent name nor a corpus parameter")
        try:
            check_prior(spec, name)
        except LatentInferError as exc:
            raise BundleError(f"{path}: {exc}") from None
    return card


def list_models() -> dict[str, str]:
    """``{name: one-line description}`` of the bundles on the search path."""
    out = {}
    for name, folder in available("models").items():
        try:
            out[name] = str(read_card(folder).get("description", ""))
        except BundleError as exc:
            out[name] = f"(unreadable: {exc})"
    return out


def model_mode(card: dict) -> str:
    """How a bundle's latents were made: ``"unsupervised"`` (discovered: no parameter supervision, raw latents),
    ``"supervised"`` (an IVE lined up with the parameters by supervision and a change of basis), or ``"-"`` for a
    network that is not an IVE. Cards written before the key existed are supervised IVEs."""
    if card.get("architecture", {}).get("type") != "ive-decoder":
        return "-"
    mode = card.get("mode")
    if mode in ("supervised", "unsupervised"):
        return mode
    basis = card.get("latent_basis") if isinstance(card.get("latent_basis"), dict) else {}
    return "unsupervised" if basis.get("method") == "none" else "supervised"


def model_rows() -> list[dict[str, str]]:
    """One row per bundle on the search path, for ``latentinfer models``: name, mode (:func:`model_mode`), latent
    count, held-out accuracy (Planck plik_lite dchi2 median / p99 of the encode-decode and emulate paths, from the
    card) and the description; an unreadable card says why in the description."""
    rows = []
    for name, folder in available("models").items():
        try:
            card = read_card(folder)
        except BundleError as exc:
            rows.append({"name": name, "mode": "?", "latents": "?", "dchi2": "?", "description": f"(unreadable: {exc})"})
            continue
        acc = card.get("accuracy") if isinstance(card.get("accuracy"), dict) else {}
        paths = [(k, acc[k]) for k in ("encode_decode", "emulate") if isinstance(acc.get(k), dict)]
        dchi2 = " | ".join(f"{_num(v.get('median'))} / {_num(v.get('p99'))}" for _, v in paths) or "-"
        rows.append({"name": name, "mode": model_mode(card), "latents": str(len(card["latent_names"])),
                     "dchi2": dchi2, "description": str(card.get("description", ""))})
    return rows


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and math.isfinite(x) else "?"


def check_prior(spec: Any, name: str) -> Any:
    """:func:`latentinfer.priors.check_spec` for a spec read from JSON or YAML (a dict or ``"standard_normal"``,
    never a pyro distribution), without importing torch. Returns the normalised spec; raises :class:`ConfigError`."""
    if spec == "standard_normal":
        return {"normal": [0.0, 1.0]}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            f"prior of '{name}' must be one of {{normal: [mean, sd]}}, {{uniform: [low, high]}}, "
            f"{{truncnormal: [mean, sd, low, high]}}, {{fixed: value}}; got {spec!r}"
        )
    (kind, args), = spec.items()
    if kind not in _KINDS:
        raise ConfigError(f"prior of '{name}': unknown kind '{kind}' (use normal, uniform, truncnormal or fixed)")
    if kind == "fixed":
        if not _is_number(args):
            raise ConfigError(f"prior of '{name}': fixed needs a finite number, got {args!r}")
        return {"fixed": float(args)}
    if kind == "mvnormal":
        return spec
    if kind == "truncnormal":
        if not isinstance(args, (list, tuple)) or len(args) != 4 or not all(_is_number(a) for a in args):
            raise ConfigError(f"prior of '{name}': truncnormal needs [mean, sd, low, high] (four finite numbers), got {args!r}")
        m, sd, lo, hi = (float(a) for a in args)
        if not sd > 0:
            raise ConfigError(f"prior of '{name}': truncnormal sd must be > 0, got {sd}")
        if not hi > lo:
            raise ConfigError(f"prior of '{name}': truncnormal needs low < high, got [{lo}, {hi}]")
        if _normal_mass(m, sd, lo, hi) < 1e-12:
            raise ConfigError(f"prior of '{name}': N({m:g}, {sd:g}) has no mass on [{lo:g}, {hi:g}]")
        return {"truncnormal": [m, sd, lo, hi]}
    if not isinstance(args, (list, tuple)) or len(args) != 2 or not all(_is_number(a) for a in args):
        raise ConfigError(f"prior of '{name}': {kind} needs a list of two finite numbers, got {args!r}")
    a, b = float(args[0]), float(args[1])
    if kind == "normal" and not b > 0:
        raise ConfigError(f"prior of '{name}': normal sd must be > 0, got {b}")
    if kind == "uniform" and not b > a:
        raise ConfigError(f"prior of '{name}': uniform needs low < high, got [{a}, {b}]")
    return {kind: [a, b]}


def _is_number(x: Any) -> bool:
    """A finite int or float (not a bool; not an int too large for a float)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _normal_mass(m: float, sd: float, lo: float, hi: float) -> float:
    phi = lambda x: 0.5 * math.erfc(-(x - m) / (sd * math.sqrt(2.0)))  # noqa: E731
    return phi(hi) - phi(lo)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(x) -> str:
    text = " ".join(repr(x).split())
    return text if len(text) <= 80 else text[:77] + "..."
