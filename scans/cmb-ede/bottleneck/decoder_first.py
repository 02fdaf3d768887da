"""Experiment (scans/cmb-ede/bottleneck): decoder first (physical map + decoder as a bottlenecked emulator), then the encoder fitted to it.

Usage: python decoder_first.py CONFIG.yaml LATENT_DIM MINUTES_PER_STAGE OUT.json  (run from the repository root)
"""
import numpy as np, torch, time, copy, sys, json
from latentinfer.ive.config import load_train_config
from latentinfer.ive.train import prepare, NoiseChi2, torch_threads
from latentinfer.ive.model import IVE
from latentinfer.ive.physical import PhysicalMap
from latentinfer.ive.accuracy import run_accuracy
cfg = load_train_config(sys.argv[1]); cfg.progress = False
d = int(sys.argv[2]); minutes = float(sys.argv[3])

def fit(params, step_loss, val_loss, n, stages, t_budget):
    opt = torch.optim.Adam(params, 1e-3); best, st, t0, ep = np.inf, [copy.deepcopy(p.detach()) for p in params], time.time(), 0
    for lr, bs in stages:
        with torch.no_grad():
            for p, s in zip(params, st): p.copy_(s)
        for g in opt.param_groups: g['lr'] = lr
        bad = 0
        while bad < cfg.patience and time.time() - t0 < 60 * t_budget:
            perm = torch.randperm(n)
            for i in range(0, n, bs):
                obj = step_loss(perm[i:i+bs]); opt.zero_grad(); obj.backward(); opt.step()
            with torch.no_grad(): v = val_loss()
            if v < best * (1 - 1e-4): best, st, bad = v, [copy.deepcopy(p.detach()) for p in params], 0
            else: bad += 1
            ep += 1
    with torch.no_grad():
        for p, s in zip(params, st): p.copy_(s)
    return best, ep

with torch_threads(1):
    prep = prepare(cfg, verbose=True); torch.manual_seed(0)
    tr, va, te = prep.train, prep.val, prep.test
    th = lambda sp: torch.as_tensor(sp.corpus.params, dtype=torch.float32)
    model = IVE(d, cfg.n_pca, cfg.encoder_hidden, cfg.decoder_hidden, prep.pca, prep.normaliser, cfg.activation, cfg.encoder_pca)
    pmap = PhysicalMap(tr.corpus.box_low, tr.corpus.box_high, d, cfg.physical_hidden, cfg.activation)
    L = NoiseChi2(prep.G, cfg.n_pca); stages = list(zip(cfg.lr_stages, cfg.batch_stages))
    ttr, tva = th(tr), th(va)
    dec_params = list(model.decoder.parameters()) + list(pmap.parameters())
    b1, e1 = fit(dec_params, lambda idx: L(model.decoder.coefficients(pmap(ttr[idx])), tr.c[idx], tr.b[idx], tr.const[idx]).mean(),
                 lambda: float(L(model.decoder.coefficients(pmap(tva)), va.c, va.b, va.const).mean()), len(tr), stages, minutes)
    print('stage 1 (emulator)', b1, e1, flush=True)
    for p in dec_params: p.requires_grad_(False)
    with torch.no_grad(): z_tr, z_va = pmap(ttr), pmap(tva)
    enc_params = list(model.encoder.parameters())
    def enc_loss(idx):
        mu, _ = model.encoder(tr.c[idx])
        return (L(model.decoder.coefficients(mu), tr.c[idx], tr.b[idx], tr.const[idx]) + 10 * ((mu - z_tr[idx]) ** 2).sum(-1)).mean()
    b2, e2 = fit(enc_params, enc_loss, lambda: float(L(model.decoder.coefficients(model.encoder(va.c)[0]), va.c, va.b, va.const).mean()),
                 len(tr), stages, minutes)
    print('stage 2 (encoder)', b2, e2, flush=True)
    with torch.no_grad():
        out = {}
        for path, z in (("encode_decode", model.encoder(te.c)[0]), ("emulate", pmap(th(te)))):
            x = model.decoder.expansion.expand(model.decoder.coefficients(z))
            out[path] = {k: v.double().numpy() for k, v in prep.normaliser.decode({k: v.double() for k, v in x.items()}).items()}
    acc = run_accuracy(te.D, out)
    for k, v in acc.items(): print(k, 'median %.3f p99 %.3f' % (v['median'], v['p99']))
    json.dump({k: {kk: vv for kk, vv in v.items() if kk != 'values'} for k, v in acc.items()}, open(sys.argv[4], 'w'), indent=1)
