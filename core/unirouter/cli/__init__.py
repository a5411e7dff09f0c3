"""The ``unirouter`` command line: ``main`` (fit, add-model, route, info, ...) and ``evaluate``.

Top layer: may import anything below; nothing imports it.
"""

from unirouter.cli.main import main

__all__ = ["main"]
