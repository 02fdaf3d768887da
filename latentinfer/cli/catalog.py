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


_MODEL_COLUMNS = (("name", "NAME"), ("mode", "MODE"), ("latents", "LATENTS"),
                  ("dchi2", "DCHI2 MEDIAN / P99 (ENCODE-DECODE | EMULATE)"), ("description", "DESCRIPTION"))


def _models(args) -> int:
    """name, mode (supervised / unsupervised IVE), latent count, held-out plik_lite dchi2 of the two paths, and the
    description, from the cards alone."""
    from ..bundle.card import model_rows  # torch-free

    rows = model_rows()
    width = {k: max([len(h)] + [len(r[k]) for r in rows]) for k, h in _MODEL_COLUMNS[:-1]}
    print("  ".join(f"{h:<{width[k]}}" if k in width else h for k, h in _MODEL_COLUMNS))
    for r in rows:
        print("  ".join(f"{r[k]:<{width[k]}}" if k in width else r[k] for k, _ in _MODEL_COLUMNS))
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
