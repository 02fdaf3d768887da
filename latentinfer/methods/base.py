"""What every inference method is: a registered plug-in with a ``Settings`` dataclass it owns and validates.

A method is a class with a ``name``, a ``Settings`` dataclass (its keys, defaults, types and ranges; the common
``seed`` and ``progress`` come from :class:`Settings`) and ``_run(program, **settings) -> Posterior``. It registers
itself in :data:`METHODS`; the run config validates its ``inference:`` block through the chosen method's
``Settings`` (:mod:`latentinfer.config` imports no sampler: the registry loads the plug-ins on first lookup).

>>> from latentinfer.methods import available_methods
>>> sorted(available_methods())[:2]
['chees', 'emcee']
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..checks import choice, require
from ..errors import ConfigError
from ..registry import Registry

__all__ = ["Method", "InferenceMethod", "Settings", "setting", "METHODS", "register_method", "get_method",
           "available_methods", "chain_seeds"]

#: ``name -> Method subclass`` for every inference method (plug-ins: the modules of :mod:`latentinfer.methods`).
METHODS: Registry = Registry("inference method", "latentinfer.methods", error=ConfigError, skip=("base", "chain_state"))


def setting(default: Any, typ: type | tuple[type, ...], *, choices: tuple | None = None, minimum: float | None = None,
            above: float | None = None, below: float | None = None, doc: str = "") -> Any:
    """A field of a :class:`Settings` dataclass: its default, accepted type(s), and optionally the allowed values,
    an inclusive lower bound ``minimum`` and exclusive bounds ``above`` and ``below``."""
    return dataclasses.field(default=default, metadata={"type": typ, "choices": choices, "minimum": minimum,
                                                        "above": above, "below": below, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings every method has. Subclasses add fields with :func:`setting` and cross-field checks in
    :meth:`validate`."""

    seed: int = setting(0, int, minimum=0, doc="random seed: same config + seed -> same numbers")
    progress: bool = setting(True, bool, doc="progress bars")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def default(cls, key: str) -> Any:
        return {f.name: f.default for f in dataclasses.fields(cls)}[key]

    @classmethod
    def types(cls) -> dict[str, Any]:
        return {f.name: f.metadata["type"] for f in dataclasses.fields(cls)}

    @classmethod
    def check(cls, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Every setting of this method, from ``raw`` (checked: type, choices, range) or its default. Keys of
        ``raw`` that are not settings of this method are ignored here (see :func:`latentinfer.config.foreign_settings`)."""
        out = {}
        for f in dataclasses.fields(cls):
            m = f.metadata
            val = require(raw, f.name, m["type"], where, f.default)
            if val is not None:
                if m["choices"] is not None:
                    choice(val, m["choices"], f.name, where)
                if m["minimum"] is not None and val < m["minimum"]:
                    raise ConfigError(f"{where}: key '{f.name}' must be >= {m['minimum']}, got {val}")
                lo, hi = m["above"], m["below"]
                if (lo is not None and not val > lo) or (hi is not None and not val < hi):
                    want = f"in ({lo}, {hi})" if lo is not None and hi is not None else f"> {lo}" if lo is not None else f"< {hi}"
                    raise ConfigError(f"{where}: key '{f.name}' must be {want}, got {val}")
            out[f.name] = val
        cls(**out).validate(where)
        return out

    def validate(self, where: str) -> None:
        """Cross-field checks (subclasses); raise :class:`ConfigError` naming the key."""


class Method:
    """Base class: subclasses set :attr:`name` and :attr:`Settings` and write :meth:`_run`."""

    name: ClassVar[str] = ""
    Settings: ClassVar[type[Settings]] = Settings

    #: Backend keyword arguments of :func:`latentinfer.execution.map_tasks` (``backend``, ``scheduler``,
    #: ``cluster``, ``checkpoint_dir``) for methods that map independent tasks (chains) onto workers.
    execution: Mapping[str, Any] | None = None

    # old spelling: a default per key (and ``settings``, the tuple of setting names, below)
    @classmethod
    def default(cls, key: str):
        return cls.Settings.default(key)

    def run(self, analysis, *, execution: Mapping[str, Any] | None = None, **settings):
        """Run the method with ``settings`` (checked by :attr:`Settings`; defaults filled in); ``execution`` says
        where independent tasks go and where they are checkpointed (see :func:`~latentinfer.execution.backend_from`)."""
        own = self.Settings.keys()
        unknown = set(settings) - set(own) - {"method"}
        if unknown:
            raise ConfigError(f"inference method '{self.name}': unknown settings {sorted(unknown)} (allowed: {', '.join(own)})")
        full = self.Settings.check({k: v for k, v in settings.items() if k != "method"}, f"inference method '{self.name}'")
        self.execution = dict(execution or {})
        t0 = time.perf_counter()
        post = self._run(analysis, **full)
        post.attrs["wall_seconds"] = time.perf_counter() - t0
        return post

    def _run(self, analysis, **settings):  # pragma: no cover - interface
        raise NotImplementedError


class _SettingNames:
    """``Method.settings``: the names of a method's settings (read on the class or an instance)."""

    def __get__(self, obj, cls) -> tuple[str, ...]:
        return cls.Settings.keys()


Method.settings = _SettingNames()
InferenceMethod = Method  # old name


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name`` (same as ``METHODS.register(attr="name")``)."""
    return METHODS.register(attr="name")(cls)


def available_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str, where: str | None = None) -> Method:
    """An instance of the method called ``name`` (one-line :class:`ConfigError` naming the known ones)."""
    return METHODS.get(name, where)()


def chain_seeds(seed: int, n: int) -> list[int]:
    """Independent integer seeds for ``n`` chains from one user seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
