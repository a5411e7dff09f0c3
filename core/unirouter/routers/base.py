"""Machinery shared by every router: the model pool, profiles, routing decisions, save/load hooks.

Every router here has the same form (method.md section 2): the validation set is partitioned into P
parts (K clusters for UniRoute, one part per prompt for K-NN, a single part for ZeroRouter); a model is
described by its shrunk error (and expected cost) on each part, ``psi (P,)``; a prompt by weights over
the parts ``w(x) (P,)``; and

    gamma(x, h) = w(x) . psi(h)        route(x) = argmin_h gamma(x, h) + lam * cost(x, h)

Subclasses implement ``_fit_partition`` (learn the map and partition the validation prompts) and
``_weights`` (or the faster ``_gamma_cost``). Adding a model computes its ``psi``: no refit, ever.

The pool is an immutable snapshot swapped under a lock, so routing threads never see a half-added
model and never take a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from unirouter._params import ParamsMixin
from unirouter._validation import (
    check_cost,
    check_cost_weight,
    check_costs,
    check_embeddings,
    check_is_fitted,
    check_model_name,
    check_prompt,
    check_prompts,
    check_scores,
)
from unirouter.data.datasets import ValidationSet
from unirouter.embedding.embedders import Embedder, EmbedderIdentity, as_embedder, check_embedder
from unirouter.exceptions import (
    DuplicateModelError,
    InvalidInputError,
    ProfileMismatchError,
    UnknownModelError,
)
from unirouter.persistence.registry import register_router_class
from unirouter.profiles import ModelProfile, ProfilingStats, cluster_statistics

__all__ = ["BaseRouter", "RoutingDecision"]


@dataclass(frozen=True, eq=False)
class RoutingDecision:
    """What the router decided for one prompt, and why.

    Attributes
    ----------
    model : str
        The chosen model.
    candidates : tuple of str
        The models that were considered, in router order.
    predicted_error : ndarray (n_candidates,)
        gamma(x, h) for each candidate.
    expected_cost : ndarray (n_candidates,)
        Expected cost of each candidate on this prompt.
    cost_weight : float
        The lambda used.
    cluster_weights : ndarray (K,) or None
        Phi(x) (None for routers without clusters, e.g. K-NN).
    """

    model: str
    candidates: tuple[str, ...]
    predicted_error: np.ndarray
    expected_cost: np.ndarray
    cost_weight: float
    cluster_weights: np.ndarray | None = None
    _ranking: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def scores(self) -> np.ndarray:
        """predicted_error + cost_weight * expected_cost, per candidate (lower is better)."""
        return self.predicted_error + self.cost_weight * self.expected_cost

    @property
    def ranked(self) -> tuple[str, ...]:
        """Candidates best first: the chosen model, then the fallbacks in order."""
        # The tie-broken scores the choice was made on, so ranked[0] is always the chosen model.
        scores = self._ranking if self._ranking is not None else self.scores
        return tuple(self.candidates[i] for i in np.argsort(scores, kind="stable"))

    @property
    def cluster(self) -> int | None:
        """The most likely cluster, if the router has clusters."""
        return None if self.cluster_weights is None else int(np.argmax(self.cluster_weights))

    @property
    def chosen_predicted_error(self) -> float:
        return float(self.predicted_error[self.candidates.index(self.model)])

    @property
    def chosen_expected_cost(self) -> float:
        return float(self.expected_cost[self.candidates.index(self.model)])

    def to_dict(self, *, include_weights: bool = False) -> dict[str, Any]:
        """A JSON-ready view (used in LangChain/LlamaIndex metadata and by the CLI)."""
        out: dict[str, Any] = {
            "model": self.model,
            "cost_weight": self.cost_weight,
            "cluster": self.cluster,
            "ranked": list(self.ranked),
            "predicted_error": {n: round(float(e), 6) for n, e in zip(self.candidates, self.predicted_error)},
            "expected_cost": {n: float(c) for n, c in zip(self.candidates, self.expected_cost)},
        }
        if include_weights and self.cluster_weights is not None:
            out["cluster_weights"] = [round(float(w), 6) for w in self.cluster_weights]
        return out


class _Memo:
    """A small thread-safe LRU memo (per pool snapshot): at most ``maxsize`` entries.

    ``choose()`` is called from many threads with many cost weights (a calibration sweep, one
    weight per request): an unbounded dict grew by ~0.5 GB per 100k weights, and a value written
    in two steps could be read half-written. Values are stored whole, under a lock.
    """

    def __init__(self, maxsize: int = 128) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # a pickled router starts with an empty memo (locks do not pickle)
        return {"maxsize": self.maxsize}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["maxsize"])

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class _Pool:
    """Immutable view of the registered models (swapped atomically on add/remove)."""

    names: tuple[str, ...] = ()
    psi: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (M, P) error per part
    cost: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (M, P) expected cost per part
    profiles: dict[str, ModelProfile] = field(default_factory=dict)
    cache: _Memo = field(default_factory=lambda: _Memo(), compare=False, repr=False)  # per-snapshot memo

    @property
    def tie_scale(self) -> float:
        """Cost scale of the tie-break term (the largest expected cost in the pool)."""
        return float(self.cost.max()) if self.cost.size else 0.0

    def index(self, names: Iterable[str]) -> np.ndarray:
        pos = {n: i for i, n in enumerate(self.names)}
        out = []
        for n in names:
            if n not in pos:
                msg = f"model {n!r} is not registered with this router; registered: {list(self.names)}."
                raise UnknownModelError(msg, model=n)
            out.append(pos[n])
        return np.asarray(out, dtype=np.int64)


class BaseRouter(ParamsMixin):
    """Base class of all routers; see the module docstring for the shared form."""

    _has_clusters = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every router class records itself so that persistence can load it by its saved name.
        super().__init_subclass__(**kwargs)
        register_router_class(cls, replace=False)

    # -- state ---------------------------------------------------------------------------------
    def _init_state(self) -> None:
        if not hasattr(self, "_pool_lock"):
            self._pool_lock = threading.RLock()
            self._pool = _Pool()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_pool_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool_lock = threading.RLock()

    @property
    def embedder_(self) -> Embedder:
        """The resolved embedder (the default MiniLM when ``embedder=None``)."""
        emb = getattr(self, "_embedder", None)
        if emb is None:
            emb = as_embedder(getattr(self, "embedder", None))
            self._embedder = emb
        return emb

    def _fitted_attribute(self) -> str:
        return "validation_labels_"

    def _check_params(self) -> None:
        """Check the parameters every router has (scikit-learn style: at fit time, the constructor
        only stores). Subclasses check their own after calling this."""
        cw = getattr(self, "cost_weight", None)
        if cw is not None:
            check_cost_weight(cw)
        check_embedder(getattr(self, "embedder", None))

    def _check_fitted(self) -> None:
        check_is_fitted(self, self._fitted_attribute())

    # -- fitting -------------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder_.embed(list(texts))

    def _validation_inputs(
        self, validation: ValidationSet | Sequence[str] | None, validation_embeddings: Any
    ) -> tuple[ValidationSet | None, np.ndarray]:
        if validation is None and validation_embeddings is None:
            msg = "fit needs the validation prompts (validation=ValidationSet or list of prompts) or validation_embeddings=."
            raise InvalidInputError(msg)
        vs: ValidationSet | None
        if validation is None:
            vs = None
        elif isinstance(validation, ValidationSet):
            vs = validation
        else:
            vs = ValidationSet(check_prompts(validation, what="validation"))
        if validation_embeddings is not None:
            xv = check_embeddings(validation_embeddings, what="validation_embeddings")
            if xv.shape[0] == 0:
                msg = "validation_embeddings has no rows; the validation set needs at least one prompt."
                raise InvalidInputError(msg)
            if vs is not None and xv.shape[0] != len(vs):
                msg = f"validation_embeddings has {xv.shape[0]} rows for {len(vs)} validation prompts."
                raise InvalidInputError(msg)
        else:
            assert vs is not None
            xv = self._embed(vs.prompts)
        return vs, xv

    def _training_inputs(
        self, prompts: Sequence[str] | None, embeddings: Any, validation: Any, validation_embeddings: Any
    ) -> tuple[np.ndarray, ValidationSet | None, np.ndarray]:
        """Training embeddings, the validation set and its embeddings (embedding what is not given)."""
        if embeddings is not None:
            x = check_embeddings(embeddings, what="embeddings")
            if x.shape[0] == 0:
                msg = "embeddings has no rows; fit needs at least one training prompt."
                raise InvalidInputError(msg)
        elif prompts is not None:
            x = self._embed(check_prompts(prompts))
        else:
            msg = "fit needs the training prompts (or embeddings=)."
            raise InvalidInputError(msg)
        vs, xv = self._validation_inputs(validation, validation_embeddings)
        if xv.shape[1] != x.shape[1]:
            msg = f"validation embeddings have dimension {xv.shape[1]} but training embeddings {x.shape[1]}."
            raise InvalidInputError(msg)
        return x, vs, xv

    def _finish_fit(self, vs: ValidationSet | None, xv: np.ndarray, labels: np.ndarray, n_parts: int) -> None:
        """Record the validation partition and re-derive every registered model's psi."""
        self._init_state()
        self.validation_set_ = vs
        self.validation_fingerprint_ = vs.fingerprint if vs is not None else _array_fingerprint(xv)
        self.n_validation_ = int(xv.shape[0])
        self.n_parts_ = int(n_parts)
        self.validation_labels_ = np.asarray(labels, dtype=np.int64)
        # The name needs no model load; the dimension is read off the data.
        self.embedder_identity_ = EmbedderIdentity(name=self.embedder_.name, dim=int(xv.shape[1]))
        with self._pool_lock:
            self._pool = _Pool()

    # -- profiles ------------------------------------------------------------------------------
    def _prior_strength(self) -> float:
        return float(getattr(self, "prior_strength", 0.0))

    def build_profile(
        self,
        name: str,
        correctness: Any,
        *,
        cost: float | Sequence[float] | np.ndarray,
        stats: ProfilingStats | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ModelProfile:
        """A :class:`ModelProfile` from a model's quality on the validation prompts (not registered).

        Parameters
        ----------
        correctness : array-like of shape (n_val,)
            Quality in [0, 1] per validation prompt, in the validation set's order; NaN = unknown.
        cost : float or array-like of shape (n_val,)
            Cost per query, or measured per-query costs (per-cluster expected cost is derived).
        """
        self._check_fitted()
        check_model_name(name)
        scores = check_scores(correctness, n=self.n_validation_, what=f"correctness of {name!r}")
        if isinstance(cost, (list, tuple, np.ndarray)):
            costs = check_costs(cost, n=self.n_validation_, what=f"cost of {name!r}")
        else:
            costs = None
            flat = check_cost(cost, what=f"cost of {name!r}")
        a = self._prior_strength()
        err, counts, gerr = cluster_statistics(1.0 - scores, self.validation_labels_, self.n_parts_, a)
        if costs is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                ccost, _, flat = cluster_statistics(costs, self.validation_labels_, self.n_parts_, a)
            if not (np.isfinite(ccost).all() and np.isfinite(flat)):
                msg = f"cost of {name!r}: per-prompt costs are too large (their means overflow); give costs in a sane unit (e.g. USD)."
                raise InvalidInputError(msg)
        else:
            ccost = np.full(self.n_parts_, flat)
        return ModelProfile(
            name=name,
            validation_fingerprint=self.validation_fingerprint_,
            scores=scores,
            costs=costs,
            cost_per_query=float(flat),
            cluster_error=err,
            cluster_cost=ccost,
            cluster_count=counts.tolist(),
            global_error=gerr,
            prior_strength=a,
            stats=stats or ProfilingStats(),
            metadata=dict(metadata or {}),
        )

    def add_model(
        self,
        name: str,
        correctness: Any = None,
        *,
        cost: float | Sequence[float] | np.ndarray | None = None,
        replace: bool = False,
        model: Any = None,
        **profile_kwargs: Any,
    ) -> ModelProfile:
        """Register a model from its validation labels, or profile it by calling it.

        With ``correctness`` (one score per validation prompt) the profile is computed directly. With
        ``model=`` (an async or sync callable ``prompt -> text`` or ``(text, usage)``), the model is
        run over the validation set by :func:`unirouter.profiling.profiler.profile_model`; ``profile_kwargs``
        (``scorer``, ``validation_set``, ``cache``, ``max_concurrency``, ...) go to the profiler.

        Nothing is refitted. Raises :class:`DuplicateModelError` if the name is taken and
        ``replace`` is false.
        """
        self._check_fitted()
        check_model_name(name)
        if not replace and name in self._pool.profiles:
            msg = f"a model named {name!r} is already registered; pass replace=True to replace its profile."
            raise DuplicateModelError(msg, model=name)
        if model is not None:
            if correctness is not None:
                msg = "give either correctness= (known labels) or model= (profile by calling it), not both."
                raise InvalidInputError(msg)
            from unirouter.profiling.profiler import profile_model

            profile = profile_model(self, name, model, cost=cost, **profile_kwargs)
        else:
            if profile_kwargs:
                msg = f"unexpected arguments without model=: {sorted(profile_kwargs)}."
                raise InvalidInputError(msg)
            if correctness is None or cost is None:
                msg = f"add_model({name!r}) needs correctness= (one score per validation prompt) and cost=, or model= to profile."
                raise InvalidInputError(msg)
            profile = self.build_profile(name, correctness, cost=cost)
            return self._register(profile, replace=replace)
        return self.add_profile(profile, replace=replace)

    async def aadd_model(
        self, name: str, *, model: Any, cost: Any = None, replace: bool = False, **profile_kwargs: Any
    ) -> ModelProfile:
        """Async twin of :meth:`add_model` with ``model=``: profiles without blocking the event loop."""
        self._check_fitted()
        check_model_name(name)
        if not replace and name in self._pool.profiles:
            msg = f"a model named {name!r} is already registered; pass replace=True to replace its profile."
            raise DuplicateModelError(msg, model=name)
        from unirouter.profiling.profiler import aprofile_model

        profile = await aprofile_model(self, name, model, cost=cost, **profile_kwargs)
        return self.add_profile(profile, replace=replace)

    def add_profile(self, profile: ModelProfile, *, replace: bool = False) -> ModelProfile:
        """Register an existing profile (e.g. loaded from disk).

        The profile must come from this router's validation set; its cluster statistics are
        recomputed for this router's clusters from the stored per-prompt scores.
        """
        self._check_fitted()
        if profile.validation_fingerprint != self.validation_fingerprint_:
            msg = (
                f"profile {profile.name!r} was measured on validation set {profile.validation_fingerprint!r}, "
                f"but this router uses {self.validation_fingerprint_!r}; re-profile the model on this router's validation set."
            )
            raise ProfileMismatchError(msg)
        if profile.scores.shape[0] != self.n_validation_:
            msg = f"profile {profile.name!r} has {profile.scores.shape[0]} scores for {self.n_validation_} validation prompts."
            raise ProfileMismatchError(msg)
        # Always recompute: a profile with the same K and prior may still come from another router
        # (other seed or training prompts) over the same validation set, whose clusters differ.
        rebuilt = self.build_profile(
            profile.name,
            profile.scores,
            cost=profile.costs if profile.costs is not None else profile.cost_per_query,
            stats=profile.stats,
            metadata=profile.metadata,
        )
        profile = rebuilt.model_copy(update={"created_at": profile.created_at})
        return self._register(profile, replace=replace)

    def _register(self, profile: ModelProfile, *, replace: bool) -> ModelProfile:
        """Swap in a new pool snapshot holding ``profile`` (built by this router's ``build_profile``)."""
        with self._pool_lock:
            pool = self._pool
            if not replace and profile.name in pool.profiles:
                msg = f"a model named {profile.name!r} is already registered; pass replace=True to replace its profile."
                raise DuplicateModelError(msg, model=profile.name)
            self._pool = _pool_with(pool, profile)
        return profile

    def remove_model(self, name: str) -> ModelProfile:
        """Unregister a model and return its profile. Nothing is refitted."""
        self._check_fitted()
        with self._pool_lock:
            pool = self._pool
            if name not in pool.profiles:
                msg = f"cannot remove {name!r}: not registered. Registered: {list(pool.names)}."
                raise UnknownModelError(msg, model=name)
            removed = pool.profiles[name]
            self._pool = _pool_without(pool, name)
        return removed

    @property
    def models_(self) -> list[str]:
        """Names of the registered models, in registration order."""
        self._check_fitted()
        return list(self._pool.names)

    @property
    def profiles_(self) -> dict[str, ModelProfile]:
        """Registered profiles by name (a copy)."""
        self._check_fitted()
        return dict(self._pool.profiles)

    def get_profile(self, name: str) -> ModelProfile:
        self._check_fitted()
        pool = self._pool
        if name not in pool.profiles:
            msg = f"model {name!r} is not registered; registered: {list(pool.names)}."
            raise UnknownModelError(msg, model=name)
        return pool.profiles[name]

    # -- prediction ----------------------------------------------------------------------------
    def _weights(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _gamma_cost(
        self, x: np.ndarray, psi: np.ndarray, cost: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(gamma (n, M), expected cost (n, M), weights (n, P) or None) for models with ``psi``/``cost``."""
        w = self._weights(x)
        return w @ psi.T, w @ cost.T, (w if self._has_clusters else None)

    def _columns(
        self, pool: _Pool, models: Iterable[str] | None, exclude: Iterable[str] | None, handle_unknown: str = "error"
    ) -> np.ndarray:
        """Columns of ``pool`` to decide among, all read off the one snapshot ``pool``.

        Excluding a name that is not registered is not an error (the model may have just been
        removed: it is excluded either way). Unknown names in ``models`` raise unless
        ``handle_unknown="ignore"``.
        """
        if handle_unknown not in ("error", "ignore"):
            msg = f"handle_unknown must be 'error' or 'ignore'. Got {handle_unknown!r}."
            raise InvalidInputError(msg)
        models = _names_or_none(models, "models")
        exclude = _names_or_none(exclude, "exclude")
        if models is None:
            cols = np.arange(len(pool.names))
        elif handle_unknown == "ignore":
            pos = {n: i for i, n in enumerate(pool.names)}
            cols = np.asarray([pos[n] for n in models if n in pos], dtype=np.int64)
        else:
            cols = pool.index(models)
        if exclude is not None:
            ex = set(exclude)
            cols = np.asarray([c for c in cols if pool.names[c] not in ex], dtype=np.int64)
        if cols.size == 0:
            if not pool.names:
                msg = "no models are registered with this router; add one with add_model(...)."
            else:
                msg = "no candidate model is left after applying models=/exclude=."
            raise UnknownModelError(msg)
        return cols

    def _prepare_x(self, prompts: Any, embeddings: Any, *, single: bool) -> np.ndarray:
        dim = self.embedder_identity_.dim if getattr(self, "embedder_identity_", None) else None
        if embeddings is not None:
            return check_embeddings(embeddings, dim=dim)
        if single:
            return self._embed([check_prompt(prompts)])
        return self._embed(check_prompts(prompts))

    def predict(
        self,
        prompts: Sequence[str] | None = None,
        *,
        embeddings: Any = None,
        models: Iterable[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Predicted error and expected cost matrices ``(n, M)`` and the model names (columns)."""
        self._check_fitted()
        x = self._prepare_x(prompts, embeddings, single=False)
        pool = self._pool
        cols = self._columns(pool, models, None)
        gamma, cost, _ = self._gamma_cost(x, pool.psi[cols], pool.cost[cols])
        return gamma, cost, [pool.names[i] for i in cols]

    def _check_choose_input(self, embeddings: Any, cost_weight: Any) -> tuple[np.ndarray, float]:
        dim = self.embedder_identity_.dim if getattr(self, "embedder_identity_", None) else None
        return check_embeddings(embeddings, dim=dim), check_cost_weight(cost_weight)

    def choose(self, embeddings: np.ndarray, cost_weight: float = 0.0, *, models: Iterable[str] | None = None) -> np.ndarray:
        """Fast path: index (into ``models`` or the pool) of the chosen model per embedding row.

        Thread-safe; inputs are validated (typed errors) like :meth:`route`'s.
        """
        self._check_fitted()
        embeddings, cost_weight = self._check_choose_input(embeddings, cost_weight)
        pool = self._pool
        if models is None:
            self._columns(pool, None, None)  # raises UnknownModelError when no model is registered
            gamma, cost, _ = self._gamma_cost(embeddings, pool.psi, pool.cost)
        else:
            cols = self._columns(pool, models, None)
            gamma, cost, _ = self._gamma_cost(embeddings, pool.psi[cols], pool.cost[cols])
        return np.argmin(_tie_broken(gamma, cost, float(cost_weight), pool.tie_scale), axis=1)

    def route(
        self,
        prompt: str | None = None,
        *,
        cost_weight: float | None = None,
        models: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        embedding: Any = None,
        handle_unknown: str = "error",
    ) -> RoutingDecision:
        """Choose a model for one prompt.

        Parameters
        ----------
        prompt : str
        cost_weight : float >= 0, optional
            lambda; defaults to the router's ``cost_weight``. 0 = best predicted quality.
        models : list of str, optional
            Only consider these models.
        exclude : list of str, optional
            Never choose these models (names that are not registered are simply not candidates).
        embedding : array (dim,), optional
            A precomputed embedding instead of ``prompt``.
        handle_unknown : {"error", "ignore"}
            What to do with names in ``models`` that are not registered: raise
            :class:`UnknownModelError`, or leave them out (for callers whose list may be a moment old,
            e.g. under concurrent ``remove_model``).

        The decision is made on one snapshot of the pool: a model added or removed by another thread
        meanwhile is either wholly in it or wholly out.
        """
        self._check_fitted()
        x = self._prepare_x(prompt, embedding, single=True)
        return self._decide(x, cost_weight, models, exclude, handle_unknown)[0]

    def route_batch(
        self,
        prompts: Sequence[str] | None = None,
        *,
        cost_weight: float | None = None,
        models: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        embeddings: Any = None,
        handle_unknown: str = "error",
    ) -> list[RoutingDecision]:
        """:meth:`route` for many prompts: one embedding call, one matrix product."""
        self._check_fitted()
        x = self._prepare_x(prompts, embeddings, single=False)
        return self._decide(x, cost_weight, models, exclude, handle_unknown)

    def _decide(
        self, x: np.ndarray, cost_weight: float | None, models: Any, exclude: Any, handle_unknown: str = "error"
    ) -> list[RoutingDecision]:
        lam = check_cost_weight(self._default_cost_weight() if cost_weight is None else cost_weight)
        pool = self._pool  # one snapshot for the whole decision
        if models is None and exclude is None:  # the common case: no copies of the pool arrays
            self._columns(pool, None, None, handle_unknown)  # raises UnknownModelError when no model is registered
            names, psi, cost_m = pool.names, pool.psi, pool.cost
        else:
            cols = self._columns(pool, models, exclude, handle_unknown)
            names = tuple(pool.names[i] for i in cols)
            psi, cost_m = pool.psi[cols], pool.cost[cols]
        gamma, cost, w = self._gamma_cost(x, psi, cost_m)
        ranking = _tie_broken(gamma, cost, lam, pool.tie_scale)
        best = np.argmin(ranking, axis=1)
        return [
            RoutingDecision(
                model=names[best[i]],
                candidates=names,
                predicted_error=gamma[i],
                expected_cost=cost[i],
                cost_weight=lam,
                cluster_weights=None if w is None else w[i],
                _ranking=ranking[i],
            )
            for i in range(x.shape[0])
        ]

    def _default_cost_weight(self) -> float:
        # Checked here too: set_params() after fit may have stored anything.
        cw = getattr(self, "cost_weight", None)
        return 0.0 if cw is None else check_cost_weight(cw)

    # -- calibration and persistence ----------------------------------------------------------
    def calibrate(self, prompts: Sequence[str] | None = None, *, embeddings: Any = None, **target: Any) -> float:
        """Set and return ``cost_weight`` for a target; see :func:`unirouter.calibrate_cost_weight`."""
        from unirouter.routers.calibration import calibrate_cost_weight

        lam = calibrate_cost_weight(self, prompts, embeddings=embeddings, **target)
        self.cost_weight = lam
        return lam

    def _state_arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - overridden
        return {}

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:  # pragma: no cover - overridden
        pass

    def save(self, path: Any, *, overwrite: bool = False) -> None:
        """Save to a directory (JSON + .npy, never pickle); atomic. See :mod:`unirouter.persistence`."""
        from unirouter.persistence import save_router

        save_router(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: Any, *, embedder: Any = None) -> BaseRouter:
        """Load a router saved with :meth:`save`; refuses another embedder than the one it was fitted with."""
        from unirouter.persistence import load_router

        router = load_router(path, embedder=embedder)
        if not isinstance(router, cls):
            msg = f"{path} holds a {type(router).__name__}, not a {cls.__name__}."
            raise InvalidInputError(msg)
        return router


def _names_or_none(names: Any, what: str) -> list[str] | None:
    """``models=`` / ``exclude=``: None, one name, or an iterable of names (typed error otherwise)."""
    if names is None:
        return None
    if isinstance(names, str):
        return [names]
    if not isinstance(names, Iterable):
        msg = f"{what} must be a model name or a list of model names. Got {type(names).__name__}: {names!r:.60}."
        raise InvalidInputError(msg)
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            msg = f"{what} must hold model names (strings). Got {type(n).__name__}: {n!r:.60}."
            raise InvalidInputError(msg)
    return out


def _pool_with(pool: _Pool, profile: ModelProfile) -> _Pool:
    """A new snapshot with ``profile`` added (appended) or replaced (same row)."""
    profiles = dict(pool.profiles)
    profiles[profile.name] = profile
    psi_row, cost_row = profile.cluster_error[None, :], profile.cluster_cost[None, :]
    if profile.name in pool.profiles:
        i = pool.names.index(profile.name)
        psi, cost = pool.psi.copy(), pool.cost.copy()
        psi[i], cost[i] = psi_row[0], cost_row[0]
        return _Pool(names=pool.names, psi=psi, cost=cost, profiles=profiles)
    if not pool.names:
        return _Pool(names=(profile.name,), psi=psi_row.copy(), cost=cost_row.copy(), profiles=profiles)
    return _Pool(
        names=(*pool.names, profile.name),
        psi=np.concatenate([pool.psi, psi_row]),
        cost=np.concatenate([pool.cost, cost_row]),
        profiles=profiles,
    )


def _pool_without(pool: _Pool, name: str) -> _Pool:
    """A new snapshot without ``name``."""
    i = pool.names.index(name)
    profiles = {n: p for n, p in pool.profiles.items() if n != name}
    if not profiles:
        return _Pool()
    return _Pool(
        names=pool.names[:i] + pool.names[i + 1 :],
        psi=np.delete(pool.psi, i, axis=0),
        cost=np.delete(pool.cost, i, axis=0),
        profiles=profiles,
    )


def _tie_broken(gamma: np.ndarray, cost: np.ndarray, lam: float, scale: float) -> np.ndarray:
    """Scores with a negligible cost term added, so exact ties go to the cheaper model.

    ``scale`` is the pool's :attr:`_Pool.tie_scale`, so every path (route, route_batch, choose)
    breaks ties identically.
    """
    if scale > 0:
        return gamma + (lam + 1e-9 / scale) * cost
    return gamma + lam * cost


def _argmin_rows(gamma: np.ndarray, cost: np.ndarray, lam: float, scale: float | None = None) -> np.ndarray:
    """Chosen column per row (ties to the cheaper model; scale defaults to the largest cost given)."""
    if scale is None:
        scale = float(cost.max()) if cost.size else 0.0
    return np.argmin(_tie_broken(gamma, cost, lam, scale), axis=1)


def _array_fingerprint(x: np.ndarray) -> str:
    import hashlib

    return "emb:" + hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()[:16]
