"""The method registry of the evaluation protocols and the built-in methods.

A *method* is a factory ``(data: TrialData, **params) -> (gamma, cost)`` over one trial's data (see
:mod:`unirouter.evaluation.protocols` for the protocol and :func:`register_method` for adding one). Built in:
ZeroRouter (``zero``, ``zero_val``), K-NN, UniRoute K-Means and LearnedMap, DifficultyRouter, the
oracle and clairvoyant K-NN (references), and the best single model (a point).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unirouter.exceptions import InvalidInputError, UniRouterWarning

__all__ = [
    "DEFAULT_METHODS",
    "KNN_GRID",
    "K_GRID",
    "METHODS",
    "ROUTER_METHODS",
    "MethodSpec",
    "TrialData",
    "register_method",
    "unregister_method",
]

DEFAULT_METHODS = ("zero", "knn", "kmeans", "learned", "difficulty", "oracle", "clairvoyant_knn", "best_single")
ROUTER_METHODS = ("kmeans", "learned")  # the UniRoute routers compared pairwise with knn
K_GRID = (5, 10, 20, 40, 80)
KNN_GRID = (5, 10, 25, 50, 100)


# -- per-trial data ---------------------------------------------------------------------------------
@dataclass
class TrialData:
    """What a method sees in one trial (or in the inner selection run of a trial).

    Attributes
    ----------
    x_train, x_val, x_test : ndarray (n_tr, D), (n_val, D), (n_test, D)
        Unit-norm prompt embeddings of S_tr, S_val, S_test.
    train_models, test_models : list of str
        The training pool and the test pool (the models to route among).
    y_train : ndarray (n_tr, M_train)
        Training-pool quality on S_tr (NaN = missing).
    y_train_val : ndarray (n_val, M_train)
        Training-pool quality on S_val.
    cost_train_val : ndarray (M_train,)
        Training-pool mean cost per query on S_val.
    y_val : ndarray (n_val, M_test)
        Test-pool quality on S_val: all a method may know about the test pool's quality.
    cost_val : ndarray (M_test,)
        Test-pool mean cost per query on S_val (the cost used in decisions).
    seed : int
        The trial's seed (use it as ``random_state``).
    cache : dict
        Shared by every method of the trial and by its inner selection run.
    clairvoyant_train : ndarray (n_tr, M_test)
        Test-pool quality on S_tr. Reference methods only (clairvoyant K-NN).
    clairvoyant_test, clairvoyant_test_cost : ndarray (n_test, M_test)
        Test-pool quality and realised cost on S_test. Reference methods only (oracle, zero).
    """

    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    train_models: list[str]
    test_models: list[str]
    y_train: np.ndarray
    y_train_val: np.ndarray
    cost_train_val: np.ndarray
    y_val: np.ndarray
    cost_val: np.ndarray
    seed: int
    cache: dict[str, Any] = field(default_factory=dict)
    clairvoyant_train: np.ndarray | None = None
    clairvoyant_test: np.ndarray | None = None
    clairvoyant_test_cost: np.ndarray | None = None


Factory = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its factory, its candidate parameters and a display label."""

    name: str
    factory: Factory
    grid: tuple[dict[str, Any], ...]
    label: str
    kind: str = "curve"  # "curve" or "point" (best_single)


METHODS: dict[str, MethodSpec] = {}


def _expand_grid(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None) -> tuple[dict[str, Any], ...]:
    if grid is None:
        return ({},)
    if isinstance(grid, Mapping):
        keys = list(grid)
        values = [list(grid[k]) if isinstance(grid[k], (list, tuple, np.ndarray)) else [grid[k]] for k in keys]
        return tuple(dict(zip(keys, combo)) for combo in itertools.product(*values)) or ({},)
    out = tuple(dict(g) for g in grid)
    return out or ({},)


