"""A hand-written value and gradient of :class:`~latentinfer.program.LogDensity` (issue 19): no autograd graph.

``LogDensity.value_and_grad`` is the inner loop of every gradient sampler. With autograd, at batch 1 most of its
time is the graph (recording, then replaying ~100 small operations), not arithmetic. :class:`HandwrittenVG` runs
the same forward pass without a graph, keeps the few intermediates the backward needs, and applies the chain rule
by hand, stage by stage:

- **parameters**: the unconstrained -> constrained transforms (identity; the interval bijection
  ``low + (high - low) sigmoid(u)`` that ``biject_to`` gives bounded priors) with their log-Jacobians, and the
  priors (normal, standard normal, uniform, truncated normal, correlated Gaussian nuisance blocks);
- **forward**: the truncated IVE decoder (SiLU or tanh MLP -> PCA expansion folded with the normaliser ->
  ``exp`` for TT, EE, PP, ``TE = r sqrt(TT EE)``), optionally behind the :class:`~latentinfer.bundle.nets.PhysicalMap`
  network (physical parameters -> latents);
- **likelihoods**: bandpower likelihoods with a fixed Gaussian covariance (top-hat or dense binning with folded
  ell-stage transforms, then calibration and subtraction) and plain :class:`~latentinfer.GaussianLikelihood`, as
  whitened Gaussians ``-|W (d - m)|^2 / 2 + const``; data sets may carry batch dimensions.

Any piece it does not know (another prior or transform, another forward model or activation, a likelihood with its
own distribution or bins-stage transform) runs through autograd *for that piece only*, fed and read at the stage
boundaries (``dlp/dtheory`` into a forward model's vector-Jacobian product, ``dlp/dx`` from a prior), so the result
is always the full gradient. :attr:`HandwrittenVG.paths` records which path each piece takes.

Precision follows :class:`LogDensity` operation by operation (float32: the PCA expansion, the likelihoods and their
gradients in single precision, the MLPs, ``exp`` and the priors in double), so both backends give the same numbers
up to float rounding (tests/program/test_handwritten.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import AffineTransform, ComposeTransform, SigmoidTransform

from ..bundle.nets import PhysicalMap, TruncatedDecoder
from ..likelihoods.bandpower import BandpowerLikelihood
from ..likelihoods.gaussian import GaussianLikelihood
from ..likelihoods.transforms import Calibration, Subtract
from ..priors import TruncatedNormal

__all__ = ["HandwrittenVG"]

HAND, AUTO = "handwritten", "autograd"


class HandwrittenVG:
    """``u (..., n) -> (log density (...), gradient (..., n))`` of a fused :class:`LogDensity`, graph-free where covered.

    Built once from the density (its transforms, priors, truncated forward model, likelihoods in their precision and
    data). :attr:`paths` is ``{"parameters": ..., "forward": ..., "likelihood:<name>": ...}`` with values
    ``"handwritten"`` or ``"autograd"`` (``"parameters"`` may also be ``"handwritten+autograd"`` when only some
    parameters' priors or transforms are known).
    """

    def __init__(self, ld):
        self.ld = ld
        self.n = ld.n
        self.base_dtype = ld.base_dtype
        self.dtype = ld.dtype
        self._params = _Parameters(ld)
        self._forward = _HandDecoder.build(ld.forward)
        self._liks = [(_HandGaussian.build(lik, ld.data[lik.name]) if fast else None, lik, fast)
                      for lik, fast in zip(ld.likelihoods, ld._fast)]
        self.paths = {"parameters": self._params.path, "forward": HAND if self._forward is not None else AUTO}
        for h, lik, _ in self._liks:
            self.paths[f"likelihood:{lik.name}"] = HAND if h is not None else AUTO
        self.inputs = ld._inputs
        # inputs that are a contiguous run of parameters: one slice instead of a column per input
        idx = [v for kind, v in self.inputs if kind == "param"]
        self._in_slice = None
        if len(idx) == len(self.inputs) and idx and idx == list(range(idx[0], idx[0] + len(idx))):
            self._in_slice = slice(idx[0], idx[0] + len(idx))
        self.nuisance_idx = {n: ld._idx[n] for n in ld._nuisance_params}

    @property
    def covers_all(self) -> bool:
        return all(v == HAND for v in self.paths.values())

    def __call__(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ld = self.ld
        u = torch.as_tensor(u, dtype=self.base_dtype).detach()
        batch = u.shape[:-1]
        with torch.no_grad():
            x, dxdu, lp, g_u = self._params.value_and_grads(u)  # lp: log prior + log|J|; g_u: its gradient in u
            g_x = torch.zeros_like(u)
            # -- forward model: inputs z from parameters and fixed values
            if self._in_slice is not None:
                z = x[..., self._in_slice]
            else:
                cols = [x[..., v] if kind == "param" else torch.full(batch, v, dtype=self.base_dtype) for kind, v in self.inputs]
                z = torch.stack(torch.broadcast_tensors(*cols), -1)
            if self._forward is not None:
                theory64, cache = self._forward.forward(z)
            else:
                zg = z.to(ld._z_dtype).requires_grad_(True)
                with torch.enable_grad():
                    out = ld.forward(zg)
                theory64, cache = out, zg
            theory = {k: v.detach().to(self.dtype) for k, v in theory64.items()}
            nuisance = {k: torch.as_tensor(v, dtype=self.dtype) for k, v in ld._nuisance_fixed.items()}
            for k, i in self.nuisance_idx.items():
                nuisance[k] = x[..., i].to(self.dtype)
            # -- likelihoods: value, d/dtheory, d/dnuisance
            g_theory: dict[str, list] = {}  # {output: [(start, dlp/doutput on start..start+n), ...]}
            g_nuis: dict[str, torch.Tensor] = {}
            for hand, lik, fast in self._liks:
                if hand is not None:
                    val = hand.value_and_grad(theory, nuisance, g_theory, g_nuis)
                else:
                    val = _autograd_likelihood(lik, fast, ld.data[lik.name], theory, nuisance, g_theory, g_nuis)
                lp = lp + val.to(self.base_dtype)
            # -- back through the forward model
            if g_theory:
                if self._forward is not None:
                    g_z = self._forward.backward(cache, g_theory)
                else:
                    keys = [k for k in g_theory if k in theory64]
                    gs = [_assemble(g_theory[k], theory64[k].shape[-1], theory64[k].shape[:-1], theory64[k].dtype) for k in keys]
                    with torch.enable_grad():
                        (g_z,) = torch.autograd.grad([theory64[k] for k in keys], cache, gs, allow_unused=True)
                    g_z = torch.zeros_like(cache) if g_z is None else g_z
                g_z = g_z.to(self.base_dtype)
                if self._in_slice is not None:
                    g_x[..., self._in_slice] += _sum_to(g_z, u.shape[:-1] + g_z.shape[-1:])
                else:
                    for j, (kind, v) in enumerate(self.inputs):
                        if kind == "param":
                            g_x[..., v] += _sum_to(g_z[..., j], batch)
            for k, g in g_nuis.items():
                if k in self.nuisance_idx:
                    g_x[..., self.nuisance_idx[k]] += _sum_to(g.to(self.base_dtype), batch)
            g_u = g_u + g_x * dxdu
        return lp, g_u


def _sum_to(g: torch.Tensor, shape) -> torch.Tensor:
    return g if g.shape == shape else g.sum_to_size(shape)


# -- parameters: transforms and priors ---------------------------------------------------------------------------
class _Parameters:
    """Transforms, log-Jacobians and priors of the parameters, vectorised over parameters of the same kind."""

    def __init__(self, ld):
        bd = ld.base_dtype
        n = ld.n
        self.n = n
        self.ident = []
        self.interval = []  # (index, loc, scale)
        self.auto_t = []  # (index, transform)
        for i, name in enumerate(ld.names):
            t = ld.transforms[name]
            if ld._identity[i]:
                self.ident.append(i)
                continue
            iv = _interval(t)
            if iv is None:
                self.auto_t.append((i, t))
            else:
                self.interval.append((i, *iv))
        self.normal, self.uniform, self.trunc, self.auto_p = [], [], [], []
        for i, d in ld._priors:
            kind = _prior_kind(d)
            if kind == "normal":
                self.normal.append((i, d.loc, d.scale))
            elif kind == "uniform":
                self.uniform.append((i, d.low, d.high))
            elif kind == "truncnormal":
                self.trunc.append((i, d))
            else:
                self.auto_p.append((i, d))
        self.blocks = []
        for ids, mvn in ld._blocks:
            prec = torch.cholesky_inverse(mvn.scale_tril.to(bd))
            self.blocks.append((torch.as_tensor(ids), mvn, prec))
        auto = bool(self.auto_t or self.auto_p)
        hand = bool(self.ident or self.interval or self.normal or self.uniform or self.trunc or self.blocks)
        self.path = HAND if not auto else (AUTO if not hand else f"{HAND}+{AUTO}")

        def vec(rows, k):
            return torch.stack([torch.as_tensor(r[k], dtype=bd) for r in rows]) if rows else None

        self.iv_idx = torch.as_tensor([r[0] for r in self.interval], dtype=torch.long)
        self.iv_loc, self.iv_scale = vec(self.interval, 1), vec(self.interval, 2)
        if self.interval:
            self.iv_logscale = float(self.iv_scale.abs().log().sum())
        self.nm_idx = torch.as_tensor([r[0] for r in self.normal], dtype=torch.long)
        self.nm_loc, self.nm_scale = vec(self.normal, 1), vec(self.normal, 2)
        if self.normal:
            self.nm_var = self.nm_scale**2
            self.nm_const = float(-(self.nm_scale.log() + math.log(math.sqrt(2 * math.pi))).sum())
            self.nm_all_std = bool((self.nm_loc == 0).all() and (self.nm_scale == 1).all())
            self.nm_contig = [r[0] for r in self.normal] == list(range(self.normal[0][0], self.normal[0][0] + len(self.normal)))
            # over all n parameters, zero where the prior is not normal: no gather/scatter per call
            self.nm_loc_all = torch.zeros(n, dtype=bd).index_copy_(0, self.nm_idx, self.nm_loc)
            self.nm_prec_all = torch.zeros(n, dtype=bd).index_copy_(0, self.nm_idx, 1 / self.nm_var)
        self.un_idx = torch.as_tensor([r[0] for r in self.uniform], dtype=torch.long)
        self.un_low, self.un_high = vec(self.uniform, 1), vec(self.uniform, 2)
        if self.uniform:
            self.un_const = float(-(self.un_high - self.un_low).log().sum())

    def value_and_grads(self, u):
        """``(x, dx/du, log prior + log|J|, its gradient in u)``; x and dx/du ``(..., n)``."""
        batch = u.shape[:-1]
        dt = u.dtype
        lp = torch.zeros(batch, dtype=dt)
        g_u = torch.zeros_like(u)  # d(log|J|)/du + d(log prior)/dx * dx/du
        if self.interval or self.auto_t:
            x, dxdu = u.clone(), torch.ones_like(u)
        else:
            x, dxdu = u, None
        if self.interval:
            ui = torch.index_select(u, -1, self.iv_idx)
            finfo = torch.finfo(dt)
            s_raw = torch.sigmoid(ui)
            s = torch.clamp(s_raw, min=finfo.tiny, max=1.0 - finfo.eps)  # torch's _clipped_sigmoid
            x.index_copy_(-1, self.iv_idx, self.iv_loc + self.iv_scale * s)
            clipped = (s_raw < finfo.tiny) | (s_raw > 1.0 - finfo.eps)
            dxdu.index_copy_(-1, self.iv_idx, torch.where(clipped, torch.zeros_like(s), self.iv_scale * (s_raw * (1 - s_raw))))
            lp = lp + (-F.softplus(-ui) - F.softplus(ui)).sum(-1) + self.iv_logscale
            g_u.index_copy_(-1, self.iv_idx, 1 - 2 * s_raw)  # d/du (-softplus(-u) - softplus(u))
        for i, t in self.auto_t:
            ui = u[..., i].detach().requires_grad_(True)
            with torch.enable_grad():
                xi = t(ui)
                lad = t.log_abs_det_jacobian(ui, xi)
                (dx,) = torch.autograd.grad(xi.sum(), ui, retain_graph=True)
                (dl,) = torch.autograd.grad(lad.sum(), ui)
            x[..., i], dxdu[..., i] = xi.detach(), dx
            lp = lp + lad.detach()
            g_u[..., i] += dl
        g_x = torch.zeros_like(u)
        if self.normal:
            if self.nm_all_std and self.nm_contig:
                a = self.normal[0][0]
                xn = x[..., a : a + len(self.normal)]
                lp = lp + (-0.5 * (xn * xn)).sum(-1) + self.nm_const
                g_x[..., a : a + len(self.normal)] = -xn
            else:
                d = x - self.nm_loc_all
                gd = d * self.nm_prec_all  # (x - loc) / var on normal parameters, 0 elsewhere
                lp = lp + (-0.5 * (gd * d)).sum(-1) + self.nm_const
                g_x = g_x - gd
        if self.uniform:
            xu = x[..., self.un_idx]
            inside = ((self.un_low <= xu) & (self.un_high > xu)).all(-1)
            lp = lp + torch.where(inside, torch.tensor(self.un_const, dtype=dt), torch.tensor(-math.inf, dtype=dt))
        for i, d in self.trunc:
            xi = x[..., i]
            inside = (xi >= d.low) & (xi <= d.high)
            v = xi - d.loc
            var = d.scale**2
            lpi = -(v**2) / (2 * var) - d.scale.log() - math.log(math.sqrt(2 * math.pi)) - d._mass.log()
            lp = lp + torch.where(inside, lpi, torch.full_like(lpi, -math.inf))
            g_x[..., i] += torch.where(inside, -v / var, torch.zeros_like(v))
        for i, d in self.auto_p:
            xi = x[..., i].detach().requires_grad_(True)
            with torch.enable_grad():
                lpi = d.log_prob(xi)
                (gi,) = torch.autograd.grad(lpi.sum(), xi)
            lp = lp + lpi.detach()
            g_x[..., i] += gi
        for ids, mvn, prec in self.blocks:
            v = x[..., ids]
            lp = lp + mvn.log_prob(v)
            g_x[..., ids] += -(v - mvn.loc) @ prec  # prec symmetric
        if dxdu is None:
            return x, 1.0, lp, g_u + g_x
        return x, dxdu, lp, g_u + g_x * dxdu


def _interval(t):
    """``(loc, scale)`` of ``loc + scale * sigmoid(u)`` (``biject_to`` of an interval), else None."""
    parts = t.parts if isinstance(t, ComposeTransform) else [t]
    if len(parts) != 2 or type(parts[0]) is not SigmoidTransform or type(parts[1]) is not AffineTransform:
        return None
    a = parts[1]
    loc, scale = torch.as_tensor(a.loc), torch.as_tensor(a.scale)
    if loc.numel() != 1 or scale.numel() != 1 or a.event_dim != 0:
        return None
    return loc.reshape(()), scale.reshape(())


def _prior_kind(d):
    if type(d) is TruncatedNormal and d.loc.dim() == 0:
        return "truncnormal"
    if isinstance(d, torch.distributions.Normal) and type(d).log_prob is torch.distributions.Normal.log_prob and d.loc.dim() == 0:
        return "normal"
    if isinstance(d, torch.distributions.Uniform) and type(d).log_prob is torch.distributions.Uniform.log_prob and d.low.dim() == 0:
        return "uniform"
    return None


# -- forward model: the truncated IVE decoder, optionally behind the physical map ------------------------------------
class _HandMLP:
    """A ``Sequential`` of ``Linear`` and SiLU/tanh layers: forward keeping activations, backward to the input."""

    def __init__(self, net):
        self.layers = []  # (W, b, activation after it or None)
        mods = list(net)
        i = 0
        while i < len(mods):
            lin = mods[i]
            act = None
            if i + 1 < len(mods):
                act = "silu" if type(mods[i + 1]) is torch.nn.SiLU else "tanh"
                i += 1
            self.layers.append((lin.weight.detach(), lin.bias.detach() if lin.bias is not None else None, act))
            i += 1
        self.dtype = self.layers[0][0].dtype

    @staticmethod
    def supported(net) -> bool:
        if not isinstance(net, torch.nn.Sequential) or not len(net):
            return False
        mods = list(net)
        for j, m in enumerate(mods):
            if j % 2 == 0 and type(m) is not torch.nn.Linear:
                return False
            if j % 2 == 1 and type(m) not in (torch.nn.SiLU, torch.nn.Tanh):
                return False
        return type(mods[-1]) is torch.nn.Linear

    def forward(self, h):
        acts = []
        for W, b, act in self.layers:
            a = torch.addmm(b, h, W.T) if b is not None else h @ W.T
            if act == "silu":
                s = torch.sigmoid(a)
                acts.append((a, s))
                h = a * s
            elif act == "tanh":
                h = torch.tanh(a)
                acts.append((None, h))
            else:
                h = a
        return h, acts

    def backward(self, g, acts):
        for j in range(len(self.layers) - 1, -1, -1):
            W, _, _ = self.layers[j]
            if j < len(self.layers) - 1:
                a, s = acts[j]
                if a is None:  # tanh
                    g = g * (1 - s * s)
                else:  # silu: d(a sigmoid(a))/da = s (1 + a (1 - s))
                    g = g * (s * (1 + a * (1 - s)))
            g = g @ W
        return g


class _HandDecoder:
    """:class:`TruncatedDecoder` (optionally after a :class:`PhysicalMap`), forward with saved intermediates and
    backward from ``dlp/dtheory`` to ``dlp/dz``. Same precision per operation as the modules."""

    @classmethod
    def build(cls, fwd):
        pmap = None
        dec = fwd
        if isinstance(fwd, torch.nn.Sequential):
            if len(fwd) != 2 or type(fwd[0]) is not PhysicalMap:
                return None
            pmap, dec = fwd[0], fwd[1]
        if type(dec) is not TruncatedDecoder or not _HandMLP.supported(dec.net):
            return None
        if pmap is not None and not _HandMLP.supported(pmap.net):
            return None
        return cls(dec, pmap)

    def __init__(self, dec, pmap):
        self.dec = dec
        self.mlp = _HandMLP(dec.net)
        self.k = dec.k
        self.z_mix, self.z_shift = dec.z_mix, dec.z_shift
        self.W = {s: getattr(dec, f"W_{s}") for s in dec.internal}
        self.WT = {s: w.T.contiguous() for s, w in self.W.items()}
        self.ref = dict(dec._ref)
        self.outputs, self.internal = dict(dec.outputs), dict(dec.internal)
        self.slots = {s: i for i, s in enumerate(("TT", "TE", "EE", "PP"))}
        self.pmap = None
        if pmap is not None:
            self.pmap = _HandMLP(pmap.net)
            self.p_low, self.p_high = pmap.low, pmap.high
            self.p_span = pmap.high - pmap.low
            self.p_dtype = pmap.low.dtype

    def forward(self, z):
        lead = z.shape[:-1]
        cache = {"lead": lead, "in_dtype": z.dtype}
        z2 = z.reshape(-1, z.shape[-1])
        if self.pmap is not None:
            uu = 2 * (z2.to(self.p_dtype) - self.p_low) / self.p_span - 1
            z2, cache["p_acts"] = self.pmap.forward(uu)
        z2 = z2.to(self.z_mix.dtype)
        h = z2 @ self.z_mix.T + self.z_shift
        c, cache["acts"] = self.mlp.forward(h)
        t = {}
        for s in self.internal:
            i = self.slots[s]
            W = self.W[s]
            cs = c[:, i * self.k : (i + 1) * self.k]
            if W.dtype == torch.float64 and c.dtype == torch.float64:
                t[s] = torch.addmm(self.ref[s], cs, W)  # c @ W + ref in one pass (same numbers up to rounding)
            else:
                t[s] = (cs.to(W.dtype) @ W).to(torch.float64) + self.ref[s]
        out, o = {}, self.outputs
        TT = torch.exp(t["TT"]) if ("TT" in o or "TE" in o) else None
        EE = torch.exp(t["EE"]) if ("EE" in o or "TE" in o) else None
        if "TT" in o:
            out["TT"] = TT[:, : o["TT"]]
        if "TE" in o:
            n = o["TE"]
            sq = torch.sqrt(TT[:, :n] * EE[:, :n])
            out["TE"] = t["TE"] * sq
            cache["sq"], cache["tTE"] = sq, t["TE"]
        if "EE" in o:
            out["EE"] = EE[:, : o["EE"]]
        if "PP" in o:
            out["PP"] = torch.exp(t["PP"])
        cache.update(TT=TT, EE=EE, PP=out.get("PP"), rows=c.shape[0], c_dtype=c.dtype)
        return {k: v.reshape(lead + v.shape[-1:]) for k, v in out.items()}, cache

    def _log_grad(self, g, key, full, rows):
        """``dlp/dlog X`` on the internal multipoles of ``X = exp(t)`` from the pieces of ``dlp/dX`` on its outputs."""
        n_out = self.outputs.get(key, 0)
        gt = None
        if key in g:
            gt = g[key] * full[:, :n_out] if n_out < full.shape[-1] else g[key] * full
        if gt is None or n_out < full.shape[-1]:
            pad = torch.zeros(rows, full.shape[-1], dtype=full.dtype)
            if gt is not None:
                pad[:, :n_out] = gt
            gt = pad
        return gt

    def backward(self, cache, g_theory):
        """``dlp/dz (..., d)`` from ``{output: [(start, dlp/doutput piece), ...]}``."""
        rows, lead = cache["rows"], cache["lead"]
        g = {k: _assemble(p, self.outputs[k], lead, torch.float64).reshape(rows, self.outputs[k]) for k, p in g_theory.items()}
        o = self.outputs
        g_t = {}
        TT, EE = cache["TT"], cache["EE"]
        if TT is not None and ("TT" in g or "TE" in g):
            g_t["TT"] = self._log_grad(g, "TT", TT, rows)
        if EE is not None and ("EE" in g or "TE" in g):
            g_t["EE"] = self._log_grad(g, "EE", EE, rows)
        if "TE" in g:
            n = o["TE"]
            g_t["TE"] = g["TE"] * cache["sq"]
            half = (g_t["TE"] * cache["tTE"]).mul_(0.5)  # d sqrt(TT EE)/d log TT = sqrt(TT EE) / 2, same for EE
            g_t["TT"][:, :n] += half
            g_t["EE"][:, :n] += half
        if "PP" in g:
            g_t["PP"] = g["PP"] * cache["PP"]
        g_c = torch.zeros(rows, 4 * self.k, dtype=cache["c_dtype"])
        for s, gt in g_t.items():
            i = self.slots[s]
            WT = self.WT[s]
            g_c[:, i * self.k : (i + 1) * self.k] = (gt.to(WT.dtype) @ WT).to(g_c.dtype)
        g_h = self.mlp.backward(g_c, cache["acts"])
        g_z = g_h @ self.z_mix
        if self.pmap is not None:
            g_z = self.pmap.backward(g_z.to(self.pmap.dtype), cache["p_acts"])
            g_z = g_z * (2 / self.p_span)
        return g_z.reshape(lead + g_z.shape[-1:]).to(cache["in_dtype"])


# -- likelihoods ---------------------------------------------------------------------------------------------------
# dlp/dtheory travels as {field: [(start, tensor (..., n)), ...]}: pieces on multipoles start..start+n, assembled
# once per field (one concatenation where they tile the spectrum, else zeros plus additions).
class _HandGaussian:
    """A fixed-covariance Gaussian likelihood ``-|W (d - m)|^2 / 2 + const`` with ``m`` a bandpower prediction
    (binning, then calibration/subtraction per block) or a plain output (:class:`GaussianLikelihood`).

    In float64, where it is accurate (:func:`_precision_if_accurate`: Planck's covariances), the value and gradient
    come from one product with the precision matrix ``P = W^T W`` (``g = P r``, ``chi2 = r . g``), half the work of
    ``w = W r``, ``g = W^T w``; otherwise, and in float32, from ``W`` twice, as the autograd path."""

    @classmethod
    def build(cls, lik, data):
        if type(lik) is GaussianLikelihood:
            return cls(lik, data, None)
        if type(lik) is not BandpowerLikelihood:
            return None
        for b in lik.blocks:
            if any(type(p) not in (Calibration, Subtract) for p in b.post):
                return None
        return cls(lik, data, list(lik.blocks))

    def __init__(self, lik, data, blocks):
        self.lik, self.data, self.blocks = lik, data, blocks
        dt = data.dtype
        self.W = lik.whitener(dt)
        self.log_norm = lik.__dict__["_whiteners"]["log_norm"]
        self.P = _precision_if_accurate(self.W, lik.scale_tril, lik.data) if dt == torch.float64 else None
        self.plan = []
        if blocks is None:
            return
        for b in blocks:
            if b.groups is not None:
                ncol = b.stop - b.start
                wflat = torch.zeros(ncol, dtype=dt)
                bin_of = torch.full((ncol,), b.n_bins, dtype=torch.long)  # gap columns: an extra zero bin
                sums, gaps, a, k, j = [], [], 0, 0, 0
                for n, w in b.groups:
                    if n:
                        wk = getattr(b, f"weight{k}").to(dt)
                        wflat[a : a + n * w] = wk.reshape(-1)
                        bin_of[a : a + n * w] = torch.arange(j, j + n).repeat_interleave(w)
                        sums.append((a, n, w, j, wk.contiguous()))
                        a, k, j = a + n * w, k + 1, j + n
                    else:
                        gaps.append((a, a + w))
                        a += w
                self.plan.append(("tophat", b, (wflat, sums, gaps, ncol, bin_of)))
            else:
                self.plan.append(("dense", b, b.matrix.to(dt)))
        posts = [[("cal", p.names) if type(p) is Calibration else ("sub", p.vector.to(dt)) for p in b.post] for b in blocks]
        kinds = [[(k, v if k == "cal" else None) for k, v in p] for p in posts]
        # the same bins-stage chain on every block (plik: divide by A_planck^2): applied once to the concatenation
        self.shared = all(kk == kinds[0] for kk in kinds)
        if self.shared:
            self.post = [(k, v if k == "cal" else torch.cat([p[i][1] for p in posts])) for i, (k, v) in enumerate(posts[0])]
        self.posts = posts
        self.offsets = [0]
        for b in blocks:
            self.offsets.append(self.offsets[-1] + b.n_bins)

    def _bin(self, kind, b, aux, spec):
        if kind == "dense":
            return spec[..., b.start : b.stop] @ aux.T
        wflat, sums = aux[:2]
        xw = spec[..., b.start : b.stop] * wflat
        parts = [xw[..., a : a + n * w].unflatten(-1, (n, w)).sum(-1) for a, n, w, _, _ in sums]
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def _bin_backward(self, kind, b, aux, g):
        if kind == "dense":
            return g @ aux
        wflat, sums, gaps, ncol, bin_of = aux
        if g.numel() <= 4 * g.shape[-1]:  # a few rows: one gather (fewer calls)
            if gaps:
                g = torch.cat([g, g.new_zeros(g.shape[:-1] + (1,))], -1)
            return torch.index_select(g, -1, bin_of) * wflat
        # many rows: a gather along the last axis is slow; one broadcast product per group of equal-width bins
        out = torch.empty(g.shape[:-1] + (ncol,), dtype=g.dtype)
        for a, n, w, j, wk in sums:  # each multipole gets its bin's gradient times its weight, written in place
            torch.mul(g[..., j : j + n].unsqueeze(-1), wk.to(g.dtype), out=out[..., a : a + n * w].unflatten(-1, (n, w)))
        for a, e in gaps:
            out[..., a:e].zero_()
        return out

    @staticmethod
    def _apply(post, y, nuisance):
        steps = []
        for kind, arg in post:
            if kind == "cal":
                vals = [torch.as_tensor(nuisance[n], dtype=y.dtype) for n in arg]
                cal = 1.0
                for v in vals:
                    cal = cal * v
                cal = torch.as_tensor(cal)
                y = y / cal.unsqueeze(-1)
                steps.append((arg, vals, cal, y))
            else:
                y = y - arg
                steps.append(None)
        return y, steps

    @staticmethod
    def _unapply(steps, g, g_nuis):
        for step in reversed(steps):
            if step is None:
                continue
            names, vals, cal, y = step
            g_cal = -(g * y).sum(-1) / cal  # y = y_in / cal
            for j, nme in enumerate(names):
                others = 1.0
                for jj, v in enumerate(vals):
                    if jj != j:
                        others = others * v
                _acc_n(g_nuis, nme, g_cal * others)
            g = g / cal.unsqueeze(-1)
        return g

    def value_and_grad(self, theory, nuisance, g_theory, g_nuis):
        """``log L (...)``; adds ``dlogL/dtheory`` pieces into ``g_theory`` and ``dlogL/dnuisance`` into ``g_nuis``."""
        if self.blocks is None:
            key = self.lik.output
            m = theory[key]
        else:
            ys = [self._bin(kind, b, aux, theory[b.field]) for kind, b, aux in self.plan]
            if self.shared:
                shape = torch.broadcast_shapes(*(y.shape[:-1] for y in ys))
                m = ys[0] if len(ys) == 1 else torch.cat([y.expand(shape + y.shape[-1:]) for y in ys], dim=-1)
                m, steps = self._apply(self.post, m, nuisance)
            else:
                outs = [self._apply(p, y, nuisance) for p, y in zip(self.posts, ys)]
                shape = torch.broadcast_shapes(*(y.shape[:-1] for y, _ in outs))
                m = torch.cat([y.expand(shape + y.shape[-1:]) for y, _ in outs], dim=-1)
        r = self.data.to(m.dtype) - m
        if self.P is not None:
            g_r = r @ self.P
            val = -0.5 * (r * g_r).sum(-1) + self.log_norm
        else:
            w = r @ self.W.T
            val = -0.5 * (w * w).sum(-1) + self.log_norm
            g_r = w @ self.W
        g_m = _sum_to(g_r, m.shape)  # dlogL/dm = -dlogL/dr
        if self.blocks is None:
            g_theory.setdefault(key, []).append((0, g_m))
            return val
        if self.shared:
            g_m = self._unapply(steps, g_m, g_nuis)
        for i, (kind, b, aux) in enumerate(self.plan):
            g = g_m[..., self.offsets[i] : self.offsets[i + 1]]
            if not self.shared:
                y, st = outs[i]
                g = self._unapply(st, _sum_to(g, y.shape), g_nuis)
            g_theory.setdefault(b.field, []).append((b.start, self._bin_backward(kind, b, aux, g)))
        return val


def _precision_if_accurate(W, L, data, tol=1e-13):
    """``P = W^T W`` (float64) if ``r . P r`` reproduces ``|W r|^2`` to ``tol`` relative on test residuals, else None.

    The rounding of ``r . P r`` is about ``eps F^2`` relative, that of ``|W r|^2`` about ``eps F``, with
    ``F = | |W| |r| | / |W r|`` (the cancellation in ``W r``); ``F`` is measured on noise-like residuals ``L xi`` and on
    the data itself (a signal-like residual: the model at zero), and ``P`` used only where ``eps F^2 <= tol``, so that
    both backends agree to ~1e-13 (tests ask 1e-10)."""
    W = W.double()
    g = torch.Generator().manual_seed(0)
    rs = torch.cat([(L.double() @ torch.randn(L.shape[0], 8, generator=g, dtype=torch.float64)).T, data.double()[None]])
    F = ((rs.abs() @ W.abs().T).norm(dim=-1) / (rs @ W.T).norm(dim=-1)).max()
    if not bool(torch.isfinite(F)) or float(F) ** 2 * torch.finfo(torch.float64).eps > tol:
        return None
    return (W.T @ W).contiguous()


def _assemble(pieces, n, batch, dtype):
    """One ``(..., n)`` tensor from ``[(start, tensor (..., k)), ...]`` (sums where pieces overlap, zeros in gaps)."""
    shape = torch.broadcast_shapes(batch, *(p.shape[:-1] for _, p in pieces))
    if len(pieces) == 1 and pieces[0][0] == 0 and pieces[0][1].shape[-1] == n:
        return pieces[0][1].expand(shape + (n,)).to(dtype)
    out = torch.empty(shape + (n,), dtype=pieces[0][1].dtype)
    pos = 0  # [0, pos) is written (pieces in order of their start)
    for s, p in sorted(pieces, key=lambda p: p[0]):
        e = s + p.shape[-1]
        if s > pos:
            out[..., pos:s].zero_()
        if s >= pos:
            out[..., s:e].copy_(p)
        else:  # overlaps what is written: add there, copy the rest
            ov = min(e, pos)
            out[..., s:ov] += p[..., : ov - s]
            if e > pos:
                out[..., pos:e].copy_(p[..., pos - s :])
        pos = max(pos, e)
    if pos < n:
        out[..., pos:n].zero_()
    return out.to(dtype)


def _acc_n(store, key, g):
    store[key] = store[key] + g if key in store else g


def _autograd_likelihood(lik, fast, data, theory, nuisance, g_theory, g_nuis):
    """One likelihood through autograd, read at the stage boundary: its value, ``d/dtheory`` and ``d/dnuisance``."""
    th = {k: v.detach().requires_grad_(True) for k, v in theory.items()}
    nu = {k: (v.detach().requires_grad_(True) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in nuisance.items()}
    keys_t, keys_n = list(th), [k for k, v in nu.items() if torch.is_tensor(v) and v.requires_grad]
    with torch.enable_grad():
        val = lik.fast_log_prob(th, nu, data) if fast else lik.distribution(th, nu).log_prob(data)
        grads = torch.autograd.grad(val.sum(), [th[k] for k in keys_t] + [nu[k] for k in keys_n], allow_unused=True)
    for k, gk in zip(keys_t, grads[: len(keys_t)]):
        if gk is not None:
            g_theory.setdefault(k, []).append((0, gk))
    for k, gk in zip(keys_n, grads[len(keys_t):]):
        if gk is not None:
            _acc_n(g_nuis, k, gk)
    return val.detach()
