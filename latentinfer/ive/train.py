"""IVE training: data preparation (splits, normalisation, PCA, noise weights) and the beta-VAE training loop.

The reconstruction loss is chi^2 in noise units summed over TT, TE, EE, PP and every ell 2..3200::

    chi2 = sum_S sum_l [ (D_hat_S(l) - D_S(l)) / sigma_S(l) ]^2     (linearised: dD = (dD/dx) dx at the reference)

with sigma from :mod:`latentinfer.ive.noise`. Because the decoder's output lives in a PCA subspace, this is
evaluated exactly as a quadratic form in the coefficients (``G``, ``b``, ``const`` of :class:`Prepared`), which
costs O(k^2) instead of O(n_ell) per spectrum. Objective per sample: ``chi2 + beta(epoch) * KL`` with beta
annealed log-linearly from ``beta_start`` to ``beta`` over ``anneal_epochs``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .data import SPECTRA, Corpus, Normaliser, concat_corpora, ell_grid, embed_lcdm, full_spectra, load_corpus
from ..bundle.nets import PhysicalMap
from .model import IVE, fit_pca
from .noise import knox_sigma
from ..errors import ConfigError, DataError

__all__ = ["Prepared", "Split", "prepare", "NoiseChi2", "train_ive", "kl_divergence", "torch_threads", "n_replay"]


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads (the shared machine is oversubscribed: 1 thread is fastest)."""
    from threadpoolctl import threadpool_limits  # numpy's BLAS as well

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)


@dataclass
class Split:
    """One split: corpus rows, spectra at every integer ell (float64, (N, 3199)), whitened coefficients
    ``c (N, 4k)``, and the per-sample terms of the quadratic chi^2 (``b (N, 4k)``, ``const (N,)``)."""

    corpus: Corpus
    D: dict[str, np.ndarray]
    c: torch.Tensor
    b: torch.Tensor
    const: torch.Tensor

    def __len__(self) -> int:
        return len(self.corpus)


def _theta(sp: Split) -> torch.Tensor:
    """The split's physical parameters (corpus units), float32 ``(N, p)``: the physical map's inputs."""
    return torch.as_tensor(sp.corpus.params, dtype=torch.float32)


@dataclass
class Prepared:
    train: Split
    val: Split
    test: Split
    normaliser: Normaliser
    pca: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]  # w_S(l) = (dD/dx)(l) / sigma_S(l), (n,)
    sigma: dict[str, np.ndarray]  # noise standard deviation (D-units), (n,)
    G: torch.Tensor  # (4, k, k) whitened weighted Gram matrices
    k: int
    init: object = None  # the source bundle of a fine-tune (latentinfer.ive.finetune.InitBundle), else None
    dropped: list | None = None  # fine-tune: per corpus file, rows left out as equal to the source's held-out rows
    replay: dict | None = None  # fine-tune: what init_replay added (latentinfer.ive.finetune.replay_rows)


