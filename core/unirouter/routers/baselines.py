"""Baseline routers behind the same interface as :class:`~unirouter.UniRouter` (method.md 2.3).

* :class:`ZeroRouter` — prompt-independent: one part, ``gamma(x, h)`` = the model's global
  validation error. Its sweep over the cost weight visits single models only.
* :class:`KNNRouter` — one part per validation prompt: ``gamma(x, h)`` = mean error of ``h`` on the
  ``k`` validation prompts nearest to ``x`` by cosine similarity (missing labels: mean over the
  neighbours where ``h`` is observed). With the training prompts and the new models' labels on them
  as the "validation" set, it is the *clairvoyant K-NN* of the evaluation.

The oracle (true error on the test prompts) and the best single model are not routers; they live in
:mod:`unirouter.evaluation`.

Both routers share the whole pool machinery of :class:`~unirouter.routers.base.BaseRouter`
(``add_model``, ``remove_model``, ``predict``, ``choose``, ``route``, ``save``/``load``).

Examples
--------
>>> knn = KNNRouter(n_neighbors=25).fit(validation=val_set, validation_embeddings=xv)
>>> knn.add_model("small", correctness=small_scores, cost=0.0002)
>>> knn.add_model("large", correctness=large_scores, cost=0.01)
>>> knn.route(embedding=x, cost_weight=10.0).model
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unirouter.routers.base import BaseRouter
from unirouter._validation import check_embeddings, check_int, check_prompt, check_prompts
from unirouter.data.datasets import ValidationSet
from unirouter.exceptions import InvalidInputError
from unirouter.profiles import ModelProfile, ProfilingStats

__all__ = ["KNNRouter", "ZeroRouter"]

# Rows of queries handled at once by the K-NN similarity search (bounds memory to ~chunk x n_val).
_CHUNK = 2048


class ZeroRouter(BaseRouter):
    """Prompt-independent router: every prompt gets the same predicted error per model.

    ``gamma(x, h)`` = the model's mean validation error; the decision for a cost weight ``lam`` is
    ``argmin_h gamma(h) + lam * cost(h)`` for every prompt. No embedding is ever computed.

    Parameters
    ----------
    cost_weight : float, default=0.0
        Default lambda for :meth:`route`.
    embedder : Embedder, str, callable or None, default=None
        Recorded for a uniform interface (and persistence); never called.

    Attributes
    ----------
    validation_labels_ : ndarray (n_val,) of zeros (one part)
    models_, profiles_

    Examples
    --------
    >>> zero = ZeroRouter().fit(validation=val_set)
    >>> zero.add_model("a", correctness=scores, cost=0.001)
    """

    _has_clusters = False

    def __init__(self, *, cost_weight: float = 0.0, embedder: Any = None) -> None:
        self.cost_weight = cost_weight
        self.embedder = embedder

    def fit(
        self,
        prompts: Sequence[str] | None = None,
        *,
        validation: ValidationSet | Sequence[str] | None = None,
        validation_embeddings: Any = None,
        **_ignored: Any,
    ) -> ZeroRouter:
        """Record the validation set models will be profiled on. ``prompts`` are not needed.

        Parameters
        ----------
        prompts : ignored
            Accepted so every router has the same ``fit`` call.
        validation : ValidationSet or list of str
        validation_embeddings : array (n_val, D), optional
            Only used to fingerprint the validation set when no prompts are given.

        Returns
        -------
        self
        """
        self._check_params()
        vs, xv = self._validation_inputs(validation, validation_embeddings)
        self._finish_fit(vs, xv, np.zeros(xv.shape[0], dtype=np.int64), 1)
        return self

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        # The decision does not depend on the prompt: never embed, one placeholder column per prompt.
        return np.zeros((len(texts), 1), dtype=np.float32)

    def _prepare_x(self, prompts: Any, embeddings: Any, *, single: bool) -> np.ndarray:
        # The decision does not depend on the prompt: never embed, only count rows (checked all the
        # same, so bad input fails here as it does with every other router).
        if embeddings is not None:
            return check_embeddings(embeddings)
        if prompts is None:
            msg = "give prompts or embeddings= to route."
            raise InvalidInputError(msg)
        if single:
            check_prompt(prompts)
            return np.zeros((1, 1), dtype=np.float32)
        return np.zeros((len(check_prompts(prompts)), 1), dtype=np.float32)

    def _weights(self, x: np.ndarray) -> np.ndarray:
        return np.ones((x.shape[0], 1), dtype=np.float32)

    def _gamma_cost(self, x, psi, cost):
        n = x.shape[0]
        return np.broadcast_to(psi[:, 0], (n, psi.shape[0])).copy(), np.broadcast_to(cost[:, 0], (n, cost.shape[0])).copy(), None

    def _fitted_attribute(self) -> str:
        return "validation_labels_"

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"validation_labels": self.validation_labels_}

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.validation_labels_ = np.asarray(arrays["validation_labels"], dtype=np.int64)


class KNNRouter(BaseRouter):
    """K-nearest-neighbour router over the validation set (one part per validation prompt).

    ``gamma(x, h)`` = mean error of ``h`` on the ``n_neighbors`` validation prompts with the highest
    cosine similarity to ``x`` (embeddings are unit rows, so cosine = dot product). Where ``h`` has no
    label the neighbour is skipped; if none of the neighbours is labelled, ``gamma`` falls back to the
    model's global validation error. Expected cost is the mean cost over the same neighbours.

    Parameters
    ----------
    n_neighbors : int, default=25
        k. Capped at the validation-set size.
    cost_weight : float, default=0.0
        Default lambda for :meth:`route`.
    embedder : Embedder, str, callable or None, default=None
        Used only when prompts (not embeddings) are given.

    Attributes
    ----------
    validation_embeddings_ : ndarray (n_val, D)
    validation_labels_ : ndarray (n_val,)  = arange(n_val), one part per prompt
    models_, profiles_

    Examples
    --------
    >>> knn = KNNRouter(n_neighbors=10).fit(validation_embeddings=xv)
    >>> knn.add_model("m", correctness=scores, cost=0.002)
    >>> gamma, cost, names = knn.predict(embeddings=x_test)
    """

    _has_clusters = False

    def __init__(self, n_neighbors: int = 25, *, cost_weight: float = 0.0, embedder: Any = None) -> None:
        self.n_neighbors = n_neighbors
        self.cost_weight = cost_weight
        self.embedder = embedder

    def fit(
        self,
        prompts: Sequence[str] | None = None,
        *,
        validation: ValidationSet | Sequence[str] | None = None,
        validation_embeddings: Any = None,
        **_ignored: Any,
    ) -> KNNRouter:
        """Store the validation embeddings (the neighbours). ``prompts`` are not needed.

        Returns
        -------
        self
        """
        self._check_params()
        vs, xv = self._validation_inputs(validation, validation_embeddings)
        self.validation_embeddings_ = np.ascontiguousarray(xv, dtype=np.float32)
        self._finish_fit(vs, xv, np.arange(xv.shape[0], dtype=np.int64), xv.shape[0])
        return self

    def _check_params(self) -> None:
        super()._check_params()  # cost_weight, embedder
        check_int(self.n_neighbors, "n_neighbors", low=1)

    def _prior_strength(self) -> float:
        return 0.0

    def build_profile(self, name: str, correctness: Any, *, cost: Any, stats: ProfilingStats | None = None, metadata=None) -> ModelProfile:
        profile = super().build_profile(name, correctness, cost=cost, stats=stats, metadata=metadata)
        # One part per prompt: keep the raw errors, NaN where unknown, so gamma averages observed
        # neighbours only (the shrunk version would fill NaN with the global error).
        return profile.model_copy(update={"cluster_error": 1.0 - profile.scores})

    def _k(self) -> int:
        return int(min(self.n_neighbors, self.n_validation_))

    def neighbors(self, x: np.ndarray) -> np.ndarray:
        """Indices (n, k) of the k nearest validation prompts of each row of ``x`` (unordered)."""
        self._check_fitted()
        x = check_embeddings(x, dim=self.validation_embeddings_.shape[1])
        return np.concatenate([self._neighbors(x[s : s + _CHUNK]) for s in range(0, x.shape[0], _CHUNK)] or [np.zeros((0, self._k()), np.int64)])

    def _neighbors(self, x: np.ndarray) -> np.ndarray:
        sims = x @ self.validation_embeddings_.T
        k = self._k()
        if k >= sims.shape[1]:
            return np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        return np.argpartition(-sims, k - 1, axis=1)[:, :k]

    def _weights(self, x: np.ndarray) -> np.ndarray:
        idx = self.neighbors(x)
        w = np.zeros((x.shape[0], self.n_validation_), dtype=np.float32)
        np.put_along_axis(w, idx, 1.0 / idx.shape[1], axis=1)
        return w

    def _gamma_cost(self, x, psi, cost):
        # psi: (M, n_val) raw errors (NaN = unknown); cost: (M, n_val) per-prompt (or flat) costs.
        n, m = x.shape[0], psi.shape[0]
        gamma = np.empty((n, m), dtype=np.float64)
        ecost = np.empty((n, m), dtype=np.float64)
        observed = ~np.isnan(psi.T)  # (n_val, M)
        err = np.where(observed, psi.T, 0.0)
        with np.errstate(invalid="ignore"):
            fallback = err.sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
        cost_t = cost.T
        for s in range(0, n, _CHUNK):
            idx = self._neighbors(x[s : s + _CHUNK])  # (b, k)
            tot = err[idx].sum(axis=1)  # (b, M)
            cnt = observed[idx].sum(axis=1)
            gamma[s : s + _CHUNK] = np.where(cnt > 0, tot / np.maximum(cnt, 1), fallback)
            ecost[s : s + _CHUNK] = cost_t[idx].mean(axis=1)
        return gamma, ecost, None

    def _fitted_attribute(self) -> str:
        return "validation_embeddings_"

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"validation_embeddings": self.validation_embeddings_, "validation_labels": self.validation_labels_}

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.validation_embeddings_ = np.ascontiguousarray(arrays["validation_embeddings"], dtype=np.float32)
        self.validation_labels_ = np.asarray(arrays["validation_labels"], dtype=np.int64)