def register_method(
    name: str,
    factory: Factory,
    *,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None = None,
    label: str | None = None,
    replace: bool = False,
) -> MethodSpec:
    """Make a routing method available to :func:`run_protocol` and ``unirouter evaluate``.

    Parameters
    ----------
    name : str
        The method key (used in ``methods=`` and in the JSON output).
    factory : callable
        ``factory(data: TrialData, **params) -> (gamma (n_test, M_test), cost (n_test, M_test) or (M_test,))``.
    grid : dict of lists or list of dicts, optional
        Candidate parameters; with more than one candidate the protocol picks one per trial on the
        training pool (inner split). ``{"n_clusters": [10, 20]}`` or ``[{"a": 1}, {"a": 2}]``.
    label : str, optional
        Display name in tables and plots.
    replace : bool, default=False
        Overwrite an existing method of the same name.
    """
    if not isinstance(name, str) or not name:
        msg = f"method name must be a non-empty string. Got {name!r}."
        raise InvalidInputError(msg)
    if not callable(factory):
        msg = f"factory for method {name!r} must be callable. Got {type(factory).__name__}."
        raise InvalidInputError(msg)
    if name in METHODS and not replace:
        msg = f"a method named {name!r} is already registered; pass replace=True to replace it."
        raise InvalidInputError(msg)
    spec = MethodSpec(name=name, factory=factory, grid=_expand_grid(grid), label=label or name)
    METHODS[name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a registered method."""
    if name not in METHODS:
        msg = f"no method named {name!r} is registered; known: {sorted(METHODS)}."
        raise InvalidInputError(msg)
    del METHODS[name]


# -- built-in methods ---------------------------------------------------------------------------------
def _add_pool(router: Any, data: TrialData) -> None:
    for j, name in enumerate(data.test_models):
        router.add_model(name, correctness=data.y_val[:, j], cost=float(data.cost_val[j]))


def _predict(router: Any, data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    gamma, cost, _ = router.predict(embeddings=data.x_test)
    return gamma, cost


def _zero(data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        err = 1.0 - np.nanmean(data.clairvoyant_test, axis=0)
        cost = np.nanmean(data.clairvoyant_test_cost, axis=0)
    n = data.x_test.shape[0]
    return np.broadcast_to(err, (n, err.size)), np.broadcast_to(cost, (n, cost.size))


def _zero_val(data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    from unirouter.routers.baselines import ZeroRouter

    router = ZeroRouter().fit(validation_embeddings=data.x_val)
    _add_pool(router, data)
    return _predict(router, data)


def _knn(data: TrialData, n_neighbors: int = 25) -> tuple[np.ndarray, np.ndarray]:
    from unirouter.routers.baselines import KNNRouter

    router = KNNRouter(n_neighbors=int(n_neighbors)).fit(validation_embeddings=data.x_val)
    _add_pool(router, data)
    return _predict(router, data)


def _clairvoyant_knn(data: TrialData, n_neighbors: int = 25) -> tuple[np.ndarray, np.ndarray]:
    from unirouter.routers.baselines import KNNRouter

    router = KNNRouter(n_neighbors=int(n_neighbors)).fit(validation_embeddings=data.x_train)
    for j, name in enumerate(data.test_models):
        router.add_model(name, correctness=data.clairvoyant_train[:, j], cost=float(data.cost_val[j]))
    return _predict(router, data)


class _KMeansMemo:
    """Within one trial, K-means on S_tr is the same for every K-means fit with the same K and seed
    (inner selection, final fit, learned-map initialisation): fit it once. Installed around a trial
    by patching ``unirouter.routers.uniroute.fit_kmeans`` (the function the router calls); evaluation-only."""

    def __init__(self) -> None:
        self.store: dict[tuple[Any, ...], np.ndarray] = {}
        self.keep: list[np.ndarray] = []
        self._orig: Any = None

    def __enter__(self) -> _KMeansMemo:  # noqa: PYI034
        from unirouter.routers import uniroute as router_module

        self._orig = getattr(router_module, "fit_kmeans", None)
        if self._orig is not None:
            orig = self._orig

            def fit_kmeans(x: np.ndarray, n_clusters: int, *, random_state: Any = None, n_init: int = 3) -> np.ndarray:
                key = (x.__array_interface__["data"][0], x.shape, int(n_clusters), random_state, int(n_init))
                if key not in self.store:
                    self.store[key] = orig(x, n_clusters, random_state=random_state, n_init=n_init)
                    self.keep.append(x)  # keeps the buffer alive, so its address stays unique
                return self.store[key].copy()

            router_module.fit_kmeans = fit_kmeans
        return self

    def __exit__(self, *exc: object) -> None:
        from unirouter.routers import uniroute as router_module

        if self._orig is not None:
            router_module.fit_kmeans = self._orig
        self.store.clear()
        self.keep.clear()


def _uniroute(data: TrialData, *, method: str, n_clusters: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    from unirouter.routers.uniroute import UniRouter

    router = UniRouter(int(n_clusters), method=method, random_state=data.seed, **params)
    kwargs: dict[str, Any] = {}
    if method == "learned":
        kwargs = {"train_correctness": data.y_train, "validation_correctness": data.y_train_val}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit(embeddings=data.x_train, validation_embeddings=data.x_val, **kwargs)
    _add_pool(router, data)
    return _predict(router, data)


def _kmeans(data: TrialData, n_clusters: int = 20, prior_strength: float = 1.0, n_init: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return _uniroute(data, method="kmeans", n_clusters=n_clusters, prior_strength=prior_strength, n_init=n_init)


def _learned(
    data: TrialData, n_clusters: int = 20, prior_strength: float = 1.0, n_init: int = 1, max_epochs: int = 60, patience: int = 8, **params: Any
) -> tuple[np.ndarray, np.ndarray]:
    return _uniroute(
        data, method="learned", n_clusters=n_clusters, prior_strength=prior_strength, n_init=n_init, max_epochs=max_epochs, patience=patience, **params
    )


def _difficulty(data: TrialData, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """DifficultyRouter (issue 8): shared prompt factors from the training pool's labels."""
    from unirouter.routers.difficulty import DifficultyRouter

    router = DifficultyRouter(random_state=data.seed, **params).fit(
        embeddings=data.x_train,
        validation_embeddings=data.x_val,
        train_correctness=data.y_train,
        validation_correctness=data.y_train_val,
    )
    _add_pool(router, data)
    return _predict(router, data)


def _oracle(data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    q = data.clairvoyant_test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill_q = np.nanmean(q, axis=0)
        fill_c = np.nanmean(data.clairvoyant_test_cost, axis=0)
    err = 1.0 - np.where(np.isnan(q), fill_q, q)
    cost = np.where(np.isnan(data.clairvoyant_test_cost), fill_c, data.clairvoyant_test_cost)
    return err, cost


def _register_builtins() -> None:
    register_method("zero", _zero, label="ZeroRouter", replace=True)
    register_method("zero_val", _zero_val, label="ZeroRouter (S_val)", replace=True)
    register_method("knn", _knn, grid={"n_neighbors": KNN_GRID}, label="K-NN", replace=True)
    register_method("kmeans", _kmeans, grid={"n_clusters": K_GRID}, label="UniRoute K-Means", replace=True)
    register_method("learned", _learned, grid={"n_clusters": K_GRID}, label="UniRoute LearnedMap", replace=True)
    register_method("difficulty", _difficulty, label="DifficultyRouter", replace=True)
    register_method("oracle", _oracle, label="Oracle", replace=True)
    register_method("clairvoyant_knn", _clairvoyant_knn, grid={"n_neighbors": KNN_GRID}, label="Clairvoyant K-NN", replace=True)
    METHODS["best_single"] = MethodSpec("best_single", _oracle, ({},), "Best single model", kind="point")


_register_builtins()
