"""The ``unirouter`` command line: ``commands`` (fit, add-model, route, info, ...), ``evaluate``, ``replay``.

Top layer: may import anything below; nothing imports it.
"""

from unirouter.cli.commands import main

__all__ = ["main"]
