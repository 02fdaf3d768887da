"""The project's own error type.

Every problem caused by the user's input (a config key, a file, a parameter name, a data vector) is raised
as :class:`LatentInferError` with one line that names the culprit. The CLI prints that line and exits with
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["LatentInferError", "ConfigError", "DataError", "BundleError"]


class LatentInferError(Exception):
    """Bad input: one clear line naming the key, file or parameter. The CLI exits with code 2."""

    exit_code = 2


class ConfigError(LatentInferError):
    """A run or training config is malformed (unknown key, wrong type, unknown name)."""


class DataError(LatentInferError):
    """A data vector, covariance or theory file is unusable (NaN, not positive definite, wrong length)."""


class BundleError(LatentInferError):
    """A model bundle is missing, corrupt or tampered with (sha256 mismatch, bad card)."""
