"""Training configs (YAML): a typed dataclass that validates itself; an unknown key is an error naming it.

Example (``models/cmb-lcdm/train.yaml``)::

    name: cmb-lcdm
    corpus: [lcdm.npz, lcdm_core.npz]          # names under the corpus root ($LATENTINFER_CORPUS)
    latent_dim: 6
    n_pca: 48
    encoder_hidden: [256, 256]
    decoder_hidden: [256, 256, 256]
    beta: 1.0e-5
    seed: 0
"""

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin


from ..errors import ConfigError
from ..io import read_file
from ..simulate.recipes import check_recipes

__all__ = ["TrainConfig", "load_train_config"]


@dataclass
class TrainConfig:
    """Settings of one IVE training run (all of them end up in the bundle card).

    Annotations are real types (no ``from __future__ import annotations`` here) so values are checked against them.
    ``lr_stages`` / ``batch_stages``: learning rate and batch size of each stage (decay by ~3-10 and growing
    batches, CosmoPower's recipe); a stage ends after ``patience`` epochs without validation improvement.
    ``test_from``: rows held out of training per corpus file (for ``validation.npz`` and accuracy); default
    splits ``n_test`` evenly. ``n_train`` > 0 caps the training rows (learning curves). ``latent_basis``: the
    coordinates the trained latents are given (:mod:`latentinfer.ive.basis`; independent components by default).
    ``joint_physical`` > 0 trains the physical map with the IVE (objective per row: the IVE's chi2 + beta KL, plus
    the chi2 of the spectra decoded from the map's latents, plus ``joint_physical`` times the squared distance
    between the map's latents and the encoder mean), so that the decoder also learns from exact parameters;
    early stopping then watches both paths, and the map is afterwards fine-tuned through the frozen decoder.
    ``decoder_first: true`` trains the physical map and the decoder first, as an emulator through the latent
    bottleneck, then the encoder alone on the beta-VAE objective through the frozen decoder, pulled towards the map's
    latents with weight ``joint_physical`` (which must then be > 0); see ``latentinfer.ive.train``.
    ``lcdm_as_ede``: LCDM corpus files whose rows join the training and validation rows of an EDE model at
    ``fde_zc = 0`` (:func:`latentinfer.ive.data.embed_lcdm`; CAMB's EDE at fde_zc = 0 is LCDM); never test rows.
    ``simulate``: how each corpus file made here is made (``latentinfer simulate`` arguments per file,
    :mod:`latentinfer.simulate.recipes`): ``latentinfer simulate --config`` remakes the missing ones.
    ``prior_box``: parameter -> [low, high], the bundle's default physical priors where they are narrower than the
    training box (the union of the corpus files' boxes), so that training rows past the prior edge keep the emulator
    from being at its own edge there; every held-out test row must lie inside it (accuracy is measured on the prior),
    and so does every validation row (early stopping and the error covariance on the prior; rows past it all train).
    ``mode: unsupervised`` (:mod:`latentinfer.ive.unsupervised`): no parameter supervision and no change of basis
    (``latent_basis: none``, raw encoder latents); ``spectra`` the outputs the loss and the encoder see (e.g. ``[TT]``);
    ``kl_scale``: ``per_output`` puts beta on the loss per output in noise units (chi2 / n_out + beta KL), the same for
    TT only and TT/TE/EE/PP; ``total`` is beta on the summed chi2 (supervised bundles); ``auto`` picks ``per_output``
    for the unsupervised mode and ``total`` otherwise. ``polish_epochs`` > 0 (unsupervised mode): after the beta-VAE,
    the encoder is frozen and the decoder alone trains on the chi2 of the spectra decoded from the encoder means (no
    KL, no sampling) for up to that many epochs (``polish_minutes`` of wall clock), through the same learning-rate
    stages: the latents keep what the VAE discovered, and the decoder gets back the accuracy that the KL term's noise
    on the latents cost it.
    ``init_from``: a bundle folder or model name to fine-tune (:mod:`latentinfer.ive.finetune`): training starts from
    its weights and keeps its normaliser, PCA expansion, latent basis and held-out rows (its ``validation.npz``; every
    corpus row equal to one of them is left out); the architecture keys must equal the bundle's; ``test_from`` must
    be empty and ``max_epochs: 0`` is allowed (the bundle itself, rewritten). Supervised mode only. ``init_replay``:
    Sobol design recipes (``{label: {model, n, seed[, rows, box]}}``, ``latentinfer simulate``'s arguments) whose rows,
    with spectra emulated by the ``init_from`` bundle rather than CAMB, join the training rows only (rehearsal: they
    hold the bundle where the rows that trained it are not at hand); ``init_replay_box`` (parameter -> [low, high])
    keeps only those inside it (e.g. away from where the bundle is wrong).
    """

    corpus: list[str]
    lcdm_as_ede: list[str] = field(default_factory=list)
    simulate: dict = field(default_factory=dict)
    prior_box: dict = field(default_factory=dict)
    name: str = "ive"
    description: str = ""
    latent_dim: int = 6
    n_pca: int = 48
    encoder_pca: int = 16
    encoder_hidden: list[int] = field(default_factory=lambda: [256, 256])
    decoder_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    physical_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    activation: Literal["silu", "tanh", "gelu", "relu"] = "silu"
    beta: float = 1.0e-5
    beta_start: float = 1.0e-7
    anneal_epochs: int = 200
    lr_stages: list[float] = field(default_factory=lambda: [1e-3, 3e-4, 1e-4, 3e-5, 1e-5])
    batch_stages: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 512])
    patience: int = 40
    max_epochs: int = 4000
    max_minutes: float = 12.0
    physical_max_minutes: float = 8.0
    val_fraction: float = 0.1
    n_test: int = 200
    test_from: list[int] = field(default_factory=list)
    n_train: int = 0
    error_rank: int = 16
    latent_basis: Literal["ica", "whiten", "standardise", "none"] = "ica"
    joint_physical: float = 0.0
    decoder_first: bool = False
    mode: Literal["supervised", "unsupervised"] = "supervised"
    spectra: list[str] = field(default_factory=lambda: ["TT", "TE", "EE", "PP"])
    kl_scale: Literal["auto", "total", "per_output"] = "auto"
    polish_epochs: int = 0
    polish_minutes: float = 10.0
    init_from: str = ""
    init_replay: dict = field(default_factory=dict)
    init_replay_box: dict = field(default_factory=dict)
    seed: int = 0
    threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        checks = {
            "latent_dim": self.latent_dim >= 1, "n_pca": 1 <= self.n_pca <= 512, "encoder_pca": 1 <= self.encoder_pca, "beta": self.beta >= 0,
            "beta_start": 0 <= self.beta_start <= max(self.beta, 0), "patience": self.patience >= 1,
            "max_epochs": self.max_epochs >= (0 if self.init_from else 1), "val_fraction": 0 < self.val_fraction < 0.5,
            "n_test": self.n_test >= 0, "lr_stages": len(self.lr_stages) >= 1 and all(x > 0 for x in self.lr_stages),
            "batch_stages": len(self.batch_stages) == len(self.lr_stages) and all(b >= 1 for b in self.batch_stages),
            "corpus": len(self.corpus) >= 1, "error_rank": self.error_rank >= 1, "threads": self.threads >= 1, "joint_physical": self.joint_physical >= 0 and (self.joint_physical > 0 or not self.decoder_first),
            "test_from": all(n >= 0 for n in self.test_from) and (not self.test_from or len(self.test_from) == len(self.corpus)),
            "max_minutes": self.max_minutes > 0, "physical_max_minutes": self.physical_max_minutes > 0,
            "polish_epochs": self.polish_epochs >= 0, "polish_minutes": self.polish_minutes > 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"train config: key '{key}' has an invalid value {getattr(self, key)!r}")
        if self.init_from and self.mode != "supervised":
            raise ConfigError("train config: key 'init_from': fine-tuning needs mode: supervised")
        if self.init_from and any(self.test_from):
            raise ConfigError(f"train config: key 'test_from' {self.test_from!r}: with init_from the held-out rows are the "
                              "bundle's own (its validation.npz); leave test_from out")
        from .finetune import check_replay

        check_replay(self)
        from .unsupervised import check_mode  # same station; unsupervised imports this module

        check_mode(self)

        check_recipes(self.simulate, list(self.corpus) + list(self.lcdm_as_ede))
        for name, rng in self.prior_box.items():
            if not (isinstance(name, str) and isinstance(rng, list) and len(rng) == 2 and all(_is(x, float) for x in rng)
                    and rng[0] < rng[1]):
                raise ConfigError(f"train config: key 'prior_box': '{name}' must map to [low, high] with low < high, got {rng!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "train config") -> "TrainConfig":
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a train config must be a mapping of keys")
        allowed = {f.name for f in fields(cls)}
        for key in raw:
            if key not in allowed:
                raise ConfigError(f"{source}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
        if "corpus" not in raw:
            raise ConfigError(f"{source}: missing key 'corpus'")
        try:
            return cls(**raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {str(exc).removeprefix('train config: ')}") from None


def _check_type(name: str, val: Any, typ: Any) -> None:
    origin = get_origin(typ)
    if origin is Literal:
        if val not in get_args(typ):
            raise ConfigError(f"train config: key '{name}' must be one of {', '.join(map(str, get_args(typ)))}, got {val!r}")
        return
    if origin is list:
        (inner,) = get_args(typ)
        if not isinstance(val, list) or not all(_is(x, inner) for x in val):
            raise ConfigError(f"train config: key '{name}' must be a list of {inner.__name__}, got {val!r}")
        return
    if not _is(val, typ):
        raise ConfigError(f"train config: key '{name}' must be {typ.__name__}, got {val!r}")


def _is(x: Any, t: type) -> bool:
    if t is float:
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if t is int:
        return isinstance(x, int) and not isinstance(x, bool)
    return isinstance(x, t)


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a YAML training config."""
    p = Path(path)
    raw = read_file(p, kind="YAML", error=ConfigError, missing="train config not found: {path}")
    return TrainConfig.from_dict(raw, source=str(p))
