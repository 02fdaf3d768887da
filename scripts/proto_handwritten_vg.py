# Prototype for issue 19 (not wired into LogDensity): graph-free forward + hand-written backward of decoder -> top-hat binning -> whitened Gaussian (plik_lite only; no priors, transforms, low-ell or calibration), checked against autograd, timed beside LogDensity.value_and_grad in the same run. Run from the repository root.
import sys, time, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from latentinfer.config import load_config
from latentinfer.runner import build_analysis
from latentinfer.program import LogDensity
from latentinfer.likelihoods.bandpower import _TopHat
an = build_analysis(load_config(Path(__file__).resolve().parents[1] / 'examples' / 'demo.yaml'))
ld = LogDensity(an); d = ld.forward[-1] if isinstance(ld.forward, torch.nn.Sequential) else ld.forward
lik = ld.likelihoods[0]
def build(dt):
    lin = [m for m in d.net if isinstance(m, torch.nn.Linear)]
    Ws = [m.weight.detach().to(dt) for m in lin]; bs = [m.bias.detach().to(dt) for m in lin]
    E = {s: getattr(d, f"W_{s}").to(dt) for s in ("TT","TE","EE")}; ref = {s: d._ref[s].to(dt) for s in E}
    B = {b.field: (b.start, b.matrix.to(dt)) for b in lik.blocks}
    Wh = lik.whitener(dt); data = ld.data[lik.name].to(dt)
    k = d.k; zm, zs = d.z_mix.to(dt), d.z_shift.to(dt)
    def vg(z):
        h = z @ zm.T + zs; acts = []
        for i,(W,b) in enumerate(zip(Ws,bs)):
            a = torch.addmm(b, h, W.T)
            if i < len(Ws)-1:
                sg = torch.sigmoid(a); acts.append((a, sg)); h = a*sg
            else: h = a
        c = h
        t = {s: torch.addmm(ref[s], c[:, i*k:(i+1)*k], E[s]) for i,s in enumerate(("TT","TE","EE"))}
        TT, EE = t["TT"].exp(), t["EE"].exp(); n = E["TE"].shape[1]
        sq = (TT[:, :n]*EE[:, :n]).sqrt(); TE = t["TE"]*sq
        sp = {"TT": TT, "TE": TE, "EE": EE}
        ctxs = {}; parts = []
        for b in lik.blocks:
            c_ = type("C", (), {})(); c_.save_for_backward = lambda *a, c_=c_: setattr(c_, "saved_tensors", a)
            ws = [getattr(b, f"weight{j}").to(dt) for j,(nn_,_) in enumerate(b.groups) if nn_]
            parts.append(_TopHat.forward(c_, sp[b.field], b.start, tuple(b.groups), *ws)); ctxs[b.field] = c_
        m = torch.cat(parts, -1)
        w = (data - m) @ Wh.T; lp = -0.5*(w*w).sum(-1)
        gm = w @ Wh  # dlp/dm
        g = {}; o = 0
        for f,(st,M) in B.items():
            g[f] = _TopHat.backward(ctxs[f], gm[:, o:o+M.shape[0]])[0]; o += M.shape[0]
        gTE = g["TE"]; gtTE = gTE*sq
        half = 0.5*gTE*TE  # d(sqrt(TT EE))/dlogTT = sqrt/2
        gtTT = g["TT"]*TT; gtTT[:, :n] += half
        gtEE = g["EE"]*EE; gtEE[:, :n] += half
        gc = torch.cat([gtTT @ E["TT"].T, gtTE @ E["TE"].T, gtEE @ E["EE"].T, torch.zeros(gtTT.shape[0], k, dtype=gtTT.dtype)], -1)
        gh = gc
        for i in range(len(Ws)-1, -1, -1):
            gh = gh @ Ws[i]
            if i > 0:
                a, sg = acts[i-1]; gh = gh * (sg*(1 + a*(1-sg)))
        return lp, gh @ zm
    return vg
def rate(f, x, s=1.5):
    for _ in range(3): f(x)
    t0=time.perf_counter(); r=0
    while time.perf_counter()-t0<s: f(x); r+=1
    return r*x.shape[0]/(time.perf_counter()-t0)
# check gradient vs autograd (float64)
z = (0.1*torch.randn(4,6,dtype=torch.float64)).requires_grad_(True)
vg = build(torch.float64)
with torch.enable_grad():
    dec = d(z); m = lik._predict_unchecked(dec, {n: torch.ones(4,dtype=torch.float64) for n in ld._nuisance_params})
    w = (ld.data[lik.name]-m) @ lik.whitener(torch.float64).T; lp = -0.5*(w*w).sum(-1)
    g, = torch.autograd.grad(lp.sum(), z)
lp2, g2 = vg(z.detach())
print("check vs autograd: |dlp|", (lp-lp2).abs().max().item(), "rel |dg|", ((g-g2).abs().max()/g.abs().max()).item())
for dt in (torch.float64, torch.float32):
        f = build(dt)
        L = LogDensity(an, dtype=dt)
        for B_ in (1, 64):
            print(dt, "batch", B_, f"LogDensity.value_and_grad {rate(L.value_and_grad, 0.01*torch.randn(B_,7,dtype=torch.float64)):.0f} evals/s")
            with torch.inference_mode(): print(dt, "batch", B_, f"{rate(f, 0.1*torch.randn(B_,6,dtype=dt)):.0f} evals/s")
