"""Fine-tuning from a written bundle (``TrainConfig.init_from``): training starts from its weights, not from scratch.

What comes from the source bundle and is kept fixed, so that the weights keep their meaning:

* the normaliser (reference and per-ell scale) and the PCA expansion (components, means, standard deviations):
  the target space and the noise-weighted chi^2 are the bundle's, not refitted to the new rows;
* the latent basis (``z_shift``, ``z_unmix`` of the encoder, ``z_mix`` of the decoder): no re-standardisation and
  no new ICA, so the latents and their labels (``latent_labels``, ``latent_basis`` of the card) carry over;
* the held-out test rows: the bundle's own ``validation.npz``. Every corpus row with the same parameters as one of
  them is dropped from training and validation, so accuracy is measured on the rows the source was measured on.

What trains: the decoder's and the physical map's networks, then the encoder's, with the config's (short, low learning
rate) stages; each stage starts from the bundle and keeps its best validation score, which starts at the bundle's own,
so a fine-tune never leaves the validation rows worse than it found them. ``max_epochs: 0`` reproduces the bundle.

``init_replay`` (rehearsal) adds training rows where the CAMB rows that trained the source are not at hand: the rows
of Sobol design recipes (``latentinfer simulate``'s arguments, e.g. those of the source's ``simulate:`` block), less the
held-out rows and those outside ``init_replay_box``, with spectra emulated by the source (physical map + decoder).
They train the decoder and the physical map only: the encoder sees CAMB rows, because an emulated spectrum's small
PCA components are the decoder's and lie off the encoder's inputs (encode -> decode chi^2 ~ 100 on them).

The card records ``training.init_from``: the bundle's name, folder and the sha256 of its three weights files, the rows
left out as held out, the replay rows, and how far the physical map's latents moved (rms over the training rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bundle import load_model
from ..bundle.nets import Normaliser
from ..errors import ConfigError, DataError, LatentInferError
from ..grid import SPECTRA
from ..simulate.design import parse_box, parse_rows, sobol_design
from .data import Corpus

__all__ = ["InitBundle", "load_init", "held_out_rows", "check_replay", "replay_rows"]

_ARCH_KEYS = ("latent_dim", "n_pca", "encoder_pca", "encoder_hidden", "decoder_hidden", "physical_hidden", "activation")


@dataclass
class InitBundle:
    """The source bundle of a fine-tune: its card, float32 state dicts, normaliser and PCA (as written)."""

    folder: Path
    card: dict
    decoder: dict[str, torch.Tensor]
    encoder: dict[str, torch.Tensor]
    physical: dict[str, torch.Tensor]

    @property
    def pca(self) -> dict[str, np.ndarray]:
        return {k.removeprefix("expansion."): v.double().numpy() for k, v in self.decoder.items() if k.startswith("expansion.")}

    def normaliser(self):
        return Normaliser({s: self.decoder[f"normaliser.ref_{s}"] for s in SPECTRA},
                          {s: self.decoder[f"normaliser.scale_{s}"] for s in SPECTRA})

    def record(self, name: str) -> dict:
        """What the card says about the source: ``name`` as configured, its folder and weights' sha256."""
        return {"name": name, "bundle": self.card.get("name"), "folder": str(self.folder),
                "sha256": {"decoder.safetensors": self.card.get("sha256"), **dict(self.card.get("files", {}))}}


def load_init(cfg) -> InitBundle:
    """Load ``cfg.init_from`` (a bundle folder or a name under ``models/``) and check that ``cfg`` fits it.

    Raises :class:`ConfigError` (one line, key ``init_from``) when the bundle is missing or unreadable, is not an IVE
    bundle, or its architecture differs from the config's (``latent_dim``, ``n_pca``, ``encoder_pca``, hidden sizes,
    activation)."""
    try:
        model = load_model(cfg.init_from)
    except LatentInferError as exc:
        raise ConfigError(f"train config: key 'init_from' {cfg.init_from!r}: {exc}") from None
    folder = Path(model.meta["bundle"])
    card = model.meta["card"]
    arch = card.get("architecture", {})
    if arch.get("type") != "ive-decoder" or not hasattr(model, "encoder"):
        raise ConfigError(f"train config: key 'init_from' {cfg.init_from!r}: {folder} is a {arch.get('type')!r} bundle, "
                          "not an IVE (ive-decoder) bundle")
    mine = cfg.to_dict()
    for key in _ARCH_KEYS:
        theirs = arch.get(key, "silu" if key == "activation" else None)
        if key == "encoder_pca" and theirs is None:
            theirs = arch.get("n_pca")
        if mine[key] != theirs:
            raise ConfigError(f"train config: key '{key}' is {mine[key]!r} but the init_from bundle {folder} has {theirs!r} "
                              "(a fine-tune keeps the architecture: set it to the bundle's)")
    if not (folder / "validation.npz").is_file():
        raise ConfigError(f"train config: key 'init_from' {cfg.init_from!r}: {folder} has no validation.npz (its "
                          "held-out rows, which a fine-tune keeps held out)")
    f32 = lambda m: {k: v.detach().float().clone() for k, v in m.state_dict().items()}  # noqa: E731  (exact: written as float32)
    return InitBundle(folder, card, f32(model.module), f32(model.encoder), f32(model.physical_map))


