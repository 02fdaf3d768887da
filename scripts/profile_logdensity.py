"""Where LogDensity's time goes (issue 19): torch profiler at batch 1 and 64, FLOPs per evaluation, matmul peak.

Usage: python scripts/profile_logdensity.py [threads]   (short: ~1 min; LATENTINFER_CORPUS must point at the corpus)
"""
import sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's latentinfer, not an installed one
threads = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1
torch.set_num_threads(threads)
from latentinfer.config import load_config
from latentinfer.runner import build_analysis
from latentinfer.program import LogDensity

an = build_analysis(load_config(ROOT / "examples" / "demo.yaml"))
ld = LogDensity(an)
dec = ld.forward[-1] if isinstance(ld.forward, torch.nn.Sequential) else ld.forward
print("forward:", type(ld.forward).__name__, "internal", dec.internal, "k", dec.k)
print("net:", dec.net)
for lik in ld.likelihoods:
    print(lik.name, "n_data", lik.n_data, "fixed_gaussian", lik.fixed_gaussian, "theory", getattr(lik, "theory_lengths", None))
    for b in getattr(lik, "blocks", []):
        print("  block", b.field, b.stop, type(b).__name__, {k: tuple(v.shape) for k, v in vars(b).items() if torch.is_tensor(v)})

# FLOPs per evaluation (multiply-add = 2)
lin = [m for m in dec.net.modules() if isinstance(m, torch.nn.Linear)]
mlp = sum(2 * m.in_features * m.out_features for m in lin) + 2 * 6 * 6
exp_ = sum(2 * dec.k * n for n in dec.internal.values())
gauss = sum(lik.n_data ** 2 for lik in ld.likelihoods if lik.fixed_gaussian)  # triangular W: n^2 flops (n^2/2 MACs), dense: 2n^2
gauss_dense = 2 * gauss
print(f"FLOPs forward: MLP {mlp/1e6:.3f} M, expansion {exp_/1e6:.3f} M, Gaussian (dense W) {gauss_dense/1e6:.3f} M")
fwd = mlp + exp_ + gauss_dense
print(f"FLOPs forward+backward (backward ~ forward for input gradients only): {2*fwd/1e6:.2f} M per evaluation")


def rate(fn, u, seconds=1.5):
    for _ in range(3):
        fn(u)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(u); n += 1
    return n * (u.shape[0] if u.dim() > 1 else 1) / (time.perf_counter() - t0)

for dt in (torch.float64, torch.float32):
    a = torch.randn(1024, 1024, dtype=dt); b = torch.randn(1024, 1024, dtype=dt)
    a @ b
    t0 = time.perf_counter(); r = 0
    while time.perf_counter() - t0 < 1.5:
        a @ b; r += 1
    print(f"peak matmul 1024^3 {dt}, {threads} thread(s): {r * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9:.1f} GFLOP/s")
    # the shapes of this problem at batch 64
    c = torch.randn(64, 64, dtype=dt); W = torch.randn(64, 2507, dtype=dt)
    t0 = time.perf_counter(); r = 0
    while time.perf_counter() - t0 < 1.0:
        c @ W; r += 1
    print(f"  (64x64)@(64x2507) {dt}: {r * 2 * 64 * 64 * 2507 / (time.perf_counter() - t0) / 1e9:.1f} GFLOP/s")

for batch in ((1, 64) if "--no-profile" not in sys.argv else ()):
    u = torch.zeros(7, dtype=torch.float64) if batch == 1 else 0.01 * torch.randn(batch, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    print(f"\n=== batch {batch}: {rate(ld.value_and_grad, u):.0f} evals/s (float64), {rate(LogDensity(an, dtype=torch.float32).value_and_grad, u):.0f} (float32)")
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(200 if batch == 1 else 50):
            ld.value_and_grad(u)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=40))

# -- forward time per stage (no grad), and the backward as (value_and_grad - forward) -----------------------------
from latentinfer.grid import SPECTRA

def per_call(fn, seconds=0.7):
    for _ in range(3):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(); n += 1
    return (time.perf_counter() - t0) / n * 1e6  # us

for dtype in (torch.float64, torch.float32):
    L = LogDensity(an, dtype=dtype)
    d = L.forward[-1] if isinstance(L.forward, torch.nn.Sequential) else L.forward
    for batch in (1, 64):
        u = torch.zeros(batch, 7, dtype=torch.float64)
        z = torch.zeros(batch, 6, dtype=torch.float64) + 0.01
        with torch.no_grad():
            c = d.net(z @ d.z_mix.T + d.z_shift)
            def expand():
                return {s: (c[..., i * d.k:(i + 1) * d.k].to(getattr(d, f"W_{s}").dtype) @ getattr(d, f"W_{s}")).to(torch.float64) + d._ref[s]
                        for i, s in enumerate(SPECTRA) if s in d.internal}
            t = expand()
            theory = d(z)
            theory = {k: v.to(dtype) for k, v in theory.items()}
            nuis = {n: torch.zeros(batch, dtype=dtype) + 1.0 for n in L._nuisance_params}
            nuis.update({n: torch.as_tensor(v, dtype=dtype) for n, v in L._nuisance_fixed.items()})
            means = [lik._predict_unchecked(theory, nuis) for lik in L.likelihoods]
            res = {
                "MLP (z->c)": per_call(lambda: d.net(z @ d.z_mix.T + d.z_shift)),
                "PCA expansion": per_call(expand),
                "decoder total (MLP+expansion+exp/TE)": per_call(lambda: d(z)),
                "binning (predict)": per_call(lambda: [lik._predict_unchecked(theory, nuis) for lik in L.likelihoods]),
                "whitened Gaussian": per_call(lambda: [(r := (L.data[lik.name] - m)) @ lik.whitener(dtype).T for lik, m in zip(L.likelihoods, means)]),
                "log density, forward": per_call(lambda: L(u if batch > 1 else u[0])),
            }
        res["exp/TE (decoder - MLP - expansion)"] = res["decoder total (MLP+expansion+exp/TE)"] - res["MLP (z->c)"] - res["PCA expansion"]
        res["value_and_grad"] = per_call(lambda: L.value_and_grad(u if batch > 1 else u[0]))
        res["backward (value_and_grad - forward)"] = res["value_and_grad"] - res["log density, forward"]
        print(f"\n{dtype} batch {batch}, {threads} thread(s): us per call")
        for k, v in res.items():
            print(f"  {k:42s} {v:9.1f}")
