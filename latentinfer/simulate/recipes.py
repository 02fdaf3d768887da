"""Corpus recipes: how each corpus file of a training config is made, so ``simulate --config`` remakes them all.

A training config names its corpus files; the shared ones come with the project, the others are made by
``latentinfer simulate``. The config's ``simulate:`` block records, for each file made here, the arguments that
made it (the file is ``<out>/<model>.npz``, so ``out`` is the file's folder)::

    simulate:
      ede-ext/ede.npz: {model: ede, n: 4096, seed: 12, rows: "1000:1700"}
      ede-hi/ede.npz: {model: ede, n: 4096, seed: 14, rows: "0:1250", box: "fde_zc=0.075:0.15"}

``latentinfer simulate --config CONFIG.yaml [--plan]`` prints every recipe with what is done (files present,
chunks finished) and the CAMB time left, then runs what is missing (resumable chunk by chunk, in local processes or
on Dask); ``latentinfer train`` names the missing files and this command in one line instead of failing on the first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..paths import corpus_path
from ..execution import TaskCheckpoint

__all__ = ["Recipe", "recipes_from", "check_recipes", "missing_corpus", "SECONDS_PER_SPECTRUM", "plan_table"]

#: CAMB seconds per spectrum on one core of this kind of machine (the corpus settings, lensed to lmax 3200), as
#: measured by the runs that made the shipped corpora: 2 worker processes made about 15 EDE spectra a minute.
SECONDS_PER_SPECTRUM = {"lcdm": 4.0, "ede": 8.0}

_KEYS = {"model": str, "n": int, "seed": int, "rows": str, "box": str, "chunk": int}
_REQUIRED = ("model", "n", "seed")


@dataclass(frozen=True)
class Recipe:
    """The ``latentinfer simulate`` arguments that make one corpus file ``path`` (= ``out/<model>.npz``)."""

    path: str
    model: str
    n: int
    seed: int
    rows: str | None = None
    box: str | None = None
    chunk: int = 25

    @property
    def file(self) -> Path:
        """Where the file is (or will be written): its name under the corpus root."""
        return corpus_path(self.path)

    @property
    def out(self) -> Path:
        return self.file.parent

    def design_rows(self):
        from .design import parse_rows

        import numpy as np

        rows = parse_rows(self.rows, self.n)
        return np.arange(self.n) if rows is None else rows

    @property
    def n_spectra(self) -> int:
        return len(self.design_rows())

    def chunk_keys(self) -> list[str]:
        from . import chunk_keys
        from .design import parse_box

        return chunk_keys(self.model, self.n, self.seed, self.design_rows(), self.chunk, parse_box(self.box, self.model))

    def status(self) -> tuple[bool, int, int]:
        """(file present, chunks finished, chunks in all)."""

        keys = self.chunk_keys()
        ck = self.out / "chunks"
        done = 0
        if ck.is_dir():
            store = TaskCheckpoint(ck)
            done = sum(store.has(k) for k in keys)
        return self.file.is_file(), done, len(keys)

    def command(self) -> str:
        cmd = f"latentinfer simulate --model {self.model} --n {self.n} --seed {self.seed}"
        if self.box:
            cmd += f" --box {self.box}"
        if self.rows:
            cmd += f" --rows {self.rows}"
        return cmd + f" --chunk {self.chunk} --out {self.out}"

    def run(self, *, workers: int | None = None, backend: str = "local", scheduler: str | None = None,
            progress=None) -> Path:
        from . import simulate
        from .design import parse_box, parse_rows

        return simulate(self.model, self.n, self.seed, self.out, box=parse_box(self.box, self.model), chunk=self.chunk,
                        workers=workers, backend=backend, scheduler=scheduler, rows=parse_rows(self.rows, self.n),
                        progress=progress)


def check_recipes(recipes: Any, files: list[str], where: str = "train config") -> None:
    """Validate a ``simulate:`` block: a mapping corpus file -> simulate arguments (ConfigError naming the key)."""
    from .design import parse_box, parse_rows

    if not isinstance(recipes, Mapping):
        raise ConfigError(f"{where}: key 'simulate' must map corpus files to simulate arguments, got {recipes!r}")
    for path, args in recipes.items():
        if path not in files:
            raise ConfigError(f"{where}: simulate: '{path}' is not one of the corpus files (corpus, lcdm_as_ede)")
        if not isinstance(args, Mapping):
            raise ConfigError(f"{where}: simulate: '{path}' must map to simulate arguments, got {args!r}")
        for key, val in args.items():
            if key not in _KEYS:
                raise ConfigError(f"{where}: simulate: '{path}': unknown key '{key}' (allowed: {', '.join(_KEYS)})")
            typ = _KEYS[key]
            if not isinstance(val, typ) or isinstance(val, bool):
                raise ConfigError(f"{where}: simulate: '{path}': key '{key}' must be {typ.__name__}, got {val!r}")
        for key in _REQUIRED:
            if key not in args:
                raise ConfigError(f"{where}: simulate: '{path}': missing key '{key}'")
        if args["model"] not in ("lcdm", "ede"):
            raise ConfigError(f"{where}: simulate: '{path}': key 'model' must be lcdm or ede, got {args['model']!r}")
        if Path(path).name != f"{args['model']}.npz":
            raise ConfigError(f"{where}: simulate: '{path}': simulate writes <out>/{args['model']}.npz, so the file "
                              f"must be named {args['model']}.npz")
        if args["n"] < 1 or args.get("chunk", 25) < 1:
            raise ConfigError(f"{where}: simulate: '{path}': keys 'n' and 'chunk' must be >= 1")
        try:
            parse_rows(args.get("rows"), args["n"])
            parse_box(args.get("box"), args["model"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: simulate: '{path}': {exc}") from None


def recipes_from(cfg) -> list[Recipe]:
    """The recipes of a :class:`~latentinfer.ive.config.TrainConfig`, in the order of its corpus files."""
    files = list(cfg.corpus) + list(cfg.lcdm_as_ede)
    return [Recipe(path=p, **cfg.simulate[p]) for p in files if p in cfg.simulate]


def missing_corpus(cfg, config_path: str | os.PathLike | None = None) -> str | None:
    """None when every corpus file of ``cfg`` is present, else one line naming the missing files and the command
    that makes them (with the CAMB time on 2 cores)."""
    files = list(dict.fromkeys(list(cfg.corpus) + list(cfg.lcdm_as_ede)))
    missing = [p for p in files if not corpus_path(p).is_file()]
    if not missing:
        return None
    by_path = {r.path: r for r in recipes_from(cfg)}
    made = [by_path[p] for p in missing if p in by_path]
    unknown = [p for p in missing if p not in by_path]
    head = f"corpus file {missing[0]} not found" if len(missing) == 1 else \
        f"{len(missing)} corpus files not found ({', '.join(missing)})"
    if unknown:
        return head + (f"; no recipe in the config's simulate: block for {', '.join(unknown)}" if made else "")
    n = sum(r.n_spectra for r in made)
    hours = sum(r.n_spectra * SECONDS_PER_SPECTRUM[r.model] for r in made) / 2 / 3600
    cfg_arg = config_path if config_path is not None else "CONFIG.yaml"
    them = "it" if len(missing) == 1 else "them"
    return (f"{head}: `latentinfer simulate --config {cfg_arg}` makes {them} ({n} CAMB spectra, about {hours:.1f} h "
            f"on 2 cores; resumable, --backend dask to scale out)")


def plan_table(recipes: list[Recipe], workers: int) -> str:
    """A text table of the recipes with what is done, and the CAMB hours left on ``workers`` processes."""
    lines = [f"{'file':<44} {'design':<46} {'spectra':>7} {'done':>11} {'left (h)':>8}"]
    left_h = 0.0
    for r in recipes:
        present, done, total = r.status()
        design = f"{r.model} n={r.n} seed={r.seed}" + (f" rows {r.rows}" if r.rows else "") + (f" {r.box}" if r.box else "")
        todo = 0 if present else r.n_spectra * (total - done) / max(total, 1)
        h = todo * SECONDS_PER_SPECTRUM[r.model] / max(workers, 1) / 3600
        left_h += h
        state = "present" if present else f"{done}/{total} chunks"
        lines.append(f"{r.path:<44} {design:<46} {r.n_spectra:>7} {state:>11} {h:>8.1f}")
    lines.append(f"CAMB time left on {workers} worker(s): about {left_h:.1f} h")
    return "\n".join(lines)
