"""Profiling: run a model once over the validation set, grade its answers, record its cost.

``scorers`` (answer -> quality in [0, 1]) and ``response_cache`` (token prices, usage parsing, the
append-only cache of answers that makes profiling resumable) < ``profiler`` (the plan and the async
driver). Imports only :mod:`unirouter.data` and the foundation modules; the routers call it.
"""

from unirouter.profiling.profiler import (
    CachedResponse,
    Profiler,
    ProfilingPlan,
    ProfilingRun,
    ResponseCache,
    TokenPrice,
    aprofile_model,
    profile_model,
    settings_key,
    usage_tokens,
)

__all__ = [
    "CachedResponse",
    "Profiler",
    "ProfilingPlan",
    "ProfilingRun",
    "ResponseCache",
    "TokenPrice",
    "aprofile_model",
    "profile_model",
    "settings_key",
    "usage_tokens",
]
