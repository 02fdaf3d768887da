"""Model bundles: a folder with ``card.json``, weights in safetensors, and the config that trained them.

``card.json`` holds at least::

    {"format": "latentinfer-bundle/1",
     "architecture": {"type": "mlp", ...},       # a builder registered with register_architecture
     "latent_names": ["z0", ...],
     "weights": "weights.safetensors",
     "sha256": "<hex digest of the weights file>"}

Weights are only ever read from safetensors (never pickle), after their sha256 is checked against the card,
and no path in a card may point outside its bundle folder. Reading and checking a card needs no torch: that
part lives in :mod:`latentinfer.card` (re-exported here), so that ``latentinfer models`` answers at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .card import FORMAT, _one_line, _short, bundle_file, list_models, read_card  # torch-free; re-exported here
from .errors import BundleError
from .forward import ForwardModel
from .io import atomic_write_text, sha256_file
from .paths import resolve

__all__ = ["load_model", "save_bundle", "register_architecture", "list_models", "read_card", "bundle_file", "FORMAT"]

_ARCH: dict[str, Callable[[dict, dict[str, torch.Tensor], dict], ForwardModel]] = {}


def register_architecture(kind: str):
    """Decorator: register ``builder(card, state_dict, folder_info) -> ForwardModel`` for ``architecture.type``."""

    def deco(fn):
        _ARCH[kind] = fn
        return fn

    return deco


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
