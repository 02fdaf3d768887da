"""Registry of export formats: ``@EXPORTERS.register(name)`` on ``write(posterior, prefix) -> [paths]`` in a module
of :mod:`latentinfer.export`."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import LatentInferError
from ..registry import Registry

__all__ = ["EXPORTERS", "register_exporter", "get_exporter", "available_formats"]

#: ``format name -> write(posterior, prefix) -> [paths]``.
EXPORTERS: Registry = Registry("export format", "latentinfer.export", error=LatentInferError, skip=("base",))


def register_exporter(name: str):
    return EXPORTERS.register(name)


def available_formats() -> list[str]:
    return EXPORTERS.names()


def get_exporter(name: str) -> Callable:
    return EXPORTERS.get(name)
