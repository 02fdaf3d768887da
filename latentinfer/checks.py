"""Checks of user-given mappings (configs, specs, settings) that fail with one line naming the key.

Shared by the run config (:mod:`latentinfer.config`), the likelihood specs, the training config and every method's
``Settings``; imports nothing but the errors, so any station may use it."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["check_keys", "require", "choice", "MISSING"]

#: Marks a key without a default (``require`` then insists on it).
MISSING = _MISSING = object()


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in ts)


def check_keys(d: Mapping, allowed: set[str], where: str) -> None:
    """Reject unknown keys, naming the first one and the allowed set."""
    for key in d:
        if key not in allowed:
            shown = f"'{key}'" if isinstance(key, str) and key.isprintable() else repr(key)
            raise ConfigError(f"{where}: unknown key {shown} (allowed: {', '.join(sorted(allowed)) or 'none'})")


def require(d: Mapping, key: str, typ: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """``d[key]`` checked against ``typ`` (ints are accepted as floats), or a :class:`ConfigError`."""
    if key not in d or d[key] is None and default is not _MISSING and default is not None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing key '{key}'")
        return copy.deepcopy(default)
    val = d[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    if float in types and isinstance(val, int) and not isinstance(val, bool):
        try:
            val = float(val)
        except OverflowError:
            raise ConfigError(f"{where}: key '{key}' is too large for a number, got an integer of {len(str(val))} digits") from None
    if isinstance(val, float) and float in types and not math.isfinite(val):
        raise ConfigError(f"{where}: key '{key}' must be a finite number, got {val!r}")
    if isinstance(val, bool) and bool not in types:
        raise ConfigError(f"{where}: key '{key}' must be {_type_name(typ)}, got {val!r}")
    if not isinstance(val, types):
        raise ConfigError(f"{where}: key '{key}' must be {_type_name(typ)}, got {type(val).__name__} {val!r}")
    return val


def choice(val: str, choices, key: str, where: str) -> str:
    if val not in choices:
        raise ConfigError(f"{where}: key '{key}' must be one of {', '.join(choices)}, got {val!r}")
    return val



_choice = choice  # old private name
