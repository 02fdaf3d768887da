"""The ``bandpower`` likelihood type: one spec-driven Gaussian likelihood for binned CMB spectra.

Every experiment in ``likelihoods/`` (Planck plik_lite and low-ell bins, SPT-3G, Planck and ACT lensing) is a
folder with data files and a ``likelihood.yaml`` of this type; adding one needs a folder, not code.

Model, per block ``b`` (a spectrum such as TT), for theory ``X`` at ``ell = 2..`` (see :mod:`.theory`)::

    model_b = post_b( M_b @ X[field_b] )        M_b = binning_b @ A_1 @ ... @ A_k  (ell-stage transforms folded)

and ``log L = log N(data | concat_b model_b, C)`` (the ``-chi2/2`` part is what experiment codes report).

Spec keys
---------
``type: bandpower``, ``description`` (one line), ``units`` (free text), ``data: {file, column}``,
``covariance: {file, format, triangle, column, hartlap_n_sims}`` (see :func:`.specfiles.load_matrix`; with
``hartlap_n_sims`` N the covariance is divided by ``h = (N - n_data - 2)/(N - 1)``), ``nuisance`` (list of
``{names, prior, latex}``; ``prior: {mvnormal: {mean, cov_file}}`` for a correlated block), ``blocks`` (list of
``{name, theory, n_bins, binning, transforms}``, in the row order of the data file, see :mod:`.binning` and
:mod:`.transforms`), ``options`` (``{spectra: {default, choices: {NAME: [block names]}}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..checks import check_keys, require
from ..errors import ConfigError, DataError, LatentInferError
from .base import Likelihood, Nuisance
from .binning import binning_matrix
from .registry import register_likelihood_type
from .specfiles import load_matrix, load_table, load_vector
from .theory import ELL_MIN, THEORY_KEYS
from .transforms import make_transform

__all__ = ["BandpowerLikelihood", "Block", "load_bandpower"]

_SPEC_KEYS = {"type", "name", "description", "units", "data", "covariance", "nuisance", "blocks", "options"}
_BLOCK_KEYS = {"name", "theory", "n_bins", "binning", "transforms"}


class Block(torch.nn.Module):
    """One spectrum of a bandpower likelihood: a folded binning matrix and its bins-stage transforms.

    ``matrix`` is ``(n_bins, stop - start)`` acting on ``theory[field][..., start:stop]``, i.e. on multipoles
    ``ell = start + 2 .. stop + 1``: the columns where the folded matrix is not zero.
    """

    def __init__(self, name: str, field: str, matrix: np.ndarray, start: int, post: list):
        super().__init__()
        self.name, self.field, self.start = name, field, int(start)
        self.stop = self.start + matrix.shape[1]
        self.register_buffer("matrix", torch.as_tensor(matrix, dtype=torch.float64))
        self.post = torch.nn.ModuleList(post)
        # top-hat bins (plik's): each bin a contiguous run of multipoles, bins in order. Then the product is a
        # weighted sum over equal-width groups of bins: O(n_ell) per theory with contiguous memory access,
        # instead of O(n_bins n_ell) for the dense product.
        self.groups = _tophat_groups(matrix)
        if self.groups is not None:
            self.sizes = [n * w if n else w for n, w in self.groups]  # a gap (n = 0) spans w multipoles
            pieces = np.split(matrix.sum(0), np.cumsum(self.sizes)[:-1])
            for k, ((n, w), piece) in enumerate(zip(self.groups, pieces)):
                if n:
                    self.register_buffer(f"weight{k}", torch.as_tensor(piece.reshape(n, w), dtype=torch.float64))

    @property
    def n_bins(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def ell_range(self) -> tuple[int, int]:
        return self.start + ELL_MIN, self.stop - 1 + ELL_MIN

    @property
    def ell_eff(self) -> np.ndarray:
        """Effective multipole of each bin ``(n_bins,)``: the mean ell weighted by the binning matrix's |row|."""
        w = self.matrix.abs().numpy()
        ell = np.arange(self.start, self.stop) + ELL_MIN
        return (w @ ell) / np.maximum(w.sum(1), 1e-300)

    def forward(self, spectrum: torch.Tensor, nuisance) -> torch.Tensor:
        if self.groups is not None:
            weights = [getattr(self, f"weight{k}").to(spectrum.dtype) for k, (n, _) in enumerate(self.groups) if n]
            out = _TopHat.apply(spectrum, self.start, tuple(self.groups), *weights)
        else:
            x = spectrum[..., self.start : self.stop]
            out = x @ self.matrix.to(x.dtype).T
        for tr in self.post:
            out = tr(out, nuisance)
        return out


