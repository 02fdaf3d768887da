"""Moved to :mod:`latentinfer.bundle.card`; this name keeps old imports working."""

from .bundle.card import *  # noqa: F401,F403
from .bundle.card import FORMAT, _normal_mass, _one_line, _short, bundle_file, check_prior, list_models, read_card  # noqa: F401
