"""One registry for every plug-in family: model architectures, likelihood types, binnings, transforms, inference
methods, evidence methods, export formats and tension metrics.

A family is a :class:`Registry` created once, in the station that owns it, with the package its built-in plug-ins
live in. A plug-in is one file in that package with a decorator::

    from latentinfer.methods import METHODS

    @METHODS.register("mine")
    class MyMethod(Method): ...

The first lookup imports every module of the package (one way for every family: a package scan, no side-effect
imports elsewhere, no hard-coded module names), so a new plug-in needs its file and its decorator, nothing more.
An unknown name is one line naming the family and the known entries, raised as the family's error class (the
CLI turns it into exit code 2).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import LatentInferError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> plug-in`` for one family.

    ``what`` names an entry in messages ("inference method", "export format"); ``package`` is the dotted name of
    the package scanned for built-in plug-ins on first lookup (``skip``: its modules that hold no plug-in);
    ``error`` is the exception class of an unknown name.
    """

    def __init__(self, what: str, package: str | None = None, *, error: type[Exception] = LatentInferError,
                 skip: tuple[str, ...] = ()):
        self.what = what
        self.package = package
        self.error = error
        self.skip = tuple(skip)
        self._items: dict[str, T] = {}
        self._scanned = package is None

    # -- registration ------------------------------------------------------------------------------------------
    def register(self, name: str | None = None, *, attr: str | None = None) -> Callable[[T], T]:
        """Decorator registering its object under ``name`` (or the object's ``attr``, e.g. a class's ``name``).

        Registering a second, different object under a taken name is a programming error (``ValueError``)."""

        def deco(obj: T) -> T:
            key = name if name is not None else getattr(obj, attr or "name")
            if not isinstance(key, str) or not key:
                raise ValueError(f"{self.what}: a plug-in needs a non-empty string name, got {key!r}")
            old = self._items.get(key)
            if old is not None and old is not obj and _qualname(old) != _qualname(obj):
                raise ValueError(f"{self.what} '{key}' is registered twice ({_qualname(old)}, {_qualname(obj)})")
            self._items[key] = obj
            return obj

        return deco

    # -- lookup ------------------------------------------------------------------------------------------------
    def get(self, name: str, where: str | None = None) -> T:
        """The plug-in called ``name``; an unknown name raises ``error`` naming the known ones."""
        self._scan()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            prefix = f"{where}: " if where else ""
            raise self.error(f"{prefix}unknown {self.what} '{name}' (known: {', '.join(sorted(self._items)) or 'none'})") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        self._scan()
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._scan()
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._scan()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, package={self.package!r}, entries={sorted(self._items)})"

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True  # before importing: a plug-in module may look itself up while being imported
        try:
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
                if not mod.name.startswith("_") and mod.name not in self.skip:
                    importlib.import_module(f"{self.package}.{mod.name}")
        except BaseException:
            self._scanned = False  # a failed import is retried (and reported) on the next lookup
            raise


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