class _TopHat(torch.autograd.Function):
    """Top-hat binning ``(..., n_ell_theory) -> (..., n_bins)`` by groups of equal-width bins.

    Same numbers as ``x[..., start:stop] @ M.T``; its backward builds the theory gradient with one concatenation
    (no zero-filled copy per slice), which matters for batches of 10^4 theories. The backward is made of
    differentiable operations, so Hessians (e.g. emcee's start) work too.
    """

    @staticmethod
    def forward(ctx, spectrum, start, groups, *weights):
        ctx.start, ctx.groups, ctx.n_ell = start, groups, spectrum.shape[-1]
        ctx.save_for_backward(*weights)
        sums, a, k = [], start, 0
        for n, w in groups:
            if n:
                block = spectrum[..., a : a + n * w].unflatten(-1, (n, w))
                sums.append((block * weights[k]).sum(-1))
                k += 1
            a += n * w if n else w
        return torch.cat(sums, dim=-1)

    @staticmethod
    def backward(ctx, grad):
        weights = ctx.saved_tensors
        batch = grad.shape[:-1]
        parts, a, b, k = [], ctx.start, 0, 0
        if ctx.start:
            parts.append(grad.new_zeros(batch + (ctx.start,)))
        for n, w in ctx.groups:
            if n:
                parts.append((grad[..., b : b + n].unsqueeze(-1) * weights[k]).flatten(-2))
                b, k = b + n, k + 1
                a += n * w
            else:
                parts.append(grad.new_zeros(batch + (w,)))
                a += w
        if a < ctx.n_ell:
            parts.append(grad.new_zeros(batch + (ctx.n_ell - a,)))
        return (torch.cat(parts, dim=-1), None, None) + (None,) * len(weights)


def _tophat_groups(M: np.ndarray) -> list[tuple[int, int]] | None:
    """``[(n_bins, width), ...]`` covering the columns of ``M`` in order if its bins are consecutive, contiguous
    runs of columns (a gap is a group with ``n_bins = 0``); ``None`` otherwise (windows that overlap)."""
    nz = M != 0
    if np.any(nz.sum(0) > 1):
        return None
    groups: list[list[int]] = []
    col = 0
    for i in range(M.shape[0]):
        cols = np.nonzero(nz[i])[0]
        if cols.size == 0 or cols[0] < col or cols[-1] - cols[0] + 1 != cols.size:
            return None
        if cols[0] > col:
            groups.append([0, int(cols[0] - col)])
        width = int(cols.size)
        if groups and groups[-1][0] and groups[-1][1] == width:
            groups[-1][0] += 1
        else:
            groups.append([1, width])
        col = int(cols[-1]) + 1
    if col < M.shape[1]:
        groups.append([0, M.shape[1] - col])
    return [(n, w) for n, w in groups]


