"""Arguments shared by several subcommands (torch-free: imported while the parser is built)."""

from __future__ import annotations

__all__ = ["add_corpus_root", "use_corpus_root_of", "comma_list", "train_config_with_corpus"]


def add_corpus_root(p) -> None:
    """``--corpus-root DIR``: put DIR first on the corpus root path (README "Corpus")."""
    p.add_argument("--corpus-root", default=None, metavar="DIR",
                   help="corpus root folder: relative corpus names are looked up here first (default: $LATENTINFER_CORPUS, else ./corpus)")


def use_corpus_root_of(args) -> None:
    from ..paths import use_corpus_root

    use_corpus_root(getattr(args, "corpus_root", None))


def comma_list(text: str, kind, key: str) -> list:
    """``"a,b,c"`` -> ``[kind(a), kind(b), kind(c)]``, or one :class:`ConfigError` line naming ``--key``."""
    from ..errors import ConfigError

    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{key}: expected comma-separated values, got {text!r}") from None


def train_config_with_corpus(args):
    """The training config ``args.config`` (under ``--corpus-root``), its corpus checked first: a missing file is one
    line naming it and the ``simulate`` command that makes it (exit code 2), not a failure an hour into training;
    ``--minutes`` overrides ``max_minutes``."""
    from ..errors import DataError
    from ..ive.config import load_train_config
    from ..simulate.recipes import missing_corpus

    use_corpus_root_of(args)
    cfg = load_train_config(args.config)
    problem = missing_corpus(cfg, args.config)
    if problem:
        raise DataError(problem)
    if getattr(args, "minutes", None) is not None:
        cfg.max_minutes = args.minutes
    return cfg
