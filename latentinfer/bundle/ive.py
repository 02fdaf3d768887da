"""IVE bundles: write a trained model to ``models/<name>/`` and load it back as a :class:`IVEForwardModel`.

Files of a bundle::

    card.json              latent names/labels, ell grid, architecture, corpus, training settings, accuracy, versions,
                           sha256 of every weights file (checked on load)
    decoder.safetensors    decoder MLP, PCA expansion, normaliser (reference + per-ell scale), error covariances
    encoder.safetensors    encoder MLP (for ``encode`` and interpretation)
    physical.safetensors   the map physical parameters -> latents
    train.yaml             the training config that reproduces the bundle
    validation.npz         held-out corpus rows (float32 spectra, keys as in the corpus)

The architecture type is ``"ive-decoder"``; :func:`latentinfer.load_model` dispatches here. Training
(:mod:`latentinfer.ive`) writes bundles with :func:`write_ive_bundle`; nothing here imports training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import BundleError, LatentInferError
from ..grid import ELL_MAX, ELL_MIN, SPECTRA, UNITS, ell_grid
from ..io import read_file, sha256_file
from . import ARCHITECTURES
from .card import bundle_file
from .errorcov import LowRankErrorCov
from .forward import ForwardModel
from .loader import save_bundle
from .nets import Decoder, Encoder, Normaliser, PhysicalMap

__all__ = ["IVEForwardModel", "PhysicalForwardModel", "write_ive_bundle", "UNITS"]

_FILES = {"encoder": "encoder.safetensors", "physical": "physical.safetensors"}


class PhysicalForwardModel(ForwardModel):
    """Spectra from physical parameters: ``theta (..., p)`` (corpus names and units) -> D_ell dict, ell 2..3200."""

    def emulate(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``{name: value or array}`` -> ``{S: numpy (..., 3199)}`` D_ell (muK^2; PP dimensionless)."""
        missing = [n for n in self.latent_names if n not in params]
        unknown = [n for n in params if n not in self.latent_names]
        if unknown:
            raise LatentInferError(f"emulate: unknown parameter '{unknown[0]}' (expected {', '.join(self.latent_names)})")
        if missing:
            raise LatentInferError(f"emulate: missing parameter '{missing[0]}' (expected {', '.join(self.latent_names)})")
        dtype = next(self.parameters()).dtype
        arrs = np.broadcast_arrays(*[np.asarray(params[n], np.float64) for n in self.latent_names])
        theta = torch.as_tensor(np.stack(arrs, -1), dtype=dtype)
        with torch.no_grad():
            return {k: v.numpy() for k, v in self(theta).items()}


