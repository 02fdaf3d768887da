"""Model bundles: a folder with ``card.json``, weights in safetensors, and the config that trained them.

``card.json`` holds at least::

    {"format": "latentinfer-bundle/1",
     "architecture": {"type": "mlp", ...},       # a builder registered with register_architecture
     "latent_names": ["z0", ...],
     "weights": "weights.safetensors",
     "sha256": "<hex digest of the weights file>"}

Weights are only ever read from safetensors (never pickle), after their sha256 is checked against the card,
and no path in a card may point outside its bundle folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import BundleError, LatentInferError
from .forward import ForwardModel
from .io import atomic_write_text, sha256_file
from .paths import available, resolve
from .priors import check_spec

__all__ = ["load_model", "save_bundle", "register_architecture", "list_models", "read_card", "bundle_file", "FORMAT"]

FORMAT = "latentinfer-bundle/1"
_ARCH: dict[str, Callable[[dict, dict[str, torch.Tensor], dict], ForwardModel]] = {}


def register_architecture(kind: str):
    """Decorator: register ``builder(card, state_dict, folder_info) -> ForwardModel`` for ``architecture.type``."""

    def deco(fn):
        _ARCH[kind] = fn
        return fn

    return deco


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
    if not path.is_file():
        raise BundleError(f"model bundle {folder} has no card.json")
    try:
        card = json.loads(path.read_text())
    except (ValueError, RecursionError, OSError) as exc:  # bad JSON or UTF-8, absurd nesting or numbers
        raise BundleError(f"{path}: not valid JSON ({_one_line(exc)})") from None
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
            check_spec(spec, name)
        except LatentInferError as exc:
            raise BundleError(f"{path}: {exc}") from None
    return card


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(x) -> str:
    text = " ".join(repr(x).split())
    return text if len(text) <= 80 else text[:77] + "..."


def load_model(name_or_path: str | os.PathLike) -> ForwardModel:
    """Load a bundled forward model by name (a folder under ``models/``) or path; checks the weights' sha256."""
    _import_builtin_architectures()
    folder = resolve("models", name_or_path)
    card = read_card(folder)
    weights = bundle_file(folder, card["weights"], "weights")
    if weights.suffix != ".safetensors":
        raise BundleError(f"{folder / 'card.json'}: weights must be a .safetensors file, got {weights.name}")
    try:
        present = weights.is_file()
    except OSError:
        present = False
    if not present:
        raise BundleError(f"model bundle {folder}: weights file {weights.name} not found")
    digest = sha256_file(weights)
    if digest != card["sha256"]:
        raise BundleError(f"{weights}: sha256 mismatch (card {card['sha256'][:12]}..., file {digest[:12]}...): corrupt or tampered weights")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise BundleError(f"{weights}: cannot read safetensors ({_one_line(exc)})") from None
    arch = card["architecture"]
    kind = arch.get("type") if isinstance(arch, Mapping) else None
    if kind not in _ARCH:
        raise BundleError(f"{folder / 'card.json'}: unknown architecture type {_short(kind)} (known: {', '.join(sorted(_ARCH))})")
    model = _ARCH[kind](card, state, {"folder": folder})
    model.meta.setdefault("card", card)
    model.meta.setdefault("bundle", str(folder))
    return model


def save_bundle(folder: str | os.PathLike, card: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], extra_files: Mapping[str, str] | None = None) -> Path:
    """Write weights (safetensors), then ``card.json`` with their sha256; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / card.get("weights", "weights.safetensors")
    tmp = weights.with_name(f".{weights.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp))
    os.replace(tmp, weights)
    full = {"format": FORMAT, "weights": weights.name, **card, "sha256": sha256_file(weights)}
    for name, text in (extra_files or {}).items():
        atomic_write_text(bundle_file(folder, name, name), text)
    atomic_write_text(folder / "card.json", json.dumps(full, indent=2) + "\n")
    return folder


def list_models() -> dict[str, str]:
    """``{name: one-line description}`` of the bundles on the search path."""
    out = {}
    for name, folder in available("models").items():
        try:
            out[name] = str(read_card(folder).get("description", ""))
        except BundleError as exc:
            out[name] = f"(unreadable: {exc})"
    return out


# -- built-in architectures ------------------------------------------------------------------------------------
class MLP(torch.nn.Module):
    """A plain multilayer perceptron ``(..., d_in) -> {name: (..., n_name)}``."""

    def __init__(self, d_in: int, hidden: list[int], outputs: Mapping[str, int], activation: str = "tanh"):
        super().__init__()
        act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "silu": torch.nn.SiLU, "gelu": torch.nn.GELU}[activation]
        layers, d = [], d_in
        for h in hidden:
            layers += [torch.nn.Linear(d, h), act()]
            d = h
        self.body = torch.nn.Sequential(*layers)
        self.outputs = dict(outputs)
        self.head = torch.nn.Linear(d, sum(self.outputs.values()))

    def forward(self, z):
        y = self.head(self.body(z))
        return dict(zip(self.outputs, torch.split(y, list(self.outputs.values()), dim=-1)))


@register_architecture("mlp")
def _build_mlp(card, state, info) -> ForwardModel:
    arch = card["architecture"]
    try:
        module = MLP(len(card["latent_names"]), list(arch.get("hidden", [])), arch["outputs"], arch.get("activation", "tanh"))
        module.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise BundleError(f"{info['folder'] / 'card.json'}: weights do not fit the architecture ({_one_line(exc)})") from None
    return ForwardModel(module, card["latent_names"], default_priors=card.get("priors"), meta={"units": card.get("units", {})})


def _import_builtin_architectures() -> None:
    import importlib

    for mod in ("latentinfer.ive.bundle",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("latentinfer"):
                raise
