"""Model profiles: what a router knows about one LLM.

A profile keeps the model's raw per-prompt quality on the validation set (so cluster statistics can
be recomputed for any cluster map over the same set), the cost, and the per-cluster summaries the
router routes on:

    cluster_error[k] = (errors_k + a * global_error) / (n_k + a)       (shrinkage, project choice)

with ``n_k`` the scored validation prompts in cluster ``k`` and ``a`` the prior strength. The same
shrinkage applies to per-cluster expected cost when per-prompt costs are known.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

__all__ = ["ModelProfile", "ProfilingStats", "cluster_statistics"]


def _to_array(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v.astype(np.float64, copy=False)
    return np.array([np.nan if x is None else x for x in v], dtype=np.float64)


def _to_list(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in np.asarray(a, dtype=np.float64)]


FloatArray = Annotated[np.ndarray, PlainValidator(_to_array), PlainSerializer(_to_list, return_type=list)]
"""A float64 numpy array in Python, a JSON list (``null`` = missing) on disk."""


class ProfilingStats(BaseModel):
    """How a profile was obtained (all zero for a profile built from known labels)."""

    calls_made: int = 0
    calls_cached: int = 0
    calls_failed: int = 0
    unparsed: int = 0
    wall_time_s: float = 0.0
    failure_causes: dict[str, int] = Field(default_factory=dict)


class ModelProfile(BaseModel):
    """One LLM as the router sees it.

    Attributes
    ----------
    name : str
    validation_fingerprint : str
        Fingerprint of the validation set the scores were measured on.
    scores : ndarray of shape (n_val,)
        Quality in [0, 1] per validation prompt, NaN where unknown (e.g. failed calls).
    costs : ndarray of shape (n_val,) or None
        Measured per-query costs on the validation prompts, if known.
    cost_per_query : float
        Mean cost per query (the given number, or the mean of ``costs``).
    cluster_error, cluster_cost : ndarray of shape (K,)
    cluster_count : list of int, length K
        Scored validation prompts per cluster.
    global_error : float
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    name: str
    validation_fingerprint: str
    scores: FloatArray
    costs: FloatArray | None = None
    cost_per_query: float
    cluster_error: FloatArray
    cluster_cost: FloatArray
    cluster_count: list[int]
    global_error: float
    prior_strength: float
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    stats: ProfilingStats = Field(default_factory=ProfilingStats)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return int(self.cluster_error.shape[0])

    @property
    def accuracy(self) -> float:
        """Mean validation quality over the scored prompts."""
        return 1.0 - self.global_error

    def summary(self) -> dict[str, Any]:
        """A short, JSON-friendly description (no per-prompt arrays)."""
        return {
            "name": self.name,
            "validation_accuracy": round(self.accuracy, 4),
            "cost_per_query": self.cost_per_query,
            "n_scored": int(np.sum(~np.isnan(self.scores))),
            "n_clusters": self.n_clusters,
            "created_at": self.created_at.isoformat(),
            "validation_fingerprint": self.validation_fingerprint,
            **({"stats": self.stats.model_dump()} if self.stats.calls_made or self.stats.calls_cached else {}),
        }

    def __repr__(self) -> str:
        return (
            f"ModelProfile(name={self.name!r}, accuracy={self.accuracy:.3f}, "
            f"cost_per_query={self.cost_per_query:.3g}, n_clusters={self.n_clusters})"
        )


def cluster_statistics(
    values: np.ndarray, labels: np.ndarray, n_clusters: int, prior_strength: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Shrunk per-cluster means of ``values`` (NaN = missing).

    Returns ``(cluster_mean (K,), cluster_count (K,), global_mean)`` where
    ``cluster_mean[k] = (sum_k + a * global_mean) / (n_k + a)``; with ``a = 0`` an empty cluster
    takes the global mean.
    """
    observed = ~np.isnan(values)
    v = np.where(observed, values, 0.0)
    counts = np.bincount(labels, weights=observed.astype(np.float64), minlength=n_clusters)
    sums = np.bincount(labels, weights=v, minlength=n_clusters)
    global_mean = float(v.sum() / max(observed.sum(), 1))
    a = float(prior_strength)
    denom = counts + a
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(denom > 0, (sums + a * global_mean) / np.where(denom > 0, denom, 1.0), global_mean)
    return means, counts.astype(np.int64), global_mean
