"""Cluster maps Phi(x): prompt embedding -> weights over K prompt clusters.

* :class:`KMeansMap` — one-hot of the nearest K-means centroid (UniRoute K-Means).
* :class:`LearnedMap` — ``softmax(theta x + b)`` trained with binary cross-entropy on the errors of the
  training LLMs (UniRoute LearnedMap), initialised from the K-means centroids so training starts at
  the cluster router, Adam with L2, early stopping on held-out training LLMs.

Validation-set profiles (Psi) always use the K-means hard assignment, for both maps (method.md 2.2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from unirouter._validation import as_rng
from unirouter.exceptions import ConvergenceWarning, InvalidInputError, UniRouterError

__all__ = ["KMeansMap", "LearnedMap", "fit_kmeans"]


def fit_kmeans(
    x: np.ndarray, n_clusters: int, *, random_state: int | np.random.Generator | None, n_init: int = 3
) -> np.ndarray:
    """K-means centroids (K, D), float32, with scikit-learn's KMeans (k-means++, seeded)."""
    from sklearn.cluster import KMeans

    if n_clusters > x.shape[0]:
        msg = f"n_clusters={n_clusters} is larger than the number of training prompts ({x.shape[0]}); use n_clusters <= {x.shape[0]}."
        raise InvalidInputError(msg)
    if isinstance(random_state, np.random.Generator):  # scikit-learn takes an int seed, not a Generator
        random_state = int(random_state.integers(2**31 - 1))
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state)
    km.fit(x.astype(np.float64))
    return km.cluster_centers_.astype(np.float32)