def _split_rows(cfg: TrainConfig, sizes: list[int], rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per corpus file: (test rows, training rows). Test rows are drawn at random, ``test_from`` per file."""
    n_files = len(sizes)
    test_n = cfg.test_from or [cfg.n_test // n_files + (i < cfg.n_test % n_files) for i in range(n_files)]
    tests, rests = [], []
    for n, t in zip(sizes, test_n):
        perm = rng.permutation(n)
        tests.append(np.sort(perm[:t])); rests.append(np.sort(perm[t:]))
    return tests, rests


def prior_ranges(cfg: TrainConfig, c: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's default prior ranges: the corpus box ``c`` (the union of the files' boxes), narrowed by
    ``prior_box``."""
    lo, hi = c.box_low.astype(np.float64).copy(), c.box_high.astype(np.float64).copy()
    for name, (a, b) in cfg.prior_box.items():
        j = c.names.index(name)
        lo[j], hi[j] = a, b
    return lo, hi


def _check_prior_box(cfg: TrainConfig, parts: list[Corpus], tests: list[np.ndarray]) -> None:
    """``prior_box`` names corpus parameters, and every held-out test row lies inside it."""

    names = parts[0].names
    for name, (a, b) in cfg.prior_box.items():
        if name not in names:
            raise ConfigError(f"train config: key 'prior_box' names '{name}', not a corpus parameter ({', '.join(names)})")
        j = names.index(name)
        for path, p, idx in zip(cfg.corpus, parts, tests):
            x = p.params[idx, j]
            if len(x) and ((x < a) | (x > b)).any():
                raise DataError(f"{path}: held-out test rows have {name} outside prior_box [{a}, {b}] "
                                f"({x.min():.6g}-{x.max():.6g}); accuracy is measured on the prior: hold out other rows")


def prepare(cfg: TrainConfig, verbose: bool = True) -> Prepared:
    """Load the corpus files, drop failed rows, split test / validation / training rows, fit the normaliser and
    the PCA on the training rows, and build the quadratic form of the noise-weighted chi^2."""
    with torch_threads(cfg.threads):
        return _prepare(cfg, verbose)


def _prepare(cfg: TrainConfig, verbose: bool) -> Prepared:
    rng = np.random.default_rng(cfg.seed)
    init, dropped = None, None
    if cfg.init_from:
        from .finetune import load_init

        init = load_init(cfg)
    parts = [load_corpus(p, verbose=verbose) for p in cfg.corpus]
    if init is None:
        tests, rests = _split_rows(cfg, [len(p) for p in parts], rng)
        _check_prior_box(cfg, parts, tests)
        # the test rows' box (validation.npz, accuracy by parameter): that of the files they come from, within prior_box
        held = [(p, i) for p, i in zip(parts, tests) if len(i)] or list(zip(parts, tests))
        test = concat_corpora([p.take(i) for p, i in held])
        test.box_low, test.box_high = prior_ranges(cfg, test)
    else:  # fine-tune: the source bundle's held-out rows stay held out, and nothing equal to them trains
        from .finetune import held_out_rows

        test = load_corpus(init.folder / "validation.npz", verbose=verbose)
        for path, p in zip(cfg.corpus, parts):
            if p.names != test.names or not np.array_equal(p.ell, test.ell):
                raise DataError(f"{path}: parameters or ell grid differ from those of the init_from bundle's "
                                f"validation.npz ({', '.join(test.names)})")
        masks = [held_out_rows(p.params, test.params) for p in parts]
        rests = [np.flatnonzero(~m) for m in masks]
        dropped = [int(m.sum()) for m in masks]
        if verbose:
            print(f"fine-tune from {init.folder}: {len(test)} held-out rows (its validation.npz); left out of training: "
                  + ", ".join(f"{n} of {path}" for n, path in zip(dropped, cfg.corpus)))
    rest = [p.take(i) for p, i in zip(parts, rests)]
    if cfg.lcdm_as_ede:  # its own stream: the test and training rows of the EDE files do not move
        rng_embed = np.random.default_rng([cfg.seed, 1])
        lcdm = [embed_lcdm(load_corpus(p, verbose=verbose), parts[0], rng_embed) for p in cfg.lcdm_as_ede]
        if verbose:
            print(f"{sum(map(len, lcdm))} LCDM rows join as EDE rows at fde_zc = 0 ({', '.join(cfg.lcdm_as_ede)})")
        rest += lcdm
    rest = concat_corpora(rest)
    perm = rng.permutation(len(rest))
    if cfg.prior_box:  # early stopping (and the error covariance) on the prior; every row past its edge trains
        lo, hi = prior_ranges(cfg, rest)
        perm = perm[((rest.params >= lo) & (rest.params <= hi)).all(1)[perm]]
    n_val = max(1, int(round(cfg.val_fraction * len(perm))))
    val_idx = np.sort(perm[:n_val])
    train_idx = np.setdiff1d(np.arange(len(rest)), val_idx)
    if cfg.n_train:
        train_idx = np.sort(rng.permutation(train_idx)[: cfg.n_train])
    train, val = rest.take(train_idx), rest.take(val_idx)
    if verbose:
        print(f"rows: {len(train)} training, {len(val)} validation (early stopping), {len(test)} held-out test")

    D_train = full_spectra(train)
    replay = None
    if init is not None and cfg.init_replay:  # rehearsal rows, emulated by the source bundle: training only
        from .finetune import replay_rows

        rep, D_rep, replay = replay_rows(cfg, init, train, test.params)
        train = concat_corpora([train, rep])
        train.box_low, train.box_high = rest.box_low, rest.box_high
        D_train = {s: np.concatenate([D_train[s], D_rep[s]]) for s in SPECTRA}
        if verbose:
            print(f"{len(rep)} replay rows (spectra emulated by {init.folder}) join the training rows")
    if init is None:
        norm = Normaliser.fit(D_train)
        pca = fit_pca(norm.encode(D_train), cfg.n_pca)
    else:  # the bundle's target space: its weights keep their meaning
        norm, pca = init.normaliser(), init.pca
    D_ref = norm.decode({s: torch.zeros(len(ell_grid()), dtype=torch.float64) for s in SPECTRA})
    D_ref = {s: v.numpy() for s, v in D_ref.items()}
    sigma = knox_sigma(ell_grid(), D_ref)
    jac = norm.jacobian_diag(D_ref)
    w = {s: jac[s] / sigma[s] for s in SPECTRA}
    G = np.stack([(pca[f"comp_{s}"] * w[s] ** 2) @ pca[f"comp_{s}"].T * np.outer(pca[f"std_{s}"], pca[f"std_{s}"]) for s in SPECTRA])

    def split(c: Corpus, D=None) -> Split:
        D = full_spectra(c) if D is None else D
        x = norm.encode(D)
        cs, bs, const = [], [], np.zeros(len(c))
        for s in SPECTRA:
            V, m, sd = pca[f"comp_{s}"], pca[f"mean_{s}"], pca[f"std_{s}"]
            cu = (x[s] - m) @ V.T
            perp = x[s] - m - cu @ V
            cs.append(cu / sd)
            bs.append(((perp * w[s] ** 2) @ V.T) * sd)
            const += ((perp * w[s]) ** 2).sum(1)
        f32 = lambda a: torch.as_tensor(np.concatenate(a, 1), dtype=torch.float32)  # noqa: E731
        return Split(c, D, f32(cs), f32(bs), torch.as_tensor(const, dtype=torch.float32))

    return Prepared(split(train, D_train), split(val), split(test), norm, pca, w, sigma,
                    torch.as_tensor(G, dtype=torch.float32), cfg.n_pca, init, dropped, replay)


class NoiseChi2(torch.nn.Module):
    """chi^2 in noise units of predicted whitened coefficients against a split's rows: ``(B, 4k) -> (B,)``."""

    def __init__(self, G: torch.Tensor, k: int):
        super().__init__()
        self.register_buffer("G", G)
        self.k = k

    def forward(self, c_hat: torch.Tensor, c: torch.Tensor, b: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
        d = (c_hat - c).reshape(*c.shape[:-1], 4, self.k)
        bb = b.reshape(*b.shape[:-1], 4, self.k)
        quad = ((d.unsqueeze(-2) @ self.G).squeeze(-2) * d).sum((-1, -2))
        return quad - 2 * (d * bb).sum((-1, -2)) + const


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latents: ``(B, d) -> (B,)``."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1 - logvar).sum(-1)


def _beta(cfg: TrainConfig, epoch: int) -> float:
    f = min(1.0, epoch / max(cfg.anneal_epochs, 1))
    if cfg.beta_start > 0 and cfg.beta > 0:
        return float(cfg.beta_start * (cfg.beta / cfg.beta_start) ** f)
    return cfg.beta * f


@torch.no_grad()
def evaluate_ive(model: IVE, loss: NoiseChi2, sp: Split) -> np.ndarray:
    """Per-row chi^2 of encode (mean) -> decode on a split, shape (N,)."""
    c_hat, _, _ = model(sp.c, sample=False)
    return loss(c_hat, sp.c, sp.b, sp.const).numpy()


def train_ive(prep: Prepared, cfg: TrainConfig) -> tuple[IVE, dict]:
    """Train the beta-VAE with staged learning rates and batch sizes and early stopping on validation chi^2.

    Returns the model at its best validation epoch (latents standardised on the training rows) and a history.
    """
    with torch_threads(cfg.threads):
        return _train_ive(prep, cfg)


def staged_fit(params: list, step, validate, n: int, cfg: TrainConfig, gen: torch.Generator, deadline: float,
                history: list, label: str, *, epoch: int = 0, max_epochs: int | None = None, best: float = np.inf,
                opt: torch.optim.Optimizer | None = None, bar=None, capped: list | None = None) -> tuple[float, int]:
    """The one training loop: Adam over ``params`` through the config's learning-rate and batch stages.

    Each stage starts from the best parameters so far and ends after ``patience`` epochs without a validation
    improvement (relative 1e-4), at ``max_epochs`` epochs in all (counting from ``epoch``; default
    ``cfg.max_epochs`` more) or at the wall-clock ``deadline`` (``time.time()`` units). ``step(idx, epoch)`` returns
    the objective of the batch of training rows ``idx`` (drawn by ``gen``); ``validate()`` the validation score;
    ``best`` a score to beat from the start. Leaves the best parameters in place and returns ``(best, epoch)``.
    A stage cut short by the deadline appends ``label`` to ``capped``: where the clock, not patience or the epoch
    count, ends training, a retrain does not reproduce the weights bit for bit.

    A non-finite batch objective or validation score ends its stage at once: the best parameters come back, Adam's
    moments (poisoned by the NaN or inf) are cleared, the next stage (smaller learning rate) goes on, and ``history``
    gets an entry with ``"diverged": True``. Without this, a restored model kept stepping with NaN moments and
    stayed NaN to the end."""
    max_epochs = epoch + cfg.max_epochs if max_epochs is None else max_epochs
    opt = opt or torch.optim.Adam(params, lr=cfg.lr_stages[0])
    snap = lambda: [p.detach().clone() for p in params]  # noqa: E731

    @torch.no_grad()
    def restore():
        for p, b in zip(params, best_p):
            p.copy_(b)

    best_p, own_bar = snap(), bar is None
    bar = bar or tqdm(total=max_epochs - epoch, desc=f"{label} {cfg.name}", disable=not cfg.progress, mininterval=2.0)
    for stage, (lr, bs) in enumerate(zip(cfg.lr_stages, cfg.batch_stages)):
        restore()
        for g in opt.param_groups:
            g["lr"] = lr
        bad, diverged = 0, False
        while bad < cfg.patience and epoch < max_epochs and time.time() < deadline:
            perm = torch.randperm(n, generator=gen)
            tot = 0.0
            for i in range(0, n, bs):
                obj = step(perm[i : i + bs], epoch)
                o = float(obj.detach())
                if not np.isfinite(o):
                    diverged = True
                    break
                opt.zero_grad(set_to_none=True)
                obj.backward()
                opt.step()
                tot += o * len(perm[i : i + bs])
            with torch.no_grad():
                val = np.nan if diverged else float(validate())
            entry = {"epoch": epoch, "part": label, "stage": stage, "lr": lr, "batch": bs,
                     "train_objective": np.nan if diverged else tot / n, "val": val}
            diverged = diverged or not np.isfinite(val)
            history.append({**entry, "diverged": True} if diverged else entry)
            epoch += 1
            bar.update(1)
            if diverged:
                restore()
                opt.state.clear()
                break
            if val < best * (1 - 1e-4):
                best, best_p, bad = val, snap(), 0
            else:
                bad += 1
            bar.set_postfix(part=label, stage=stage, val=f"{val:.3g}", best=f"{best:.3g}")
        if not diverged and bad < cfg.patience and epoch < max_epochs and capped is not None and label not in capped:
            capped.append(label)
    if own_bar:
        bar.close()
    restore()
    return best, epoch


def n_replay(prep: Prepared) -> int:
    """How many of the training rows (the last ones) are ``init_replay`` rows."""
    return int(prep.replay["rows"]) if prep.replay else 0


def _load_init_weights(prep: Prepared, model: IVE, pmap: PhysicalMap | None) -> bool:
    """Fine-tune (``prep.init`` set): load the source bundle's weights, latent basis included. Returns whether it did."""
    if prep.init is None:
        return False
    model.decoder.load_state_dict(prep.init.decoder)
    model.encoder.load_state_dict(prep.init.encoder)
    if pmap is not None:
        pmap.load_state_dict(prep.init.physical)
    return True


def _start(init: bool, validate) -> float:
    """The score a stage must beat: the starting weights' own when fine-tuning (never end worse than the bundle)."""
    if not init:
        return np.inf
    with torch.no_grad():
        return float(validate())


def _train_decoder_first(prep: Prepared, cfg: TrainConfig) -> tuple[IVE, dict]:
    """Decoder first: (1) the physical map and the decoder, as an emulator through the d-latent bottleneck, on the
    spectra's chi^2; (2) with both frozen, the encoder on the beta-VAE objective through the decoder (sampled
    latents, chi^2 + beta KL) plus ``joint_physical`` times the squared distance of its mean to the map's latents.
    Each part gets half of ``max_minutes``."""

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = IVE(cfg.latent_dim, cfg.n_pca, cfg.encoder_hidden, cfg.decoder_hidden, prep.pca, prep.normaliser, cfg.activation, cfg.encoder_pca)
    tr, va = prep.train, prep.val
    pmap = PhysicalMap(tr.corpus.box_low, tr.corpus.box_high, cfg.latent_dim, cfg.physical_hidden, cfg.activation)
    init = _load_init_weights(prep, model, pmap)
    loss_fn = NoiseChi2(prep.G, cfg.n_pca)
    th, th_val = _theta(tr), _theta(va)
    t0, history, capped = time.time(), [], []
    dec = list(model.decoder.parameters()) + list(pmap.parameters())
    val_dec = lambda: loss_fn(model.decoder.coefficients(pmap(th_val)), va.c, va.b, va.const).mean()  # noqa: E731
    start1 = _start(init, val_dec)
    best1, ep1 = staged_fit(
        dec, lambda idx, _: loss_fn(model.decoder.coefficients(pmap(th[idx])), tr.c[idx], tr.b[idx], tr.const[idx]).mean(),
        val_dec, len(tr), cfg, gen, time.time() + 30 * cfg.max_minutes, history, "decoder", capped=capped, best=start1)
    for p in dec:
        p.requires_grad_(False)
    with torch.no_grad():
        z_map = pmap(th)

    def encoder_step(idx, _):
        c_hat, mu, logvar = model(tr.c[idx])
        chi2 = loss_fn(c_hat, tr.c[idx], tr.b[idx], tr.const[idx])
        return (chi2 + _beta(cfg, cfg.anneal_epochs) * kl_divergence(mu, logvar)
                + cfg.joint_physical * ((mu - z_map[idx]) ** 2).sum(-1)).mean()

    model.eval()  # no dropout or batch norm: eval() only marks the frozen decoder
    # replay rows (fine-tune, init_replay; the last rows of the training split) are emulator outputs: they train the
    # decoder and the map, not the encoder (their small PCA components are the decoder's, not CAMB's: off its inputs)
    n_enc = len(tr) - n_replay(prep)
    val_enc = lambda: evaluate_ive(model, loss_fn, va).mean()  # noqa: E731
    start2 = _start(init, val_enc)
    best2, ep2 = staged_fit(list(model.encoder.parameters()), encoder_step, val_enc, n_enc, cfg, gen,
                             time.time() + 30 * cfg.max_minutes, history, "encoder", capped=capped, best=start2)
    for p in dec:
        p.requires_grad_(True)
    pmap.eval()
    if not init:  # a fine-tune keeps the bundle's latent basis
        shift, A = model.standardise_latents(tr.c)
        pmap.change_basis(shift, A)
    info = {"epochs": ep1 + ep2, "seconds": time.time() - t0, "best_val_chi2": best2, "history": history,
            "decoder_epochs": ep1, "decoder_best_val_chi2": best1, "physical_map": pmap, "time_capped": capped}
    if init:  # the source's own scores on these validation rows: best == start means the fine-tune kept the source
        info.update(start_val_chi2=start2, decoder_start_val_chi2=start1)
    return model, info


def _train_ive(prep: Prepared, cfg: TrainConfig) -> tuple[IVE, dict]:
    if cfg.decoder_first:
        return _train_decoder_first(prep, cfg)
    if prep.replay:
        raise ConfigError("train config: key 'init_replay' needs decoder_first: true (replay rows train the decoder, not the encoder)")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = IVE(cfg.latent_dim, cfg.n_pca, cfg.encoder_hidden, cfg.decoder_hidden, prep.pca, prep.normaliser, cfg.activation, cfg.encoder_pca)
    loss_fn = NoiseChi2(prep.G, cfg.n_pca)
    tr, va = prep.train, prep.val
    pmap, joint = None, cfg.joint_physical > 0
    params = [p for p in model.parameters() if p.requires_grad]
    if joint:  # the physical map trains with the IVE: the decoder learns from exact parameters as well

        pmap = PhysicalMap(tr.corpus.box_low, tr.corpus.box_high, cfg.latent_dim, cfg.physical_hidden, cfg.activation)
        params += list(pmap.parameters())
        th, th_val = _theta(tr), _theta(va)
    init = _load_init_weights(prep, model, pmap)

    def step(idx, epoch):
        c_hat, mu, logvar = model(tr.c[idx])
        obj = loss_fn(c_hat, tr.c[idx], tr.b[idx], tr.const[idx]) + _beta(cfg, epoch) * kl_divergence(mu, logvar)
        if joint:
            zp = pmap(th[idx])
            chi2_p = loss_fn(model.decoder.coefficients(zp), tr.c[idx], tr.b[idx], tr.const[idx])
            obj = obj + chi2_p + cfg.joint_physical * ((zp - mu) ** 2).sum(-1)
        return obj.mean()

    def validate():
        val = float(evaluate_ive(model, loss_fn, va).mean())
        if joint:  # early stopping on both paths
            v_p = loss_fn(model.decoder.coefficients(pmap(th_val)), va.c, va.b, va.const)
            val = 0.5 * (val + float(v_p.mean()))
        return val

    t0, history, capped = time.time(), [], []
    best, epoch = staged_fit(params, step, validate, len(tr), cfg, gen, t0 + 60 * cfg.max_minutes, history, "train",
                             capped=capped, best=_start(init, validate))
    if not init:  # a fine-tune keeps the bundle's latent basis
        shift, A = model.standardise_latents(tr.c)
    info = {"epochs": epoch, "seconds": time.time() - t0, "best_val_chi2": best, "history": history, "time_capped": capped}
    if joint:
        pmap.eval()
        if not init:
            pmap.change_basis(shift, A)
        info["physical_map"] = pmap
    return model, info
