"""``latentinfer models`` and ``latentinfer likelihoods``: what is installed."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list the decoder bundles found (models/ and $LATENTINFER_MODELS)")
    p.set_defaults(func=_models)
    p = sub.add_parser("likelihoods", help="list the experiment likelihoods found (likelihoods/ and $LATENTINFER_LIKELIHOODS)")
    p.set_defaults(func=_likelihoods)


def _print_table(rows: dict[str, str]) -> None:
    width = max((len(k) for k in rows), default=0)
    for name, desc in rows.items():
        print(f"{name:<{width}}  {desc}")


def _models(args) -> int:
    from ..bundle import list_models

    _print_table(list_models())
    return 0


def _likelihoods(args) -> int:
    from ..likelihoods import list_likelihoods

    _print_table(list_likelihoods())
    return 0
