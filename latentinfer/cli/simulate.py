"""``latentinfer simulate --model lcdm|ede --n N --seed S --out DIR``: a CAMB corpus over a Sobol design."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("simulate", help="run CAMB over a scrambled Sobol design; chunked, resumable, parallel")
    p.add_argument("--model", required=True, choices=["lcdm", "ede"], help="cosmology (EDE: EarlyQuintessence n=3)")
    p.add_argument("--n", type=int, required=True, help="number of design points")
    p.add_argument("--seed", type=int, required=True, help="Sobol scrambling seed (corpus: 11 lcdm, 12 ede, 13 lcdm_core)")
    p.add_argument("--out", required=True, help="output folder: chunks/ and <model>.npz")
    p.add_argument("--box", default=None, help="override box ranges, e.g. 'H0=63.5:71.5,ns=0.94:0.99'")
    p.add_argument("--rows", default=None,
                   help="run only design rows START:STOP of the n-point design (e.g. extend the EDE corpus: "
                        "--n 4096 --seed 12 --rows 1000:2400; rows 0-999 are the shared ede.npz)")
    p.add_argument("--chunk", type=int, default=25, help="spectra per chunk file (the unit of resumption)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--backend", default="local", choices=["local", "dask"], help="execution backend")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT (backend dask)")
    p.set_defaults(func=_simulate)


def _simulate(args) -> int:
    from tqdm.auto import tqdm

    from ..simulate import parse_box, parse_rows, simulate

    box = parse_box(args.box, args.model)
    rows = parse_rows(args.rows, args.n)
    n_chunks = -(-(args.n if rows is None else len(rows)) // args.chunk)
    with tqdm(total=n_chunks, desc="CAMB chunks", unit="chunk") as bar:
        def progress(done, total):
            bar.n = done
            bar.refresh()

        path = simulate(args.model, args.n, args.seed, args.out, box=box, chunk=args.chunk, workers=args.workers,
                        backend=args.backend, scheduler=args.scheduler, rows=rows, progress=progress)
    import numpy as np

    with np.load(path) as f:
        ok = f["ok"]
    print(f"wrote {path}: {int(ok.sum())} of {len(ok)} spectra ok")
    return 0