class IVEForwardModel(ForwardModel):
    """The decoder of a trained IVE: latents ``z (..., d)`` -> ``{TT, TE, EE, PP: (..., 3199)}`` at ell 2..3200.

    TT, TE, EE are lensed D_ell in muK^2, PP is [L(L+1)]^2 C_L^phiphi / 2pi. Differentiable, batched.
    """

    def __init__(self, decoder: Decoder, encoder: Encoder, physical: PhysicalMap, latent_names, *, box, names,
                 error_cov=None, error_cov_physical=None, meta=None):
        super().__init__(decoder, latent_names, meta=meta)
        self.error_cov = error_cov  # a lazy LowRankErrorCov (set after init: dict() would expand it)
        self.encoder = encoder
        self.physical_map = physical
        self._box = (np.asarray(box[0], np.float64), np.asarray(box[1], np.float64))
        self._names = list(names)
        self._error_cov_physical = error_cov_physical

    @property
    def ell(self) -> np.ndarray:
        """The output multipoles, every integer 2..3200."""
        return ell_grid()

    @property
    def parameter_names(self) -> list[str]:
        """Physical parameter names of the training corpus, in order."""
        return list(self._names)

    def physical(self) -> PhysicalForwardModel:
        """A forward model whose inputs are the physical parameters, bounded by the corpus box, with the card's
        ``priors`` as default priors (uniform over the box where the card names none: narrower where the training rows
        go past the prior edge, ``TrainConfig.prior_box``)."""
        bounds = {n: (float(lo), float(hi)) for n, lo, hi in zip(self._names, *self._box)}
        card_priors = self.meta.get("card", {}).get("priors") or {}
        priors = {n: card_priors.get(n) or {"uniform": list(b)} for n, b in bounds.items()}
        fm = PhysicalForwardModel(torch.nn.Sequential(self.physical_map, self.module), self._names,
                                  default_priors=priors, bounds=bounds, meta={**self.meta, "space": "physical"})
        fm.error_cov = self._error_cov_physical
        return fm

    def emulate(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Spectra from physical parameters ``{"H0": ..., ...}`` -> ``{S: numpy (..., 3199)}`` (see :meth:`physical`)."""
        return self.physical().emulate(params)

    def encode(self, spectra: Mapping[str, Any]) -> torch.Tensor:
        """Encoder mean ``(..., d)`` of spectra ``{TT, TE, EE, PP: (..., 3199)}`` at ell 2..3200 (D_ell as output)."""
        for s in SPECTRA:
            if s not in spectra:
                raise LatentInferError(f"encode: missing spectrum '{s}'")
            if np.shape(spectra[s])[-1] != len(ell_grid()):
                raise LatentInferError(f"encode: spectrum '{s}' has {np.shape(spectra[s])[-1]} values, expected 3199 (ell 2..3200)")
        D = {s: np.asarray(torch.as_tensor(spectra[s]).detach().cpu().numpy(), np.float64) for s in SPECTRA}
        norm: Normaliser = self.module.normaliser
        dtype = norm.ref_TT.dtype
        x = {s: torch.as_tensor(v, dtype=dtype) for s, v in norm.encode(D).items()}
        with torch.no_grad():
            mu, _ = self.encoder(self.module.expansion.project(x).to(self.encoder.z_shift.dtype))
        return mu


def _split_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def write_ive_bundle(folder: str | Path, card: Mapping[str, Any], decoder: Decoder, encoder: Encoder,
                     physical: PhysicalMap, error_covs: Mapping[str, LowRankErrorCov],
                     extra_files: Mapping[str, str] | None = None) -> Path:
    """Write the three safetensors files and the card (sha256 of each file recorded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for key, module in (("encoder", encoder), ("physical", physical)):
        path = folder / _FILES[key]
        save_file({k: v.detach().float().contiguous() for k, v in module.state_dict().items()}, str(path))
        hashes[_FILES[key]] = sha256_file(path)
    state = {f"decoder.{k}": v.float() for k, v in decoder.state_dict().items()}
    for name, cov in error_covs.items():
        state.update(cov.state_dict(prefix=f"errcov_{name}"))
    full = {**card, "weights": "decoder.safetensors", "files": hashes}
    return save_bundle(folder, full, state, extra_files=extra_files)


def _load_checked(folder: Path, rel: str, digest: str) -> dict[str, torch.Tensor]:
    path = bundle_file(folder, rel, f"files.{rel}")
    return read_file(path, kind="safetensors", error=BundleError, sha256=digest,
                     missing=f"model bundle {folder}: weights file {rel} not found")


@ARCHITECTURES.register("ive-decoder")
def _build(card: dict, state: dict[str, torch.Tensor], info: dict) -> IVEForwardModel:
    folder: Path = info["folder"]
    where = folder / "card.json"
    arch = card["architecture"]
    try:
        d, k = int(arch["latent_dim"]), int(arch["n_pca"])
        ell = card["ell"]
        lo, hi = int(ell["min"]), int(ell["max"])
        files = dict(card["files"])
        box = (card["corpus"]["box_low"], card["corpus"]["box_high"])
        names = list(card["corpus"]["names"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: incomplete ive-decoder card ({exc!r})") from None
    n_w = int(state["decoder.normaliser.ref_TT"].shape[0]) if "decoder.normaliser.ref_TT" in state else -1
    if (lo, hi) != (ELL_MIN, ELL_MAX) or hi - lo + 1 != n_w:
        raise BundleError(f"{where}: ell grid {lo}..{hi} does not match the weights ({n_w} multipoles) "
                          f"and the output grid ell {ELL_MIN}..{ELL_MAX}")
    dec_state = _split_state(state, "decoder.")
    pca = {kk.removeprefix("expansion."): v.numpy() for kk, v in dec_state.items() if kk.startswith("expansion.")}
    norm = Normaliser({s: dec_state[f"normaliser.ref_{s}"] for s in SPECTRA}, {s: dec_state[f"normaliser.scale_{s}"] for s in SPECTRA})
    try:
        decoder = Decoder(d, k, list(arch["decoder_hidden"]), pca, norm, arch.get("activation", "silu"))
        decoder.load_state_dict(dec_state)
        encoder = Encoder(k, d, list(arch["encoder_hidden"]), arch.get("activation", "silu"), arch.get("encoder_pca"))
        encoder.load_state_dict(_load_checked(folder, "encoder.safetensors", files["encoder.safetensors"]))
        pmap = PhysicalMap(np.asarray(box[0]), np.asarray(box[1]), d, list(arch["physical_hidden"]), arch.get("activation", "silu"))
        pmap.load_state_dict(_load_checked(folder, "physical.safetensors", files["physical.safetensors"]))
    except (KeyError, RuntimeError, TypeError) as exc:
        raise BundleError(f"{where}: weights do not fit the architecture ({str(exc).splitlines()[0]})") from None
    model = IVEForwardModel(decoder.double().eval(), encoder.double().eval(), pmap.double().eval(),
                            card["latent_names"], box=box, names=names,
                            error_cov=LowRankErrorCov.from_state_dict(state, "errcov_latent"),
                            error_cov_physical=LowRankErrorCov.from_state_dict(state, "errcov_physical"),
                            meta={"units": UNITS, "ell": [ELL_MIN, ELL_MAX]})
    for p in model.parameters():
        p.requires_grad_(False)
    return model