@dataclass
class KMeansMap:
    """Hard nearest-centroid assignment."""

    centroids: np.ndarray  # (K, D) float32

    def __post_init__(self) -> None:
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self._half_sq = 0.5 * np.einsum("kd,kd->k", self.centroids, self.centroids)

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each row of ``x`` (n,)."""
        # argmin ||x - c||^2 = argmax (x.c - ||c||^2 / 2)
        return np.argmax(x @ self.centroids.T - self._half_sq, axis=1)

    def weights(self, x: np.ndarray) -> np.ndarray:
        """One-hot weights (n, K)."""
        lab = self.assign(x)
        w = np.zeros((x.shape[0], self.n_clusters), dtype=np.float32)
        w[np.arange(x.shape[0]), lab] = 1.0
        return w


@dataclass
class LearnedMap:
    """Softmax cluster map ``Phi_k(x) = softmax_k(theta_k . x + b_k)``."""

    theta: np.ndarray  # (K, D) float32
    bias: np.ndarray  # (K,) float32

    def __post_init__(self) -> None:
        self.theta = np.ascontiguousarray(self.theta, dtype=np.float32)
        self.bias = np.ascontiguousarray(self.bias, dtype=np.float32)

    @property
    def n_clusters(self) -> int:
        return int(self.theta.shape[0])

    def weights(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.theta.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    @classmethod
    def from_centroids(cls, centroids: np.ndarray, temperature: float) -> LearnedMap:
        """The softmax that tends to the nearest-centroid map as ``temperature`` grows."""
        c = centroids.astype(np.float32)
        return cls(theta=temperature * c, bias=-0.5 * temperature * np.einsum("kd,kd->k", c, c))

    @classmethod
    def fit(cls, *args: Any, **kwargs: Any) -> tuple[LearnedMap, dict[str, float]]:
        """Train on one torch thread (see :meth:`_fit`): the problem is small, and torch's thread pool
        is up to ~80x slower on a loaded 2-core machine."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return cls._fit(*args, **kwargs)
        except UniRouterError:
            raise
        except Exception as e:  # torch's own errors (RuntimeError, ...) surface typed, chained
            msg = (
                f"training the learned cluster map failed in torch ({type(e).__name__}: {e}). Lower learning_rate "
                "or init_temperature, and check that the embeddings are finite and of moderate scale."
            )
            raise InvalidInputError(msg) from e
        finally:
            torch.set_num_threads(threads)

    @classmethod
    def _fit(
        cls,
        x: np.ndarray,
        errors: np.ndarray,
        psi: np.ndarray,
        centroids: np.ndarray,
        *,
        init_temperature: float = 20.0,
        learning_rate: float = 0.01,
        l2: float = 1e-4,
        max_epochs: int = 300,
        patience: int = 20,
        holdout_fraction: float = 0.2,
        batch_size: int = 1024,
        random_state: int | None = None,
    ) -> tuple[LearnedMap, dict[str, float]]:
        """Train theta, b on the training LLMs' errors.

        Parameters
        ----------
        x : (n, D) training prompt embeddings
        errors : (n, M) errors in [0, 1] of the training LLMs on those prompts, NaN = missing
        psi : (M, K) the same LLMs' per-cluster validation errors (as new LLMs will get them)
        centroids : (K, D) K-means centroids (initialisation)

        Returns the map and a small training report (epochs, best held-out loss). A non-finite loss or
        weight stops training with a :class:`~unirouter.exceptions.ConvergenceWarning`; the best
        finite map so far (at worst the K-means initialisation) is returned.
        """
        import torch

        n, m = errors.shape
        if m < 2:
            msg = "the learned cluster map needs the labels of at least 2 training LLMs (got {m})."
            raise InvalidInputError(msg.format(m=m))
        rng = as_rng(random_state)
        torch_gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        perm = rng.permutation(m)
        n_hold = max(1, int(round(holdout_fraction * m))) if m >= 3 else 0
        hold, train = perm[:n_hold], perm[n_hold:]

        init = cls.from_centroids(centroids, init_temperature)
        theta = torch.nn.Parameter(torch.from_numpy(init.theta.copy()))
        bias = torch.nn.Parameter(torch.from_numpy(init.bias.copy()))
        opt = torch.optim.Adam([theta, bias], lr=learning_rate)
        X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        E = torch.from_numpy(np.nan_to_num(errors, nan=0.0).astype(np.float32))
        W = torch.from_numpy((~np.isnan(errors)).astype(np.float32))
        P = torch.from_numpy(np.clip(psi, 1e-4, 1 - 1e-4).astype(np.float32))
        tr, ho = torch.from_numpy(train), torch.from_numpy(hold)

        def loss_on(idx_rows: torch.Tensor | None, cols: torch.Tensor) -> torch.Tensor:
            xr = X if idx_rows is None else X[idx_rows]
            phi = torch.softmax(xr @ theta.T + bias, dim=1)
            gamma = (phi @ P[cols].T).clamp(1e-6, 1 - 1e-6)
            e = E[:, cols] if idx_rows is None else E[idx_rows][:, cols]
            w = W[:, cols] if idx_rows is None else W[idx_rows][:, cols]
            bce = -(e * torch.log(gamma) + (1 - e) * torch.log(1 - gamma))
            return (bce * w).sum() / w.sum().clamp_min(1.0)

        best = (float("inf"), init.theta, init.bias, 0)
        bad_epochs = 0
        epoch = 0
        for epoch in range(1, max_epochs + 1):
            order = torch.randperm(n, generator=torch_gen)
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                opt.zero_grad()
                loss = loss_on(rows, tr) + l2 * (theta * theta).sum()
                loss.backward()
                opt.step()
            with torch.no_grad():
                monitor = loss_on(None, ho if n_hold else tr).item()
                finite = math.isfinite(monitor) and bool(torch.isfinite(theta).all() and torch.isfinite(bias).all())
            if not finite:  # diverged (e.g. a too large learning rate): keep the last finite best
                warnings.warn(
                    f"the learned cluster map's training diverged at epoch {epoch} (non-finite loss or weights); "
                    f"using the map of epoch {best[3]} (epoch 0 = the K-means initialisation). Lower learning_rate.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
                break
            if monitor < best[0] - 1e-6:
                best = (monitor, theta.detach().numpy().copy(), bias.detach().numpy().copy(), epoch)
                bad_epochs = 0
            else:
                bad_epochs += 1
                if bad_epochs >= patience:
                    break
        report = {"epochs": float(epoch), "best_epoch": float(best[3]), "best_holdout_bce": float(best[0])}
        return cls(theta=best[1], bias=best[2]), report
