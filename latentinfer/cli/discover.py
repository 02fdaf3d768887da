"""``latentinfer discover CONFIG.yaml --out DIR``: let the data choose beta and the latent count of an unsupervised IVE.

Runs :func:`latentinfer.ive.discover.run_discovery`: a beta scan at a fixed latent count, then a latent-count scan at
the beta its rule picks; held-out plik_lite dchi2, active latents and MI on >= 2000 corpus rows per point. Writes
``DIR/scan.json`` (after every point) and ``DIR/scan.png``.
"""

from __future__ import annotations

from ._args import add_corpus_root, comma_list, train_config_with_corpus


def register(sub) -> None:
    p = sub.add_parser("discover", help="unsupervised IVE: beta scan then latent-count scan (dchi2, active latents, MI)")
    p.add_argument("config", help="training config (YAML) with mode: unsupervised")
    p.add_argument("--out", required=True, help="folder for scan.json and scan.png")
    p.add_argument("--betas", default="1e-6,1e-5,1e-4,1e-3,1e-2", help="beta values (per-output scale) of the beta scan")
    p.add_argument("--d-beta", type=int, default=8, help="latent count of the beta scan (default 8)")
    p.add_argument("--dims", default="3,4,5,6,7,8,9,10", help="latent counts of the second scan")
    p.add_argument("--beta", type=float, default=None, help="skip the beta scan and use this beta")
    p.add_argument("--beta-from", default=None, help="skip the beta scan and use the chosen beta of this scan.json")
    p.add_argument("--mi-rows", default=None, help="comma-separated corpus files for the MI rows (default: the config's corpus)")
    p.add_argument("--bootstrap", type=int, default=5, help="bootstrap refits per MI estimate (default 5)")
    p.add_argument("--epochs", type=int, default=None, help="override max_epochs of the config")
    p.add_argument("--minutes", type=float, default=None, help="override max_minutes (per point) of the config")
    add_corpus_root(p)
    p.set_defaults(func=_discover)


def _discover(args) -> int:
    import json
    from pathlib import Path

    from ..errors import ConfigError, DataError
    from ..ive.discover import run_discovery, scan_mi_settings

    cfg = train_config_with_corpus(args)
    if args.epochs is not None:
        cfg.max_epochs = args.epochs
    if args.bootstrap < 2:
        raise ConfigError(f"--bootstrap must be >= 2, got {args.bootstrap}")
    beta = args.beta
    if args.beta_from:
        p = Path(args.beta_from)
        if not p.is_file():
            raise DataError(f"--beta-from: {p} not found")
        beta = json.loads(p.read_text()).get("chosen_beta")
        if beta is None:
            raise DataError(f"--beta-from: {p} has no chosen_beta (unfinished beta scan)")
    from ..paths import corpus_path

    mi_files = comma_list(args.mi_rows, str, "mi-rows") if args.mi_rows else None
    for f in mi_files or []:
        if not corpus_path(f).is_file():
            raise DataError(f"--mi-rows: corpus file {f} not found under the corpus root")
    res = run_discovery(cfg, args.out, betas=comma_list(args.betas, float, "betas"), d_beta=args.d_beta,
                        dims=comma_list(args.dims, int, "dims"), mi_files=mi_files, beta=beta,
                        settings=scan_mi_settings(args.bootstrap) if args.bootstrap != 5 else None)
    print(f"chosen beta {res['chosen_beta']:.0e}, d {res['chosen_dim']}; wrote {args.out}/scan.json and {res['png']}")
    return 0
