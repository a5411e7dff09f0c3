"""unirouter: universal model routing (UniRoute, arXiv 2502.08773).

Send each prompt to the cheapest LLM that is likely to answer it well, among any set of models,
including models added after the router was built: a new model only needs one pass over a small
labelled validation set.
"""

from __future__ import annotations

from unirouter import _compat
from unirouter._version import __version__
from unirouter.data import RoutingDataset, ValidationSet, default_data_dir, load_dataset
from unirouter.embedding import CallableEmbedder, Embedder, EmbeddingCache, SentenceTransformerEmbedder
from unirouter.exceptions import (
    AllModelsFailedError,
    ConvergenceWarning,
    DatasetError,
    DuplicateModelError,
    FailedAnswerError,
    InvalidInputError,
    NotFittedError,
    PersistenceError,
    ProfileMismatchError,
    ProfilingCostError,
    ProfilingError,
    UniRouterError,
    UniRouterWarning,
    UnknownModelError,
)
from unirouter.profiles import ModelProfile, ProfilingStats
from unirouter.routers import DifficultyRouter, RoutingDecision, UniRouter


_compat.install()  # the 0.1 module paths (unirouter.scorers, ...) keep working


def __getattr__(name: str):  # lazy: these pull in optional work only when used
    if name == "calibrate_cost_weight":
        from unirouter.routers.calibration import calibrate_cost_weight

        return calibrate_cost_weight
    if name == "load_pretrained":
        from unirouter.pretrained import load_pretrained

        return load_pretrained
    if name in {"Profiler", "ResponseCache", "TokenPrice"}:
        from unirouter import profiling

        return getattr(profiling, name)
    raise AttributeError(f"module 'unirouter' has no attribute {name!r}")


__all__ = [
    "AllModelsFailedError",
    "CallableEmbedder",
    "ConvergenceWarning",
    "DatasetError",
    "DifficultyRouter",
    "DuplicateModelError",
    "Embedder",
    "EmbeddingCache",
    "FailedAnswerError",
    "InvalidInputError",
    "ModelProfile",
    "NotFittedError",
    "PersistenceError",
    "ProfileMismatchError",
    "Profiler",
    "ProfilingCostError",
    "ProfilingError",
    "ProfilingStats",
    "ResponseCache",
    "RoutingDataset",
    "RoutingDecision",
    "SentenceTransformerEmbedder",
    "TokenPrice",
    "UniRouter",
    "UniRouterError",
    "UniRouterWarning",
    "UnknownModelError",
    "ValidationSet",
    "__version__",
    "calibrate_cost_weight",
    "default_data_dir",
    "load_dataset",
    "load_pretrained",
]
