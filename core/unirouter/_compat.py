"""Import paths of the flat 0.1 layout, kept working after the move to subpackages (issue 14).

``from unirouter.scorers import MultipleChoiceScorer`` (as the 0.1 README showed) still works: the old
module name resolves to the module's new home, the *same* module object (no copy, no second import),
only when someone asks for it. New code should import from the subpackages.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__all__ = ["MOVED_MODULES", "install"]

MOVED_MODULES = {
    "unirouter.baselines": "unirouter.routers.baselines",
    "unirouter.calibration": "unirouter.routers.calibration",
    "unirouter.datasets": "unirouter.data.datasets",
    "unirouter.difficulty": "unirouter.routers.difficulty",
    "unirouter.embedders": "unirouter.embedding.embedders",
    "unirouter.profiler": "unirouter.profiling.profiler",
    "unirouter.router": "unirouter.routers.uniroute",
    "unirouter.scorers": "unirouter.profiling.scorers",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names (nothing else) and hands back the already-imported new module."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: Any) -> None:  # the new module is already executed
        pass


def install() -> None:
    """Register the finder once (after the regular finders: a real module of that name would win)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
