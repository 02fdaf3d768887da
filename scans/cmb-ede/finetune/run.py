"""One fine-tune of cmb-ede: models/cmb-ede/finetune.yaml with YAML overrides; prints each part's validation history and
the dchi2 of both paths on the held-out rows (all, and f_EDE > 0.14).

    python scans/cmb-ede/finetune/run.py OUT_FOLDER "{lr_stages: [1.0e-5], ...}"
"""
import os, sys, time
import numpy as np, yaml
from latentinfer.ive.config import load_train_config, TrainConfig
from latentinfer.ive.pipeline import run_training
from latentinfer.ive.data import load_corpus
cfg = load_train_config("models/cmb-ede/finetune.yaml").to_dict()
cfg.update(yaml.safe_load(sys.argv[2]) or {})
out = sys.argv[1]
t0 = time.time()
res = run_training(TrainConfig(**cfg), out, verbose=False)
print("overrides", sys.argv[2], "wall", round(time.time() - t0), "s")
for name, hist in (("ive", res["history"]), ("phys", res["physical_history"])):
    parts = {}
    for h in hist:
        parts.setdefault(h["part"], []).append(h)
    for p, hs in parts.items():
        v = [h["val"] for h in hs]
        print(f"  {p}: {len(hs)} epochs, val first {v[0]:.5f} best {min(v):.5f} last {v[-1]:.5f}; stages " +
              ", ".join(f"{s}:{sum(h['stage']==s for h in hs)}" for s in sorted({h['stage'] for h in hs})))
t = res["card"]["training"]
print("  source's own validation chi2 (start) -> best: decoder {:.5f} -> {:.5f}, encoder {:.5f} -> {:.5f}, map {:.5f} -> {:.5f}".format(
    t["decoder_start_val_chi2"], t["decoder_best_val_chi2"], t["start_val_chi2"], t["best_val_chi2"],
    t["physical_start_val_chi2"], t["physical_best_val_chi2"]))
c = load_corpus(os.path.abspath(out) + "/validation.npz", verbose=False)
hi = c.params[:, c.names.index("fde_zc")] > 0.14
for path, r in res["accuracy"].items():
    v = np.asarray(r["values"])
    print(f"  {path:14s} median {r['median']:.4f} ci68 {r['median_ci68']}  p99 {r['p99']:.4f} max {r['max']:.4f} n>0.5 {(v>0.5).sum()} | fde>0.14: median {np.median(v[hi]):.4f} p99 {np.percentile(v[hi],99):.4f}")