class BandpowerLikelihood(Likelihood):
    """Gaussian likelihood of bandpowers ``(n_data,)`` given theory spectra ``{field: (..., n_ell)}``.

    Built by :func:`load_bandpower` from a spec; see the module docstring for the model.
    """

    def __init__(self, data, cov, *, name: str, blocks: list[Block], nuisance=(), meta=None):
        super().__init__(data, cov, name=name, nuisance=nuisance, meta=meta)
        if sum(b.n_bins for b in blocks) != self.n_data:
            raise DataError(f"{name}: the blocks have {sum(b.n_bins for b in blocks)} bins, the data {self.n_data}")
        self.blocks = torch.nn.ModuleList(blocks)

    @property
    def requires(self):  # type: ignore[override]
        """The theory spectra used, e.g. ``("TT",)`` for plik_lite with ``spectra="TT"``."""
        return tuple(dict.fromkeys(b.field for b in self.blocks))

    @property
    def lmax(self) -> dict[str, int]:
        """Largest multipole needed per theory spectrum."""
        out: dict[str, int] = {}
        for b in self.blocks:
            out[b.field] = max(out.get(b.field, 0), b.ell_range[1])
        return out

    def check_theory(self, sizes: Mapping[str, int]) -> None:
        super().check_theory(sizes)
        for field, lmax in self.lmax.items():
            if sizes[field] + ELL_MIN - 1 < lmax:
                raise DataError(
                    f"likelihood '{self.name}' needs {field} up to ell = {lmax}; the theory gives ell = "
                    f"{ELL_MIN}..{sizes[field] + ELL_MIN - 1}"
                )

    def predict(self, theory, nuisance):
        """Binned model ``(..., n_data)``; ``theory[field]`` is ``(..., n_ell)`` from ell = 2."""
        for field in self.requires:
            if field not in theory:
                raise LatentInferError(f"likelihood '{self.name}' needs theory spectrum '{field}' (given: {sorted(theory)})")
        self.check_theory({k: theory[k].shape[-1] for k in self.requires})
        return self._predict_unchecked(theory, nuisance)

    @property
    def theory_lengths(self) -> dict[str, int]:
        """``{field: n}``: the blocks read ``theory[field][..., :n]`` only (ell = 2 .. n + 1)."""
        out: dict[str, int] = {}
        for b in self.blocks:
            out[b.field] = max(out.get(b.field, 0), b.stop)
        return out

    def _predict_unchecked(self, theory, nuisance):
        parts = [b(theory[b.field], nuisance) for b in self.blocks]
        if len(parts) == 1:
            return parts[0]
        shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        return torch.cat([p.expand(shape + p.shape[-1:]) for p in parts], dim=-1)


def _nuisance(folder: Path, spec, where: str) -> Nuisance:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a nuisance entry must be a mapping {{names, prior}}, got {spec!r}")
    check_keys(spec, {"names", "prior", "latex", "description"}, where)
    names = tuple(require(spec, "names", list, where))
    prior = require(spec, "prior", dict, where)
    if "mvnormal" in prior and isinstance(prior["mvnormal"], Mapping):
        mv = prior["mvnormal"]
        check_keys(mv, {"mean", "cov_file"}, f"{where}: prior mvnormal")
        cov = load_table(folder, require(mv, "cov_file", str, f"{where}: prior mvnormal"), f"{where}: prior mvnormal")
        prior = {"mvnormal": [require(mv, "mean", list, f"{where}: prior mvnormal"), cov.tolist()]}
    latex = tuple(spec.get("latex", ()))
    return Nuisance(names, prior, latex=latex, description=str(spec.get("description", "")))


def _block(folder: Path, spec, where: str) -> tuple[str, Block, list]:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a block must be a mapping, got {spec!r}")
    check_keys(spec, _BLOCK_KEYS, where)
    name = require(spec, "name", str, where)
    field = require(spec, "theory", str, where)
    if field not in THEORY_KEYS:
        raise ConfigError(f"{where}: key 'theory' must be one of {', '.join(THEORY_KEYS)}, got {field!r}")
    n_bins = require(spec, "n_bins", int, where)
    if n_bins < 1:
        raise ConfigError(f"{where}: key 'n_bins' must be >= 1, got {n_bins}")
    M = binning_matrix(folder, require(spec, "binning", (dict, list), where), n_bins, f"{where}: binning")
    transforms = [make_transform(folder, t, n_bins, f"{where}: transforms[{i}]") for i, t in enumerate(spec.get("transforms") or [])]
    stages = [t.stage for t in transforms]
    if "ell" in stages and "bins" in stages[: max(i for i, s in enumerate(stages) if s == "ell")]:
        raise ConfigError(f"{where}: ell-stage transforms ({', '.join(t.kind for t in transforms if t.stage == 'ell')}) must come before bins-stage ones")
    ell = np.arange(ELL_MIN, ELL_MIN + M.shape[1], dtype=np.float64)
    for t in reversed([t for t in transforms if t.stage == "ell"]):
        M = t.fold(M, ell)
    used = np.nonzero(np.any(M != 0, axis=0))[0]
    if used.size == 0:
        raise DataError(f"{where}: the binning matrix is all zero")
    start, stop = int(used[0]), int(used[-1]) + 1
    post = [t for t in transforms if t.stage == "bins"]
    return name, Block(name, field, M[:, start:stop], start, post), [n for t in post for n in t.nuisance_names]


