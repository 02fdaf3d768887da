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

from .errors import BundleError
from .forward import ForwardModel
from .io import atomic_write_text, sha256_file
from .paths import available, resolve

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
    if not isinstance(rel, str) or not rel:
        raise BundleError(f"{folder / 'card.json'}: key '{key}' must be a file name")
    p = (folder / rel).resolve()
    if not p.is_relative_to(folder.resolve()):
        raise BundleError(f"{folder / 'card.json'}: key '{key}' points outside the bundle ({rel})")
    return p


def read_card(folder: Path) -> dict:
    path = folder / "card.json"
    if not path.is_file():
        raise BundleError(f"model bundle {folder} has no card.json")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise BundleError(f"{path}: a card must be a JSON object")
    for key in ("format", "architecture", "latent_names", "weights", "sha256"):
        if key not in card:
            raise BundleError(f"{path}: missing key '{key}'")
    if card["format"] != FORMAT:
        raise BundleError(f"{path}: unsupported format {card['format']!r} (expected {FORMAT})")
    return card


def load_model(name_or_path: str | os.PathLike) -> ForwardModel:
    """Load a bundled forward model by name (a folder under ``models/``) or path; checks the weights' sha256."""
    _import_builtin_architectures()
    folder = resolve("models", name_or_path)
    card = read_card(folder)
    weights = bundle_file(folder, card["weights"], "weights")
    if weights.suffix != ".safetensors":
        raise BundleError(f"{folder / 'card.json'}: weights must be a .safetensors file, got {weights.name}")
    if not weights.is_file():
        raise BundleError(f"model bundle {folder}: weights file {weights.name} not found")
    digest = sha256_file(weights)
    if digest != card["sha256"]:
        raise BundleError(f"{weights}: sha256 mismatch (card {card['sha256'][:12]}..., file {digest[:12]}...): corrupt or tampered weights")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise BundleError(f"{weights}: cannot read safetensors ({exc})") from None
    arch = card["architecture"]
    kind = arch.get("type") if isinstance(arch, Mapping) else None
    if kind not in _ARCH:
        raise BundleError(f"{folder / 'card.json'}: unknown architecture type {kind!r} (known: {', '.join(sorted(_ARCH))})")
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
    except (KeyError, RuntimeError, TypeError) as exc:
        raise BundleError(f"{info['folder'] / 'card.json'}: weights do not fit the architecture ({exc})") from None
    return ForwardModel(module, card["latent_names"], default_priors=card.get("priors"), meta={"units": card.get("units", {})})


def _import_builtin_architectures() -> None:
    import importlib

    for mod in ("latentinfer.ive.bundle",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("latentinfer"):
                raise
