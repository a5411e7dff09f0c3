"""scikit-learn's parameter protocol (get_params / set_params / repr) without importing sklearn.

``sklearn.base`` costs about 0.9 s to import (it pulls in SciPy); ``import unirouter`` must stay
under 0.5 s, so the few lines of the protocol we use live here. Semantics follow
``sklearn.base.BaseEstimator``: parameters are the keyword arguments of ``__init__``.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["ParamsMixin"]


class ParamsMixin:
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name for p in sig.parameters.values() if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters by name (as in scikit-learn)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> ParamsMixin:
        """Set constructor parameters; unknown names raise ``ValueError``. Returns ``self``."""
        valid = set(self._get_param_names())
        for key, value in params.items():
            if key not in valid:
                msg = f"Invalid parameter {key!r} for {type(self).__name__}. Valid parameters: {sorted(valid)}."
                raise ValueError(msg)
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values() if p.name != "self"
        }
        changed = []
        for name, value in self.get_params().items():
            d = defaults.get(name, inspect.Parameter.empty)
            if d is inspect.Parameter.empty or d is not value and d != value:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"