def held_out_rows(params: np.ndarray, test_params: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``params (N, p)`` equal (every parameter) to a row of ``test_params (M, p)``."""
    keys = {tuple(r) for r in np.asarray(test_params, np.float64)}
    return np.array([tuple(r) in keys for r in np.asarray(params, np.float64)], dtype=bool)



def check_replay(cfg) -> None:
    """``init_replay`` / ``init_replay_box``: design recipes (``model, n, seed[, rows, box]``, as ``latentinfer
    simulate`` takes them) and a box of [low, high] per parameter; they need ``init_from``."""
    if (cfg.init_replay or cfg.init_replay_box) and not cfg.init_from:
        raise ConfigError("train config: key 'init_replay' needs init_from (its rows are emulated by that bundle)")
    if cfg.init_replay and not cfg.decoder_first:
        raise ConfigError("train config: key 'init_replay' needs decoder_first: true (replay rows train the decoder "
                          "and the map, not the encoder)")
    for name, r in cfg.init_replay.items():
        if not isinstance(r, dict) or not {"model", "n", "seed"} <= set(r) or not set(r) <= {"model", "n", "seed", "rows", "box"}:
            raise ConfigError(f"train config: key 'init_replay': '{name}' must map to {{model, n, seed[, rows, box]}}, got {r!r}")
        if r["model"] not in ("ede", "lcdm") or not all(isinstance(r[k], int) and not isinstance(r[k], bool) and r[k] >= 0
                                                       for k in ("n", "seed")) or r["n"] < 1:
            raise ConfigError(f"train config: key 'init_replay': '{name}' has a bad model, n or seed: {r!r}")
        try:
            parse_rows(r.get("rows"), r["n"]); parse_box(r.get("box"), r["model"])
        except ConfigError as exc:
            raise ConfigError(f"train config: key 'init_replay': '{name}': {exc}") from None
    for name, rng in cfg.init_replay_box.items():
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                 for x in rng) and rng[0] < rng[1]):
            raise ConfigError(f"train config: key 'init_replay_box': '{name}' must map to [low, high] with low < high, got {rng!r}")


def replay_rows(cfg, init: InitBundle, like, held_out: np.ndarray):
    """Rows of the ``init_replay`` designs with spectra emulated by the source bundle (physical map + decoder,
    float64), for training only: they hold the bundle where the CAMB rows that trained it are not at hand (rehearsal).
    Rows equal to a held-out row, or outside ``init_replay_box``, are left out. Returns ``(Corpus on like's stored
    grid, {S: (N, 3199)} spectra, record for the card)``."""
    model = load_model(init.folder)
    designs = []
    for name, r in cfg.init_replay.items():
        box = parse_box(r.get("box"), r["model"])
        if list(box) != list(like.names):
            raise DataError(f"init_replay '{name}': design parameters {', '.join(box)} are not the corpus's {', '.join(like.names)}")
        rows = parse_rows(r.get("rows"), r["n"])
        P = sobol_design(box, r["n"], r["seed"])
        designs.append(P if rows is None else P[rows])
    P = np.concatenate(designs)
    keep = ~held_out_rows(P, held_out)
    n_held = int((~keep).sum())
    for name, (lo, hi) in cfg.init_replay_box.items():
        if name not in like.names:
            raise ConfigError(f"train config: key 'init_replay_box' names '{name}', not a corpus parameter ({', '.join(like.names)})")
        j = like.names.index(name)
        keep &= (P[:, j] >= lo) & (P[:, j] <= hi)
    P = P[keep]
    with torch.no_grad():
        D = {s: np.asarray(v, np.float64) for s, v in model.emulate(dict(zip(like.names, P.T))).items()}
    stored = like.ell - like.ell.min() if like.ell.min() == 2 else None
    if stored is None:
        raise DataError("init_replay: the corpus ell grid does not start at ell = 2")
    c = Corpus(P, list(like.names), like.box_low, like.box_high, like.ell, {s: D[s][:, stored] for s in SPECTRA},
               np.full((len(P), len(like.derived_names)), np.nan), like.derived_names, ["init_replay"])
    record = {"designs": cfg.init_replay, "box": cfg.init_replay_box, "rows": int(len(P)), "left_out_held_out": n_held,
              "spectra": "emulated by the init_from bundle (physical map + decoder, float64), not CAMB; training rows only"}
    return c, D, record
