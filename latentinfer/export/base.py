"""Registry of export formats: ``@register_exporter(name)`` on ``write(posterior, prefix) -> [paths]``."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import LatentInferError

__all__ = ["register_exporter", "get_exporter", "available_formats"]

_EXPORTERS: dict[str, Callable] = {}


def register_exporter(name: str):
    def deco(fn):
        _EXPORTERS[name] = fn
        return fn

    return deco


def available_formats() -> list[str]:
    return list(_EXPORTERS)


def get_exporter(name: str) -> Callable:
    if name not in _EXPORTERS:
        raise LatentInferError(f"unknown export format '{name}' (available: {', '.join(_EXPORTERS)})")
    return _EXPORTERS[name]
