"""``latentinfer interpret MODEL --out DIR``: what each latent of a decoder bundle encodes.

Encodes (part of) the training corpus with the bundle's encoder (``latentinfer.ive.encode_corpus``), or reads an
encoded sample given with ``--data`` (``.npz`` with z, params, param_names[, derived, derived_names]); writes
``DIR/mi.json`` (latent-latent and latent-parameter MI in nats with bootstrap errors, labels, disentanglement
check, settings, versions), ``DIR/mi_heatmap.png`` and the traversal plots, and prints the table.
``--update-card`` writes the labels into the bundle's ``card.json`` (key ``latent_labels``).
"""

from __future__ import annotations

from ._args import add_corpus_root, comma_list, use_corpus_root_of

DEFAULT_N = 5000


def register(sub) -> None:
    p = sub.add_parser("interpret", help="mutual information of latents with each other and with physical parameters; traversal plots")
    p.add_argument("model", help="decoder bundle: a name under models/ or a folder")
    p.add_argument("--out", required=True, help="output folder (mi.json, mi_heatmap.png, traversal_*.png)")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"rows of the encoded corpus to use (default {DEFAULT_N})")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap refits per MI estimate, for its error (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the MI estimates (default 0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes for the MI pairs (default: one per core)")
    p.add_argument("--threshold", type=float, default=0.1, help="largest latent-latent MI in nats still called disentangled (default 0.1)")
    p.add_argument("--data", default=None, help="encoded sample (.npz) instead of encoding the corpus")
    p.add_argument("--corpus", default=None, help="corpus .npz file(s) to encode, comma-separated (default: the bundle's "
                   "validation.npz, its held-out rows; a training corpus gives more rows and smaller MI errors)")
    p.add_argument("--reference", default=None, metavar="NAME=ROWS",
                   help="a reference model's spectra (e.g. LCDM=lcdm_core.npz, comma-separated files): records where they "
                   "put the latent that carries --reference-parameter (card key latent_references with --update-card); "
                   "a latent-space run then reads that latent's posterior against it")
    p.add_argument("--reference-parameter", default=None, help="the parameter the reference model lacks (e.g. fde_zc)")
    p.add_argument("--update-card", action="store_true", help="write the labels into the bundle's card.json (latent_labels)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_corpus_root(p)
    p.set_defaults(func=_interpret)


def _check_int(name: str, value, low: int) -> None:
    from ..errors import LatentInferError

    if value is not None and value < low:
        raise LatentInferError(f"--{name} must be >= {low}, got {value}")


def _encode(args) -> dict:
    from ..errors import LatentInferError

    try:
        from ..ive import encode_corpus
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("latentinfer.ive"):
            raise LatentInferError("encoding a corpus needs latentinfer.ive, which is not installed; pass --data ENCODED.npz") from None
        raise
    corpus = args.corpus
    if corpus and "," in corpus:
        from ..ive.data import concat_corpora, load_corpus

        corpus = concat_corpora([load_corpus(p, verbose=False) for p in comma_list(corpus, str, "corpus")])
    return encode_corpus(args.model, corpus=corpus, n=args.n)


def _reference(args) -> tuple[str, list[str]] | None:
    from ..errors import LatentInferError

    if args.reference is None:
        if args.reference_parameter is not None:
            raise LatentInferError("--reference-parameter needs --reference NAME=ROWS")
        return None
    name, sep, rows = args.reference.partition("=")
    if not sep or not name.strip() or not rows.strip():
        raise LatentInferError(f"--reference must be NAME=FILE[,FILE...], got {args.reference!r}")
    if not args.reference_parameter:
        raise LatentInferError("--reference needs --reference-parameter (the parameter the reference model lacks, e.g. fde_zc)")
    return name.strip(), comma_list(rows, str, "reference")


def _interpret(args) -> int:
    use_corpus_root_of(args)
    import math

    from ..bundle import load_model
    from ..errors import LatentInferError
    from ..interpret import MISettings, interpret, load_encoded, update_card_labels
    from ..interpret.workflow import MIN_ROWS

    _check_int("n", args.n, MIN_ROWS)
    _check_int("bootstrap", args.bootstrap, 2)
    _check_int("seed", args.seed, 0)
    _check_int("workers", args.workers, 1)
    if not math.isfinite(args.threshold) or args.threshold <= 0:
        raise LatentInferError(f"--threshold must be a positive number of nats, got {args.threshold}")
    reference = _reference(args)
    model = load_model(args.model)
    data = load_encoded(args.data) if args.data else _encode(args)
    result = interpret(
        model, data, args.out, model_name=str(args.model), n=args.n, settings=MISettings(n_bootstrap=args.bootstrap),
        seed=args.seed, workers=args.workers, threshold=args.threshold, progress=not args.no_progress,
    )
    print(result["text"])
    if result["n"] < 1000:
        print(f"note: MI from only {result['n']} rows (errors ~ 1/sqrt(n)); pass --corpus with a larger corpus for sharper labels")
    if args.update_card:
        print(f"wrote latent_labels into {update_card_labels(args.model, result)}")
    if reference is not None:
        import json
        from pathlib import Path

        import numpy as np

        from ..io import write_json
        from ..ive.reference import latent_reference, update_card_reference

        name, rows = reference
        entry = latent_reference(model, result, np.asarray(data["z"])[: args.n], rows, args.reference_parameter)
        write_json(Path(args.out) / f"reference_{name}.json", entry)
        for z, v in entry["latents"].items():
            print(f"reference {name}: {z} carries {args.reference_parameter} (MI {v['mi_with_parameter']:.3f} +- "
                  f"{v['mi_err']:.3f} nat); over {entry['n']} {name} rows it sits at {v['median']:.3f} +- {v['sd']:.3f} "
                  f"(spread over the MI rows {v['sd_all_rows']:.3f})")
        if args.update_card:
            print(f"wrote latent_references.{name} into {update_card_reference(args.model, name, json.loads(json.dumps(entry)))}")
    print(f"wrote {args.out}/mi.json and {len(result['plots'])} plots ({result['wall_seconds']:.1f} s)")
    return 0
