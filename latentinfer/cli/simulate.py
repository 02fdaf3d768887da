"""``latentinfer simulate --model lcdm|ede --n N --seed S --out DIR``: a CAMB corpus over a Sobol design.

``latentinfer simulate --config TRAIN.yaml [--plan]``: every corpus file of a training config that its
``simulate:`` block describes (:mod:`latentinfer.simulate.recipes`): a table of what is done and the CAMB time left,
then the missing files, one after the other, resumable chunk by chunk.
"""

from __future__ import annotations

from ._args import add_corpus_root, use_corpus_root_of


def register(sub) -> None:
    p = sub.add_parser("simulate", help="run CAMB over a scrambled Sobol design; chunked, resumable, parallel")
    p.add_argument("--model", choices=["lcdm", "ede"], help="cosmology (EDE: EarlyQuintessence n=3)")
    p.add_argument("--n", type=int, help="number of design points")
    p.add_argument("--seed", type=int, help="Sobol scrambling seed (corpus: 11 lcdm, 12 ede, 13 lcdm_core)")
    p.add_argument("--out", help="output folder: chunks/ and <model>.npz")
    p.add_argument("--box", default=None, help="override box ranges, e.g. 'H0=63.5:71.5,ns=0.94:0.99'")
    p.add_argument("--rows", default=None,
                   help="run only design rows START:STOP of the n-point design (e.g. extend the EDE corpus: "
                        "--n 4096 --seed 12 --rows 1000:2400; rows 0-999 are the shared ede.npz)")
    p.add_argument("--chunk", type=int, default=25, help="spectra per chunk file (the unit of resumption)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--backend", default="local", choices=["local", "dask"], help="execution backend")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT (backend dask)")
    p.add_argument("--config", default=None,
                   help="a training config: make every corpus file its simulate: block describes and that is missing "
                        "(instead of --model/--n/--seed/--out)")
    p.add_argument("--plan", action="store_true", help="with --config: print what is done and what is left, run nothing")
    add_corpus_root(p)
    p.set_defaults(func=_simulate)


def _simulate(args) -> int:
    use_corpus_root_of(args)
    from ..errors import ConfigError
    from ..simulate import parse_box, parse_rows, simulate

    if args.config is not None:
        return _from_config(args)
    missing = [f"--{k}" for k in ("model", "n", "seed", "out") if getattr(args, k) is None]
    if missing:
        raise ConfigError(f"simulate needs {', '.join(missing)} (or --config TRAIN.yaml)")
    if args.plan:
        raise ConfigError("--plan goes with --config")

    box = parse_box(args.box, args.model)
    rows = parse_rows(args.rows, args.n)
    n_chunks = -(-(args.n if rows is None else len(rows)) // args.chunk)
    _run_with_bar(lambda progress: simulate(args.model, args.n, args.seed, args.out, box=box, chunk=args.chunk,
                                            workers=args.workers, backend=args.backend, scheduler=args.scheduler,
                                            rows=rows, progress=progress),
                  n_chunks, 0, "CAMB chunks")
    return 0


def _run_with_bar(run, total: int, initial: int, desc: str) -> None:
    """``run(progress)`` under a chunk progress bar, then one line: the file written and how many spectra are ok."""
    import numpy as np
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=initial, desc=desc, unit="chunk") as bar:
        def progress(done, _total):
            bar.n = done
            bar.refresh()

        path = run(progress)
    with np.load(path) as f:
        ok = f["ok"]
    print(f"wrote {path}: {int(ok.sum())} of {len(ok)} spectra ok")


def _from_config(args) -> int:
    from ..errors import ConfigError
    from ..execution import default_workers
    from ..ive.config import load_train_config
    from ..simulate.recipes import plan_table, recipes_from

    given = [f"--{k}" for k in ("model", "n", "seed", "out", "box", "rows") if getattr(args, k) is not None]
    if given:
        raise ConfigError(f"--config takes its designs from the config's simulate: block; drop {', '.join(given)}")
    cfg = load_train_config(args.config)
    recipes = recipes_from(cfg)
    if not recipes:
        raise ConfigError(f"{args.config}: no simulate: block (corpus file -> simulate arguments) to make corpus files from")
    workers = args.workers or default_workers()
    print(plan_table(recipes, workers))
    if args.plan:
        return 0
    for r in recipes:
        present, done, total = r.status()
        if present:
            continue
        print(r.command())
        _run_with_bar(lambda progress, r=r: r.run(workers=args.workers, backend=args.backend, scheduler=args.scheduler,
                                                  progress=progress),
                      total, done, f"CAMB chunks {r.out.name}")
    print("every corpus file of the config is present")
    return 0
