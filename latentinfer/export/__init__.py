"""Posterior samples in the formats of cosmologists' tools (GetDist text chains)."""

from __future__ import annotations

import os
from pathlib import Path

from .base import EXPORTERS, available_formats, get_exporter, register_exporter
from .getdist import prior_ranges, write_getdist
from ..rundir import load_run

__all__ = ["export_run", "EXPORTERS", "available_formats", "get_exporter", "register_exporter", "write_getdist", "prior_ranges"]


def export_run(run: str | os.PathLike, fmt: str = "getdist", prefix: str | os.PathLike | None = None) -> list[Path]:
    """Export the posterior of run folder ``run``; default prefix ``RUN/<fmt>/<run name>``."""

    writer = get_exporter(fmt)
    r = load_run(run)
    if prefix is None:
        prefix = r.path / fmt / r.name
    return writer(r.posterior, prefix)
