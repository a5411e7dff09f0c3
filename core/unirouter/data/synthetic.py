"""Seeded synthetic routing data with graded quality, for stress runs of the routers (issue 15).

The shared datasets have 0/1 labels and model pools whose strength is spread evenly, so a random
split of the models puts new models of every strength in the test pool. Held-out data the routers
met later had graded quality in [0, 1], many models, a weak known pool and much stronger new models;
DifficultyRouter diverged there. :func:`make_graded_routing` draws data of that kind from an
item-response model on real prompt embeddings, so the prompt-dependent part is predictable from the
embedding exactly as the routers assume:

    eta_ih = a_h + l_h . t(x_i),      quality_ih ~ Beta(kappa * sigmoid(eta_ih), kappa * (1 - sigmoid(eta_ih)))

* ``t(x) = standardise(x G)`` with a random Gaussian ``G (D, n_traits)``: trait 0 is a shared
  difficulty (every model's loading on it is negative), the others are model-specific strengths;
* ``a_h`` is solved so that model ``h``'s expected mean quality equals its drawn level: the weak
  models around ``weak_level``, the ``strong_fraction`` strongest around ``strong_level``;
* per-query cost grows with a model's level (stronger models cost more) times a per-prompt factor.

:func:`write_routing_dataset` writes the on-disk format :func:`unirouter.data.datasets.load_dataset`
reads (``dataset.json`` + gzip CSV matrices + prompts JSONL), so ``unirouter evaluate --data DIR``
runs on it. ``benchmarks/make_synthetic.py`` builds one from real prompts.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unirouter._validation import as_rng
from unirouter.data.datasets import MANIFEST_FORMAT
from unirouter.exceptions import InvalidInputError, PersistenceError

__all__ = ["SyntheticRouting", "make_graded_routing", "write_routing_dataset"]


@dataclass
class SyntheticRouting:
    """Drawn data: ``quality`` and ``cost`` (n, M), and the generating parameters per model."""

    quality: np.ndarray  # (n, M) in [0, 1], NaN = missing
    cost: np.ndarray  # (n, M) USD per query, > 0
    model_names: list[str]
    level: np.ndarray  # (M,) the drawn expected mean quality
    strong: np.ndarray  # (M,) bool: drawn from the strong group
    traits: np.ndarray  # (n, n_traits) t(x)
    loadings: np.ndarray  # (M, n_traits)
    intercept: np.ndarray  # (M,) a_h


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def make_graded_routing(
    embeddings: np.ndarray,
    n_models: int = 45,
    *,
    n_traits: int = 3,
    strong_fraction: float = 1 / 3,
    weak_level: float = 0.07,
    strong_level: float = 0.55,
    level_spread: float = 0.5,
    concentration: float = 4.0,
    missing_rate: float = 0.0,
    random_state: int | np.random.Generator | None = None,
) -> SyntheticRouting:
    """Draw graded quality and costs of ``n_models`` models on the prompts behind ``embeddings``.

    Parameters
    ----------
    embeddings : (n, D) prompt embeddings (unit rows, e.g. MiniLM).
    n_models : int, default=45
    n_traits : int, default=3
        Latent prompt traits (the first is shared difficulty).
    strong_fraction : float, default=1/3
        Share of models drawn around ``strong_level`` (the rest around ``weak_level``).
    weak_level, strong_level : float in (0, 1)
        Typical expected mean quality of the two groups.
    level_spread : float, default=0.5
        Standard deviation of a model's level on the logit scale around its group's level.
    concentration : float, default=4.0
        ``kappa`` of the Beta noise: lower = noisier graded scores.
    missing_rate : float, default=0.0
        Share of entries set to NaN (no result).
    random_state : int, Generator or None
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or not np.isfinite(x).all():
        msg = f"embeddings must be a finite (n >= 2, D) array. Got shape {x.shape}."
        raise InvalidInputError(msg)
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        msg = f"n_models must be an int >= 1. Got {n_models!r}."
        raise InvalidInputError(msg)
    if isinstance(n_traits, bool) or not isinstance(n_traits, int) or n_traits < 1:
        msg = f"n_traits must be an int >= 1. Got {n_traits!r}."
        raise InvalidInputError(msg)
    for name, v in (("weak_level", weak_level), ("strong_level", strong_level)):
        if not 0.0 < v < 1.0:
            msg = f"{name} must lie in (0, 1). Got {v!r}."
            raise InvalidInputError(msg)
    if not 0.0 <= strong_fraction <= 1.0 or not 0.0 <= missing_rate < 1.0:
        msg = f"strong_fraction must lie in [0, 1] and missing_rate in [0, 1). Got {strong_fraction!r}, {missing_rate!r}."
        raise InvalidInputError(msg)
    if not level_spread >= 0 or not concentration > 0:
        msg = f"level_spread must be >= 0 and concentration > 0. Got {level_spread!r}, {concentration!r}."
        raise InvalidInputError(msg)
    rng = as_rng(random_state)
    from scipy.optimize import brentq

    n = x.shape[0]
    g = rng.standard_normal((x.shape[1], n_traits))
    t = x @ g
    t = (t - t.mean(0)) / (t.std(0) + 1e-12)

    n_strong = int(round(strong_fraction * n_models))
    strong = np.zeros(n_models, dtype=bool)
    strong[rng.permutation(n_models)[:n_strong]] = True
    centre = np.where(strong, _logit(strong_level), _logit(weak_level))
    level = _sigmoid(centre + level_spread * rng.standard_normal(n_models))

    loadings = 0.5 * rng.standard_normal((n_models, n_traits))
    loadings[:, 0] = -np.abs(1.0 + 0.3 * rng.standard_normal(n_models))  # shared difficulty
    intercept = np.empty(n_models)
    for h in range(n_models):
        shift = t @ loadings[h]
        intercept[h] = brentq(lambda a: float(_sigmoid(a + shift).mean() - level[h]), -40.0, 40.0, xtol=1e-10)
    p = _sigmoid(intercept[None, :] + t @ loadings.T)
    p = np.clip(p, 1e-6, 1 - 1e-6)
    quality = np.round(rng.beta(concentration * p, concentration * (1.0 - p)), 3)

    rank = np.argsort(np.argsort(level)) / max(1, n_models - 1)
    price = 1e-4 * 10 ** (2.0 * rank + 0.3 * rng.standard_normal(n_models))
    per_prompt = np.exp(0.4 * rng.standard_normal(n))
    cost = price[None, :] * per_prompt[:, None] * np.exp(0.1 * rng.standard_normal((n, n_models)))
    if missing_rate > 0:
        quality[rng.random((n, n_models)) < missing_rate] = np.nan
    names = [f"synthetic-{'strong' if s else 'weak'}-{h:02d}" for h, s in enumerate(strong)]
    return SyntheticRouting(quality, cost, names, level, strong, t, loadings, intercept)


