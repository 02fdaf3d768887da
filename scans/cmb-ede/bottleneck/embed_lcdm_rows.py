import numpy as np
E = np.load('/work/shared/data/camb/ede.npz')
rng = np.random.default_rng(0)
for src in ['lcdm', 'lcdm_core']:
    L = np.load(f'/work/shared/data/camb/{src}.npz')
    n = len(L['params'])
    extra = np.stack([np.zeros(n), rng.uniform(3.2, 4.0, n), rng.uniform(0.5, 3.0, n)], 1)
    d = {k: L[k] for k in L.files}
    d['params'] = np.concatenate([L['params'], extra], 1)
    d['names'] = E['names']; d['box_low'] = E['box_low']; d['box_high'] = E['box_high']
    assert list(L['derived_names']) == list(E['derived_names'])
    np.savez(f'/tmp/aug/{src}_as_ede.npz', **d)
    print(src, n, d['params'].shape)
