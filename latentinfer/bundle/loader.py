"""Loading and saving bundles: :func:`load_model` (sha256-checked safetensors only) and :func:`save_bundle`; the
plain ``mlp`` architecture. See :mod:`latentinfer.bundle` for the format."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..errors import BundleError
from ..io import atomic_write_text, read_file, sha256_file
from ..paths import resolve
from . import ARCHITECTURES
from .card import FORMAT, _one_line, _short, bundle_file, read_card
from .forward import ForwardModel

__all__ = ["load_model", "save_bundle", "register_architecture", "MLP"]


def register_architecture(kind: str):
    """Decorator: register ``builder(card, state_dict, folder_info) -> ForwardModel`` for ``architecture.type``."""
    return ARCHITECTURES.register(kind)


def load_model(name_or_path: str | os.PathLike) -> ForwardModel:
    """Load a bundled forward model by name (a folder under ``models/``) or path; checks the weights' sha256."""
    folder = resolve("models", name_or_path)
    card = read_card(folder)
    weights = bundle_file(folder, card["weights"], "weights")
    if weights.suffix != ".safetensors":
        raise BundleError(f"{folder / 'card.json'}: weights must be a .safetensors file, got {weights.name}")
    state = read_file(weights, kind="safetensors", error=BundleError, sha256=card["sha256"],
                      missing=f"model bundle {folder}: weights file {weights.name} not found")
    arch = card["architecture"]
    builder = ARCHITECTURES.get(arch.get("type") if isinstance(arch, Mapping) else None, where=str(folder / "card.json"))
    model = builder(card, state, {"folder": folder})
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
    outs = arch.get("outputs")
    if not isinstance(outs, Mapping) or not outs or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in outs.values()):
        raise BundleError(f"{info['folder'] / 'card.json'}: key 'architecture.outputs' must map output names to sizes >= 1, got {_short(outs)}")
    try:
        module = MLP(len(card["latent_names"]), list(arch.get("hidden", [])), arch["outputs"], arch.get("activation", "tanh"))
        module.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise BundleError(f"{info['folder'] / 'card.json'}: weights do not fit the architecture ({_one_line(exc)})") from None
    return ForwardModel(module, card["latent_names"], default_priors=card.get("priors"), meta={"units": card.get("units", {})})
