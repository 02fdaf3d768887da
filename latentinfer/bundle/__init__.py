"""Model bundles at run time: the card, sha256-checked weights, the decoders and the forward models.

A bundle is a folder with ``card.json``, weights in safetensors and the config that trained it::

    {"format": "latentinfer-bundle/1",
     "architecture": {"type": "mlp", ...},       # a builder registered in ARCHITECTURES
     "latent_names": ["z0", ...],
     "weights": "weights.safetensors",
     "sha256": "<hex digest of the weights file>"}

Weights are only ever read from safetensors (never pickle), after their sha256 is checked against the card, and
no path in a card may point outside its bundle folder. This station imports nothing from training
(:mod:`latentinfer.ive` writes bundles through it). Modules:

* :mod:`.card` -- reading and checking ``card.json`` (no torch: ``latentinfer models`` answers at once);
* :mod:`.forward` -- :class:`ForwardModel`, what the program calls;
* :mod:`.nets` -- the runtime networks (decoder, encoder, physical map, normaliser);
* :mod:`.ive` -- IVE bundles (``architecture.type: ive-decoder``) and :class:`IVEForwardModel`;
* :mod:`.loader` -- :func:`load_model`, :func:`save_bundle` and the plain ``mlp`` architecture.

Names that need torch are loaded on first use (module ``__getattr__``).
"""

from __future__ import annotations

import importlib

from ..errors import BundleError
from ..registry import Registry
from .card import FORMAT, bundle_file, check_prior, list_models, read_card

__all__ = ["load_model", "save_bundle", "register_architecture", "list_models", "read_card", "bundle_file", "FORMAT",
           "ARCHITECTURES", "ForwardModel", "IVEForwardModel", "PhysicalForwardModel", "check_prior"]

#: ``architecture.type`` -> ``builder(card, state_dict, folder_info) -> ForwardModel``.
ARCHITECTURES: Registry = Registry("architecture type", __name__, error=BundleError, skip=("card", "forward", "nets", "errorcov"))

_LAZY = {"load_model": "loader", "save_bundle": "loader", "register_architecture": "loader", "MLP": "loader",
         "ForwardModel": "forward", "IVEForwardModel": "ive", "PhysicalForwardModel": "ive", "write_ive_bundle": "ive"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