def _write_matrix(path: Path, ids: Sequence[str], names: Sequence[str], values: np.ndarray, digits: int) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *names])
        for i, row in zip(ids, values):
            w.writerow([i, *("" if np.isnan(v) else f"{v:.{digits}g}" for v in row)])


def write_routing_dataset(
    path: str | Path,
    *,
    name: str,
    ids: Sequence[str],
    texts: Sequence[str],
    quality: np.ndarray,
    cost: np.ndarray,
    model_names: Sequence[str],
    notes: str = "",
    overwrite: bool = False,
) -> Path:
    """Write a routing dataset folder in the format :func:`~unirouter.data.datasets.load_dataset` reads.

    Raises
    ------
    PersistenceError
        The folder exists and is not empty, and ``overwrite`` is False (nothing is written).
    InvalidInputError
        Shapes that do not match, duplicate ids, quality outside [0, 1] or negative costs.
    """
    root = Path(path)
    q, c = np.asarray(quality, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    n, m = len(ids), len(model_names)
    if len(texts) != n or q.shape != (n, m) or c.shape != (n, m):
        msg = f"ids/texts ({n}, {len(texts)}), quality {q.shape} and cost {c.shape} must agree with {m} model names."
        raise InvalidInputError(msg)
    if len(set(ids)) != n or len(set(model_names)) != m:
        msg = "ids and model names must be unique."
        raise InvalidInputError(msg)
    ok = ~np.isnan(q)
    if (q[ok] < 0).any() or (q[ok] > 1).any() or (c[~np.isnan(c)] < 0).any():
        msg = "quality must lie in [0, 1] and costs must be >= 0."
        raise InvalidInputError(msg)
    if root.exists() and any(root.iterdir()) and not overwrite:
        msg = f"{root} exists and is not empty; pass overwrite=True (--overwrite) to replace the dataset there."
        raise PersistenceError(msg, path=root)
    root.mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "prompts.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, t in zip(ids, texts):
            f.write(json.dumps({"id": str(i), "prompt": t}) + "\n")
    _write_matrix(root / "correctness.csv.gz", ids, model_names, q, 6)
    _write_matrix(root / "cost_usd.csv.gz", ids, model_names, c, 6)
    with open(root / "models.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "accuracy", "mean_cost_usd"])
        for j, mname in enumerate(model_names):
            w.writerow([mname, f"{np.nanmean(q[:, j]):.4f}", f"{np.nanmean(c[:, j]):.6g}"])
    manifest = {
        "name": name,
        "format": MANIFEST_FORMAT,
        "prompts": "prompts.jsonl.gz",
        "id_field": "id",
        "text_field": "prompt",
        "answer_field": None,
        "group_field": None,
        "correctness": "correctness.csv.gz",
        "cost": "cost_usd.csv.gz",
        "models": "models.csv",
        "responses": None,
        "answer_format": None,
        "notes": notes or "Synthetic graded routing data (unirouter.data.synthetic); quality in [0, 1], cost = USD per query.",
    }
    (root / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return root
