"""``python -m latentinfer.cli``: the same as the ``latentinfer`` command."""

import sys

from . import main

sys.exit(main())
