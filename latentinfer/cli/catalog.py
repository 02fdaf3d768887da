"""``latentinfer models`` and ``latentinfer likelihoods``: what is installed.

Both read only the bundles' ``card.json`` and the likelihood folders' ``likelihood.yaml``, without torch, pyro or
arviz, so they answer at once. The lists are the same as :func:`latentinfer.bundle.list_models` and
:func:`latentinfer.likelihoods.list_likelihoods` (a test compares them).
"""

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
    from ..bundle.card import list_models  # torch-free

    _print_table(list_models())
    return 0


def _likelihoods(args) -> int:
    _print_table(list_likelihoods())
    return 0


def list_likelihoods() -> dict[str, str]:
    """``{name: first line of its description}`` of the likelihood folders on the search path, as
    :func:`latentinfer.likelihoods.list_likelihoods` gives it, without importing the likelihood package (whose
    ``__init__`` loads torch): a folder whose spec is missing or unreadable, or has no description, gets ``""``."""
    from ..errors import LatentInferError
    from ..io import read_file  # torch-free
    from ..paths import available

    out = {}
    for name, folder in available("likelihoods").items():
        path = folder / "likelihood.yaml"
        try:
            spec = read_file(path, kind="YAML")
        except LatentInferError:
            spec = None
        lines = str(spec.get("description", "")).strip().splitlines() if isinstance(spec, dict) else []
        out[name] = lines[0] if lines else ""
    return out