def _selection(spec: Mapping, options: Mapping, names: list[str], where: str) -> tuple[list[str], dict]:
    declared = require(spec, "options", dict, where, default={})
    check_keys(options, set(declared), f"options of likelihood '{where}'")
    chosen, resolved = list(names), {}
    for key, decl in declared.items():
        w = f"{where}: options.{key}"
        if key != "spectra":
            raise ConfigError(f"{w}: unknown option kind (supported: spectra)")
        check_keys(decl, {"default", "choices"}, w)
        choices = require(decl, "choices", dict, w)
        value = options.get(key, require(decl, "default", str, w))
        if value not in choices:
            raise ConfigError(f"likelihood '{where}': option '{key}' must be one of {', '.join(choices)}, got {value!r}")
        unknown = [b for b in choices[value] if b not in names]
        if unknown:
            raise ConfigError(f"{w}: choice '{value}' names unknown blocks {unknown} (blocks: {names})")
        chosen, resolved[key] = [b for b in names if b in choices[value]], value
    return chosen, resolved


@register_likelihood_type("bandpower")
def load_bandpower(folder: Path, spec: dict, name: str, **options) -> BandpowerLikelihood:
    """Build a :class:`BandpowerLikelihood` from a folder's spec; ``options`` as declared in its ``options``."""
    where = f"likelihood spec of '{name}'"
    check_keys(spec, _SPEC_KEYS, where)
    blocks_spec = require(spec, "blocks", list, where)
    if not blocks_spec:
        raise ConfigError(f"{where}: key 'blocks' is empty")
    built = [_block(folder, b, f"{where}: blocks[{i}]") for i, b in enumerate(blocks_spec)]
    names = [b[0] for b in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: block names must be unique, got {names}")
    chosen, resolved = _selection(spec, options, names, name)

    data_full = load_vector(folder, require(spec, "data", dict, where), f"{where}: data")
    rows, offset = {}, 0
    for n, blk, _ in built:
        rows[n] = np.arange(offset, offset + blk.n_bins)
        offset += blk.n_bins
    if offset != data_full.shape[0]:
        raise DataError(f"{where}: the blocks have {offset} bins but the data file has {data_full.shape[0]} rows")
    cov_spec = require(spec, "covariance", dict, where)
    cov_full = load_matrix(folder, cov_spec, offset, f"{where}: covariance")
    idx = np.concatenate([rows[n] for n in chosen])
    data, cov = data_full[idx], cov_full[np.ix_(idx, idx)]
    hartlap = 1.0
    if "hartlap_n_sims" in cov_spec:
        n_sims = require(cov_spec, "hartlap_n_sims", int, f"{where}: covariance")
        if n_sims <= len(idx) + 2:
            raise ConfigError(f"{where}: covariance key 'hartlap_n_sims' must exceed n_data + 2 = {len(idx) + 2}")
        hartlap = (n_sims - len(idx) - 2) / (n_sims - 1)
        cov = cov / hartlap

    nuis = [_nuisance(folder, s, f"{where}: nuisance[{i}]") for i, s in enumerate(require(spec, "nuisance", list, where, default=[]))]
    declared = {n for blk in nuis for n in blk.names}
    used = {n for bn, _, ns in built if bn in chosen for n in ns}
    missing = sorted({n for _, _, ns in built for n in ns} - declared)
    if missing:
        raise ConfigError(f"{where}: transforms use nuisance parameters {missing} not declared under 'nuisance'")
    nuis = [blk for blk in nuis if set(blk.names) & used]
    blocks = [blk for n, blk, _ in built if n in chosen]
    meta = {
        "type": "bandpower",
        "folder": str(folder),
        "options": resolved,
        "units": str(spec.get("units", "")),
        "blocks": {b.name: {"theory": b.field, "n_bins": b.n_bins, "ell_range": list(b.ell_range)} for b in blocks},
        "hartlap_factor": hartlap,
        # per data point: effective multipole and spectrum (posterior predictive plots, tension attribution)
        "ell": np.concatenate([b.ell_eff for b in blocks]),
        "spectrum": [b.name for b in blocks for _ in range(b.n_bins)],
    }
    lik = BandpowerLikelihood(data, cov, name=name, blocks=blocks, nuisance=nuis, meta=meta)
    lik.description = str(spec.get("description", "")).strip()
    return lik
