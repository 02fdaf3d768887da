"""``latentinfer accuracy MODEL``: plik_lite dchi^2 of a bundle on held-out CAMB rows (encode->decode, emulate)."""

from __future__ import annotations

from ._args import add_corpus_root, use_corpus_root_of


def register(sub) -> None:
    p = sub.add_parser("accuracy", help="dchi2 under the Planck plik_lite covariance of a model bundle on held-out CAMB spectra")
    p.add_argument("model", help="bundle name or folder")
    p.add_argument("--corpus", default=None, help="corpus .npz (default: the bundle's validation.npz)")
    p.add_argument("--out", default=None, help="write the statistics and per-row values as JSON")
    p.add_argument("--update-card", action="store_true", help="store the result in the bundle's card.json (bundle folder only)")
    add_corpus_root(p)
    p.set_defaults(func=_accuracy)


def _accuracy(args) -> int:
    use_corpus_root_of(args)
    from ..io import write_json
    from ..ive.accuracy import GOAL, bundle_accuracy, check_accuracy, describe_where

    if args.update_card and args.corpus is None:
        from ..ive.pipeline import refresh_card_accuracy
        from ..paths import resolve

        res = refresh_card_accuracy(resolve("models", args.model))
    else:
        res = bundle_accuracy(args.model, args.corpus)
    ok = check_accuracy(res)
    for path, r in res.items():
        print(f"{path:14s} n={r['n']}  dchi2 median {r['median']:.4g} {_ci(r['median_ci68'])}  p95 {r['p95']:.4g}  "
              f"p99 {r['p99']:.4g} {_ci(r['p99_ci68'])}  max {r['max']:.4g}  goal (median<{GOAL['median']}, p99<{GOAL['p99']}): "
              f"{'met' if ok[path] else 'not met'} (confidence median {r['goal_confidence']['median']:.2f}, "
              f"p99 {r['goal_confidence']['p99']:.2f})")
        if "where" in r:
            print(f"{'':14s} {describe_where(r['where'])}")
    if args.out:
        write_json(args.out, {"goal": GOAL, "passed": ok, **res})
    return 0


def _ci(ci) -> str:
    """A distribution-free 68% interval; an end that the rows cannot bound prints as -inf / inf."""
    lo, hi = ("-inf" if ci[0] is None else f"{ci[0]:.3g}"), ("inf" if ci[1] is None else f"{ci[1]:.3g}")
    return f"[{lo}, {hi}]"
