"""``latentinfer train CONFIG.yaml --out models/NAME``: train an IVE and write its bundle.

``--scan`` instead runs the latent-dimension scan and the learning curve (:mod:`latentinfer.ive.scan`) and writes
``scan.json`` and ``scan.png`` to ``--out``. ``--baseline`` trains the no-bottleneck direct emulator on the same rows
(:func:`latentinfer.ive.scan.direct_baseline`) and writes ``baseline.json``: the accuracy the data allow.
"""

from __future__ import annotations

from ._args import add_corpus_root, comma_list, train_config_with_corpus


def register(sub) -> None:
    p = sub.add_parser("train", help="train an interpretable variational encoder from a YAML config; writes a model bundle")
    p.add_argument("config", help="training config (YAML); see latentinfer.ive.config.TrainConfig")
    p.add_argument("--out", required=True, help="bundle folder to write (e.g. models/cmb-lcdm), or the scan folder")
    p.add_argument("--scan", action="store_true", help="scan latent dimension and training-set size instead of training one model")
    p.add_argument("--baseline", action="store_true",
                   help="train a direct emulator theta -> spectra (no latent bottleneck) on the same rows; writes baseline.json")
    p.add_argument("--dims", default="2,4,6,8,10", help="latent dimensions for --scan (comma-separated)")
    p.add_argument("--sizes", default="0.125,0.25,0.5,1.0", help="training-set fractions for the --scan learning curve")
    p.add_argument("--minutes", type=float, default=None, help="override max_minutes (per model) of the config")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_corpus_root(p)
    p.set_defaults(func=_train)


def _train(args) -> int:
    from ..ive.pipeline import run_training

    cfg = train_config_with_corpus(args)
    if args.no_progress:
        cfg.progress = False
    if args.scan:
        from ..ive.scan import run_scan

        dims = [int(x) for x in comma_list(args.dims, float, "dims")]
        res = run_scan(cfg, args.out, dims=dims, fractions=comma_list(args.sizes, float, "sizes"))
        print(f"wrote {res['json']} and {res['png']}")
        return 0
    if args.baseline:
        from ..ive.scan import direct_baseline

        res = direct_baseline(cfg, args.out)
        d = res["dchi2"]
        print(f"direct emulator ({res['n_train']} rows, {res['epochs']} epochs, {res['seconds'] / 60:.1f} min): "
              f"dchi2 median {d['median']:.4g}, 99th percentile {d['p99']:.4g}; wrote {args.out}/baseline.json")
        return 0
    run_training(cfg, args.out)
    return 0
