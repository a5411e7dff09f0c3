"""Errors and warnings raised by unirouter.

Every error derives from :class:`UniRouterError`, so ``except UniRouterError`` catches anything the
library raises on purpose. Each class also mixes in the built-in error that would otherwise have been
raised, so existing ``except ValueError`` / ``except LookupError`` clauses keep working::

    UniRouterError(Exception)                              catch-all for the library
    ├── InvalidInputError(UniRouterError, ValueError)      empty prompt, NaN/negative cost, score
    │                                                      outside [0, 1], length mismatch, K > n
    ├── NotFittedError(UniRouterError, ValueError, AttributeError)   same bases as sklearn's
    ├── UnknownModelError(UniRouterError, LookupError)     unknown, forced or excluded name (.model)
    ├── DuplicateModelError(UniRouterError, ValueError)    name taken and replace=False (.model)
    ├── ProfileMismatchError(UniRouterError, ValueError)   other validation set, embedder or K
    ├── DatasetError(UniRouterError, ValueError)           no manifest, ids do not match (.path)
    ├── ProfilingError(UniRouterError, RuntimeError)       too many failed calls (.failures, .causes)
    ├── ProfilingCostError(UniRouterError, ValueError)     estimated profiling cost above the limit
    │                                                      (.estimate, .limit); raised before any call
    ├── PersistenceError(UniRouterError, ValueError)       missing/truncated/tampered file (.path)
    ├── FailedAnswerError(UniRouterError)                  a model answered, but with a failed answer
    │                                                      (empty, or rejected by is_failed_answer) (.model)
    └── AllModelsFailedError(UniRouterError, ExceptionGroup)   every model tried failed: one
                                                           exception per attempt (.exceptions, .attempts)
    UniRouterWarning(UserWarning)                          e.g. tiny clusters shrunk
    └── ConvergenceWarning(UniRouterWarning)               an iterative fit stopped before converging

Context travels in attributes (``.model``, ``.path``), the message says what to fix.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    _ExceptionGroup = ExceptionGroup  # noqa: F821 - builtin since 3.11
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import ExceptionGroup as _ExceptionGroup

__all__ = [
    "AllModelsFailedError",
    "DatasetError",
    "DuplicateModelError",
    "FailedAnswerError",
    "InvalidInputError",
    "NotFittedError",
    "PersistenceError",
    "ProfileMismatchError",
    "ProfilingCostError",
    "ProfilingError",
    "UniRouterError",
    "UniRouterWarning",
    "ConvergenceWarning",
    "UnknownModelError",
]


class UniRouterError(Exception):
    """Base class of every error unirouter raises on purpose."""


class InvalidInputError(UniRouterError, ValueError):
    """An argument has the wrong type, shape or value (empty prompt, NaN cost, ...)."""


class NotFittedError(UniRouterError, ValueError, AttributeError):
    """A router was used before ``fit``.

    Same bases as ``sklearn.exceptions.NotFittedError`` (not a subclass of it: importing scikit-learn
    would cost ``import unirouter`` about a second).
    """


class UnknownModelError(UniRouterError, LookupError):
    """A model name is not registered with the router."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model

    def __str__(self) -> str:  # LookupError subclasses would otherwise be fine; keep plain text
        return str(self.args[0]) if self.args else ""


class DuplicateModelError(UniRouterError, ValueError):
    """A model name is already taken and ``replace=True`` was not given."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class ProfileMismatchError(UniRouterError, ValueError):
    """A profile, embedding or saved router does not match this router (validation set, embedder, K)."""


class DatasetError(UniRouterError, ValueError):
    """A routing dataset on disk is malformed (no manifest, ids that do not match, ...)."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


class ProfilingError(UniRouterError, RuntimeError):
    """Profiling a model failed: too many calls failed, or its answers could not be used."""

    def __init__(
        self,
        message: str,
        *,
        failures: int = 0,
        causes: Mapping[str, int] | Sequence[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.failures = failures
        self.causes = dict(causes) if isinstance(causes, Mapping) else list(causes or [])


class ProfilingCostError(UniRouterError, ValueError):
    """Profiling a model would cost more than ``max_profiling_cost`` (checked before any call)."""

    def __init__(self, message: str, *, estimate: float = 0.0, limit: float = 0.0, calls: int = 0) -> None:
        super().__init__(message)
        self.estimate = estimate
        self.limit = limit
        self.calls = calls


class PersistenceError(UniRouterError, ValueError):
    """A saved router or profile is missing, truncated, tampered with, or of another schema."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


class FailedAnswerError(UniRouterError):
    """A model returned, but its answer counts as failed (empty, whitespace or NUL only by default,
    or rejected by the user's ``is_failed_answer``), so the next model is tried."""

    def __init__(self, message: str, *, model: str | None = None, answer: Any = None) -> None:
        super().__init__(message)
        self.model = model
        self.answer = answer


class AllModelsFailedError(UniRouterError, _ExceptionGroup):
    """Every model tried for a request failed; nothing is lost.

    An exception group (``except* RateLimitError`` works) holding one exception per attempt, in the
    order tried; ``.attempts`` is the attempts record (``[{"model", "ok", "error"}]``) and
    ``__cause__`` the last exception, so tracebacks show it.
    """

    def __new__(cls, message: str, exceptions: Sequence[BaseException], *, attempts: Sequence[Mapping[str, Any]] = ()) -> Any:
        self = super().__new__(cls, message, list(exceptions))
        self.attempts = [dict(a) for a in attempts]
        return self

    def __init__(self, message: str, exceptions: Sequence[BaseException], *, attempts: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message, list(exceptions))

    @property
    def models(self) -> list[str]:
        """The models tried, in order."""
        return [a["model"] for a in self.attempts]

    def derive(self, excs: Sequence[BaseException]) -> AllModelsFailedError:  # keeps the type in except*
        kept = {id(e) for e in excs}
        attempts = [a for a, e in zip(self.attempts, self.exceptions) if id(e) in kept]
        return AllModelsFailedError(self.message, excs, attempts=attempts)


class UniRouterWarning(UserWarning):
    """Soft problems the user should know about (tiny clusters shrunk, few validation prompts)."""


class ConvergenceWarning(UniRouterWarning):
    """An iterative fit (a MAP profile, the empirical-Bayes prior, a learned map) did not converge.

    The library then uses a safe fallback (named in the message) instead of the unconverged values.
    """
