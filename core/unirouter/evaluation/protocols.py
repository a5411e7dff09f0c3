"""Evaluation protocols (method.md section 3) and the pluggable method registry.

Protocols
---------
``unseen-models`` (the paper's): per trial ``t`` (random seed ``seed + t``)

1. the models are split into a training pool (``train_fraction``, default 2/3) and a test pool (the
   *unseen* models);
2. the prompts are split 60 / 10 / 30 into S_tr / S_val / S_test (with ``val_size=N``: S_test stays
   30 %, S_val has N prompts, S_tr the rest of the 60 % share, or less if the data run out);
3. every method is fitted on S_tr (embeddings; the training pool's labels if it wants them), learns
   the test-pool models only from their labels on S_val and their mean cost on S_val, and routes
   S_test among the test pool; its operating points use the realised per-query costs on S_test;
4. hyper-parameters (K, k, ...) are chosen on the training pool only: an inner split of the
   training-pool models into inner-train (2/3) and inner-test (1/3) runs the same protocol on the
   same prompt split (inner-test models profiled on S_val, scored on S_test with *their* labels,
   i.e. training-pool labels); the grid value with the best inner AUDC is used. Test-pool labels on
   S_tr / S_test are never read, except by the clairvoyant references (``oracle``,
   ``clairvoyant_knn``, ``zero``) which are upper bounds or curve-of-single-models by definition.

``fixed-pool``: the same, but the training pool and the test pool are all the models.

``strongest-unseen`` (issue 15): as ``unseen-models``, but the test pool is always the strongest
``1 - train_fraction`` share of the models (by mean quality over all prompts) and the training pool
the rest: new models are usually stronger than the ones a router was built with. Trials differ in
the prompt split; the inner selection split holds out the strongest third of the training pool the
same way.

Methods (keys of :data:`METHODS`)
---------------------------------
``zero``             ZeroRouter as in method.md 2.3: the upper hull of the single test-pool models'
                     realised (cost, quality) points on S_test.
``zero_val``         the realistic ZeroRouter (:class:`~unirouter.routers.baselines.ZeroRouter`): global
                     S_val error and S_val cost per model (extra key).
``knn``              :class:`~unirouter.routers.baselines.KNNRouter` over S_val, k chosen on the training pool.
``kmeans``           :class:`~unirouter.UniRouter` ``method="kmeans"``, K chosen on the training pool.
``learned``          :class:`~unirouter.UniRouter` ``method="learned"`` (trained on the training
                     pool's S_tr labels), K chosen on the training pool.
``oracle``           gamma = true error on S_test, decision cost = realised cost (upper bound).
``clairvoyant_knn``  K-NN whose neighbours are S_tr with the test pool's labels.
``best_single``      the most accurate test-pool model on S_val, as a point (quality, normalised cost).

Adding a method (the plug-in interface)
---------------------------------------
A method is a *factory* ``factory(data: TrialData, **params) -> (gamma, cost)`` returning, for the
test pool on S_test, the predicted error ``gamma (n_test, M_test)`` and the decision cost
``(n_test, M_test)`` or ``(M_test,)``. It may read every field of :class:`TrialData` except the
``clairvoyant_*`` ones (reserved for reference methods); ``data.cache`` is a dict shared by all
methods and the inner selection run of one trial (key your entries by your method name). Register it
in one line; ``grid`` lists candidate ``params`` (a dict of lists, expanded as a product, or a list
of dicts), chosen per trial by the inner split::

    from unirouter.evaluation import register_method
    register_method("mine", my_factory, grid={"n_clusters": [10, 20, 40]}, label="My router")

then ``run_protocol(..., methods=[..., "mine"])`` or ``unirouter evaluate --methods ... mine``
(the CLI sees methods registered in a module given with ``--plugin module``).
"""

from __future__ import annotations

import itertools
import math
import platform
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from unirouter.data.datasets import RoutingDataset, load_dataset
from unirouter.evaluation.metrics import (
    best_single_point,
    curve_metrics,
    deferral_curve,
    gap_closed,
    normalising_cost,
    operating_points,
)
from unirouter.exceptions import DatasetError, InvalidInputError
from unirouter.evaluation.methods import (  # noqa: F401  (K_GRID, _kmeans, ... are re-exported for callers)
    DEFAULT_METHODS,
    K_GRID,
    KNN_GRID,
    METHODS,
    ROUTER_METHODS,
    MethodSpec,
    TrialData,
    _KMeansMemo,
    _kmeans,
    _learned,
    register_method,
    unregister_method,
)

__all__ = ["METHODS", "MethodSpec", "PreparedData", "ProtocolResult", "TrialData", "prepare_data", "register_method", "run_protocol", "unregister_method"]

PROTOCOLS = ("unseen-models", "fixed-pool", "strongest-unseen")
# Normalised costs at which mean curves are evaluated: dense near 0, where routers differ most.
CURVE_GRID = np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), np.geomspace(1e-4, 1.0, 161)]))


# -- data -----------------------------------------------------------------------------------------------
@dataclass
class PreparedData:
    """A dataset reduced to its complete models and prompts, with embeddings."""

    name: str
    model_names: list[str]
    x: np.ndarray  # (n, D)
    quality: np.ndarray  # (n, M)
    cost: np.ndarray  # (n, M)
    path: str | None = None


def prepare_data(
    dataset: RoutingDataset | str | Path,
    *,
    embedder: Any = None,
    embeddings: np.ndarray | None = None,
    min_coverage: float = 0.99,
) -> PreparedData:
    """Load a dataset, keep the models observed on at least ``min_coverage`` of the prompts and the
    prompts complete over those models, and embed the prompts (once; cached by the embedder).

    Raises
    ------
    DatasetError
        No manifest, ids that do not match, no model with complete data, or no cost information.
    """
    ds = dataset if isinstance(dataset, RoutingDataset) else load_dataset(dataset, load_responses=False)
    models = ds.complete_models(min_coverage=min_coverage)
    if not models:
        msg = f"dataset {ds.name!r} has no model with results on at least {min_coverage:.0%} of its {len(ds)} prompts; nothing to evaluate."
        raise DatasetError(msg, path=ds.path)
    rows = ds.complete_rows(models)
    if rows.size == 0:
        msg = f"dataset {ds.name!r} has no prompt observed for all of its {len(models)} complete models."
        raise DatasetError(msg, path=ds.path)
    cols = ds.model_index(models)
    quality = ds.correctness[np.ix_(rows, cols)]
    if ds.cost is not None:
        cost = ds.cost[np.ix_(rows, cols)]
    else:
        flat = []
        for j in cols:
            row = ds.models[j] if ds.models else {}
            try:
                flat.append(float(row.get("mean_cost_usd")))
            except (TypeError, ValueError):
                msg = f"dataset {ds.name!r} has no cost matrix and no mean_cost_usd for model {ds.model_names[j]!r}."
                raise DatasetError(msg, path=ds.path) from None
        cost = np.broadcast_to(np.asarray(flat), quality.shape).copy()
    if embeddings is not None:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.shape[0] == len(ds):
            x = x[rows]
        if x.shape[0] != rows.size:
            msg = f"embeddings has {x.shape[0]} rows; dataset {ds.name!r} has {len(ds)} prompts ({rows.size} complete)."
            raise InvalidInputError(msg)
    else:
        if embedder is None:
            from unirouter.embedding.embedders import (
                SentenceTransformerEmbedder,
                default_cache_dir,
            )

            embedder = SentenceTransformerEmbedder(cache=default_cache_dir())
        x = np.asarray(embedder.embed([ds.texts[i] for i in rows]), dtype=np.float32)
    return PreparedData(name=ds.name, model_names=list(models), x=x, quality=quality, cost=cost, path=str(ds.path) if ds.path else None)


def _split_prompts(n: int, rng: np.random.Generator, val_size: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    if val_size is None:
        a, b = math.floor(0.6 * n + 1e-9), math.floor(0.7 * n + 1e-9)
        tr, va, te = perm[:a], perm[a:b], perm[b:]
    else:
        n_test = n - math.floor(0.7 * n + 1e-9)
        te, rest = perm[:n_test], perm[n_test:]
        if val_size >= rest.size:
            msg = f"val_size={val_size} leaves no training prompts: only {rest.size} prompts remain outside the 30% test split."
            raise InvalidInputError(msg)
        va = rest[:val_size]
        tr = rest[val_size : val_size + math.floor(0.6 * n + 1e-9)]
    if min(tr.size, va.size, te.size) == 0:
        msg = f"{n} prompts are too few to split 60/10/30."
        raise InvalidInputError(msg)
    return np.sort(tr), np.sort(va), np.sort(te)


def _make_trial(
    d: PreparedData, rows: tuple[np.ndarray, np.ndarray, np.ndarray], xs: tuple[np.ndarray, ...], train_cols: np.ndarray, test_cols: np.ndarray, seed: int, cache: dict
) -> TrialData:
    tr, va, te = rows
    q, c = d.quality, d.cost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cost_val = np.nanmean(c[np.ix_(va, test_cols)], axis=0)
        cost_train_val = np.nanmean(c[np.ix_(va, train_cols)], axis=0)
    return TrialData(
        x_train=xs[0],
        x_val=xs[1],
        x_test=xs[2],
        train_models=[d.model_names[j] for j in train_cols],
        test_models=[d.model_names[j] for j in test_cols],
        y_train=q[np.ix_(tr, train_cols)],
        y_train_val=q[np.ix_(va, train_cols)],
        cost_train_val=cost_train_val,
        y_val=q[np.ix_(va, test_cols)],
        cost_val=np.nan_to_num(cost_val, nan=0.0),
        seed=seed,
        cache=cache,
        clairvoyant_train=q[np.ix_(tr, test_cols)],
        clairvoyant_test=q[np.ix_(te, test_cols)],
        clairvoyant_test_cost=c[np.ix_(te, test_cols)],
    )


def _inner_split(train_cols: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(train_cols)
    n_test = max(1, round(len(perm) / 3))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _score(data: TrialData, gamma: np.ndarray, cost: np.ndarray) -> tuple[dict[str, float], Any]:
    q, rc = data.clairvoyant_test, data.clairvoyant_test_cost
    scale = normalising_cost(rc)
    pts = operating_points(gamma, cost, quality=q, realised_cost=rc, cost_scale=scale)
    curve = deferral_curve(pts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        target = float(np.nanmax(np.nanmean(q, axis=0)))
    return curve_metrics(curve, target=target), curve


def _param_key(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "default"


# -- results ----------------------------------------------------------------------------------------------
def _mean_se(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "se": float("nan"), "n": 0}
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "se": se, "n": int(v.size)}


def _sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * p))


@dataclass
class ProtocolResult:
    """Per-trial metrics of every method, with summaries and a JSON view."""

    dataset: str
    protocol: str
    config: dict[str, Any]
    n_items: int
    n_models: int
    methods: list[str]
    trials: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # first trial
    seconds: float = 0.0
    curve_sums: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # per method, on CURVE_GRID

    def add_curves(self, curves: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Add one trial's deferral curves to the running sums behind :meth:`mean_curves`."""
        for m, cv in curves.items():
            if m != "best_single" and len(cv.get("cost", ())) > 0:
                # the curve is linear between its points and flat outside them, as np.interp extends it
                y = np.interp(CURVE_GRID, np.asarray(cv["cost"], float), np.asarray(cv["quality"], float))
                self.curve_sums[m] = self.curve_sums.get(m, 0.0) + y

    def mean_curves(self) -> dict[str, dict[str, list[float]]]:
        """Each method's deferral curve averaged over the trials (pointwise, on a fixed cost grid)."""
        n = max(len(self.trials), 1)
        return {m: {"cost": CURVE_GRID.round(6).tolist(), "quality": (s / n).round(6).tolist()} for m, s in self.curve_sums.items()}

    def values(self, method: str, metric: str) -> list[float]:
        return [t["metrics"][method][metric] for t in self.trials if method in t["metrics"] and metric in t["metrics"][method]]

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in self.methods:
            if METHODS.get(m) is not None and METHODS[m].kind == "point" or m == "best_single":
                out[m] = {"quality": _mean_se(self.values(m, "quality")), "cost": _mean_se(self.values(m, "cost"))}
                continue
            entry = {k: _mean_se(self.values(m, k)) for k in ("audc", "audc50", "qnc", "peak", "gap_closed", "gap_closed_oracle")}
            entry["qnc_not_reached"] = int(sum(1 for v in self.values(m, "qnc_reached") if v < 0.5))
            chosen: dict[str, int] = {}
            for t in self.trials:
                p = t.get("params", {}).get(m)
                if p is not None:
                    chosen[_param_key(p)] = chosen.get(_param_key(p), 0) + 1
            if chosen:
                entry["chosen_params"] = chosen
            entry["seconds_per_trial"] = _mean_se([t["seconds"].get(m, float("nan")) for t in self.trials])["mean"]
            grid_scores = [t.get("grid", {}).get(m) for t in self.trials if t.get("grid", {}).get(m)]
            if grid_scores:
                keys = list(grid_scores[0])
                entry["grid_audc"] = {k: _mean_se([g[k] for g in grid_scores if k in g]) for k in keys}
            out[m] = entry
        # how often (and by how much) each router loses to the prompt-blind ZeroRouter (S_val) (issue 15)
        zero_val = self.values("zero_val", "audc") if "zero_val" in self.methods else []
        for m in self.methods:
            if m in ("zero", "zero_val", "oracle", "clairvoyant_knn") or "audc" not in out.get(m, {}):
                continue
            mine = self.values(m, "audc")
            if zero_val and len(mine) == len(zero_val):
                diff = np.asarray(mine) - np.asarray(zero_val)
                lost = diff < 0
                out[m]["loses_to_zero_val"] = {
                    "rate": float(lost.mean()),
                    "mean_loss_when_losing": float(-diff[lost].mean()) if lost.any() else 0.0,
                    "worst_loss": float(max(0.0, -diff.min())),
                    "mean_diff": float(diff.mean()),
                }
        # gap closed as a ratio of mean AUDC differences (robust to trials with a tiny denominator)
        for m in self.methods:
            if "audc" not in out.get(m, {}):
                continue
            for ref, key in (("clairvoyant_knn", "gap_closed_of_means"), ("oracle", "gap_closed_oracle_of_means")):
                if "zero" in out and ref in out:
                    out[m][key] = gap_closed(out[m]["audc"]["mean"], out["zero"]["audc"]["mean"], out[ref]["audc"]["mean"])
        return out

    def paired(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pairs = [("kmeans", "knn"), ("learned", "knn"), ("learned", "kmeans"), ("difficulty", "kmeans"), ("difficulty", "learned")]
        pairs += [(m, "knn") for m in self.methods if m not in ("kmeans", "learned", "knn", "best_single") and m != "knn"]
        for a, b in pairs:
            if a not in self.methods or b not in self.methods:
                continue
            va, vb = self.values(a, "audc"), self.values(b, "audc")
            if not va or len(va) != len(vb):
                continue
            diff = np.asarray(va) - np.asarray(vb)
            wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
            out[f"{a}_vs_{b}_audc_win_rate"] = float((wins + 0.5 * (diff == 0).sum()) / diff.size)
            out[f"{a}_minus_{b}_audc"] = _mean_se(diff.tolist())
            out[f"{a}_vs_{b}_sign_test_p"] = _sign_test(wins, losses)
            qa, qb = self.values(a, "qnc"), self.values(b, "qnc")
            if qa and len(qa) == len(qb):
                out[f"{a}_minus_{b}_qnc"] = _mean_se((np.asarray(qa) - np.asarray(qb)).tolist())
        return out

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The JSON document of issue 3 (plus configuration, per-trial values and curves)."""
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "trials": len(self.trials),
            "n_items": self.n_items,
            "n_models": self.n_models,
            "methods": self.summary(),
            "paired": self.paired(),
            "config": self.config,
            "labels": {m: METHODS[m].label if m in METHODS else m for m in self.methods},
            "seconds": round(self.seconds, 1),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "machine": machine_description(),
            "per_trial": self.trials,
            "curves_trial0": self.curves,
            "curves_mean": self.mean_curves(),
            **extra,
        }


def _thread_limits(n_threads: int | None) -> Callable[[], Any]:
    import contextlib

    if n_threads is None:
        return contextlib.nullcontext

    @contextlib.contextmanager
    def limits() -> Any:
        import sys

        torch = sys.modules.get("torch")
        if torch is None:
            import torch  # the learned map imports it anyway; set its pool before first use
        before = torch.get_num_threads()
        torch.set_num_threads(int(n_threads))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - shipped with scikit-learn
            threadpool_limits = None
        try:
            if threadpool_limits is None:
                yield
            else:
                with threadpool_limits(limits=int(n_threads)):
                    yield
        finally:
            torch.set_num_threads(before)

    return limits


def machine_description() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


# -- the protocol -----------------------------------------------------------------------------------------
def run_protocol(
    dataset: RoutingDataset | PreparedData | str | Path,
    *,
    protocol: str = "unseen-models",
    trials: int = 10,
    seed: int = 0,
    val_size: int | None = None,
    train_fraction: float = 2 / 3,
    methods: Sequence[str] = DEFAULT_METHODS,
    param_grids: Mapping[str, Sequence[Any]] | None = None,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    record_grid: Iterable[str] = (),
    shared_selection: Mapping[str, str] | None = None,
    embedder: Any = None,
    min_coverage: float = 0.99,
    n_threads: int | None = 1,
    progress: bool = False,
    keep_curves: bool = True,
    callback: Callable[[ProtocolResult], None] | None = None,
    executor: Any = None,
) -> ProtocolResult:
    """Run an evaluation protocol and return per-trial metrics of every method.

    Parameters
    ----------
    dataset : RoutingDataset, PreparedData or path to a dataset folder
    protocol : {"unseen-models", "fixed-pool", "strongest-unseen"}
    trials : int
        Trial ``t`` uses seed ``seed + t``.
    val_size : int, optional
        Number of S_val prompts (default: 10 % of the prompts).
    train_fraction : float, default=2/3
        Share of models in the training pool (``unseen-models``).
    methods : list of str
        Keys of :data:`METHODS`.
    param_grids : dict, optional
        Override the candidate values of a parameter in every method's grid, e.g.
        ``{"n_clusters": [10, 20], "n_neighbors": [25]}``.
    method_params : dict, optional
        Fixed extra parameters per method, e.g. ``{"kmeans": {"prior_strength": 5.0}}``.
    record_grid : iterable of str
        Methods for which every grid value is also scored on the test pool (K-sensitivity tables).
    shared_selection : dict, optional
        ``{method: other}``: reuse ``other``'s chosen value of the parameters both grids share
        instead of a separate inner search. Default ``{"learned": "kmeans"}`` (the learned map
        starts from the K-means clusters; one training per trial instead of one per K). Pass
        ``{}`` for a separate search.
    n_threads : int or None, default=1
        Limit BLAS/OpenMP and torch threads during the run (faster on a shared CPU); None = leave.
    callback : callable, optional
        Called with the (partial) result after every trial, e.g. to checkpoint long runs.
    executor : Executor, optional
        Where trials run (:mod:`unirouter.evaluation.executors`): in this process by default, or
        ``RayExecutor(...)``. Trials come back as they finish and are kept in trial order, so the
        per-trial results do not depend on the executor.
    min_coverage : float, default=0.99
        Keep models observed on at least this share of the prompts (then complete prompts only).
    """
    t0 = time.perf_counter()
    if protocol not in PROTOCOLS:
        msg = f"protocol must be one of {PROTOCOLS}. Got {protocol!r}."
        raise InvalidInputError(msg)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        msg = f"unknown method(s) {unknown}; registered: {sorted(METHODS)}. Add one with register_method(name, factory)."
        raise InvalidInputError(msg)
    if not methods:
        msg = "methods must name at least one method."
        raise InvalidInputError(msg)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        msg = f"trials must be an int >= 1. Got {trials!r}."
        raise InvalidInputError(msg)
    if not 0 < train_fraction < 1:
        msg = f"train_fraction must be in (0, 1). Got {train_fraction!r}."
        raise InvalidInputError(msg)
    if val_size is not None and (isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1):
        msg = f"val_size must be an int >= 1. Got {val_size!r}."
        raise InvalidInputError(msg)
    data = dataset if isinstance(dataset, PreparedData) else prepare_data(dataset, embedder=embedder, min_coverage=min_coverage)
    n, m_all = data.quality.shape
    n_train_models = round(train_fraction * m_all) if protocol != "fixed-pool" else m_all
    n_test_models = m_all - n_train_models if protocol != "fixed-pool" else m_all
    inner_train = n_train_models - max(1, round(n_train_models / 3))
    if n_test_models < 1 or n_train_models < 2 or inner_train < 1:
        msg = (
            f"dataset {data.name!r} has {m_all} usable models: too few to split into a training pool and a test pool "
            f"({protocol}, train_fraction={train_fraction:.2f}); need at least 3 complete models."
        )
        raise DatasetError(msg, path=data.path)
    if "learned" in methods and inner_train < 2:
        msg = f"method 'learned' needs at least 2 inner-training models; dataset {data.name!r} gives {inner_train}. Use more models or drop 'learned'."
        raise DatasetError(msg, path=data.path)
    if n < 30:
        msg = f"dataset {data.name!r} has {n} complete prompts; at least 30 are needed for a 60/10/30 split."
        raise DatasetError(msg, path=data.path)

    share = {"learned": "kmeans"} if shared_selection is None else dict(shared_selection)
    grids = dict(param_grids or {})
    fixed = {k: dict(v) for k, v in (method_params or {}).items()}
    record = set(record_grid)
    specs = {}
    for name in methods:
        spec = METHODS[name]
        grid = []
        for cand in spec.grid:
            base = dict(cand)
            grid.append(base)
        if grids:
            expanded: list[dict[str, Any]] = []
            for cand in grid:
                keys = [k for k in cand if k in grids]
                if not keys:
                    expanded.append(cand)
                    continue
                for combo in itertools.product(*[list(grids[k]) for k in keys]):
                    expanded.append({**cand, **dict(zip(keys, combo))})
            grid = list({_param_key(g): g for g in expanded}.values())
        grid = [{**g, **fixed.get(name, {})} for g in grid]
        specs[name] = (spec, grid)

    result = ProtocolResult(
        dataset=data.name,
        protocol=protocol,
        config={
            "trials": trials,
            "seed": seed,
            "val_size": val_size,
            "train_fraction": train_fraction,
            "methods": list(methods),
            "param_grids": {k: list(v) for k, v in grids.items()},
            "method_params": fixed,
            "grids": {k: [_param_key(g) for g in v[1]] for k, v in specs.items()},
            "min_coverage": min_coverage,
            "shared_selection": {k: v for k, v in share.items() if k in methods and v in methods},
            "models": data.model_names,
        },
        n_items=int(n),
        n_models=int(m_all),
        methods=list(methods),
    )
    bar = None
    iterator: Iterable[int] = range(trials)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trials, desc=f"{data.name} {protocol}", unit="trial")
    share = {k: v for k, v in share.items() if k in methods and v in methods and list(methods).index(v) < list(methods).index(k)}
    if executor is None:
        from unirouter.evaluation.executors import InProcessExecutor

        executor = InProcessExecutor()
    jobs = [(specs, protocol, seed + t, val_size, n_train_models, record, share, n_threads) for t in iterator]
    for t, trial in executor.map_unordered(_trial_job, data, jobs):
        trial["trial"] = t
        curves = trial.pop("curves")
        if keep_curves and t == 0:
            result.curves = curves
        result.add_curves(curves)
        result.trials.append(trial)
        result.trials.sort(key=lambda tr: tr["trial"])  # executors may finish trials out of order
        result.seconds = time.perf_counter() - t0
        if callback is not None:
            callback(result)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.0f}s" for k, v in trial["seconds"].items() if v >= 1})
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - t0
    return result


def _trial_job(data: PreparedData, job: tuple[Any, ...]) -> dict[str, Any]:
    """One trial as an executor job (module level, so Ray can ship it to a worker)."""
    specs, protocol, seed, val_size, n_train_models, record, share, n_threads = job
    with _thread_limits(n_threads)():
        return _run_trial(data, specs, protocol, seed, val_size, n_train_models, record, share)


def _run_trial(
    data: PreparedData,
    specs: dict[str, tuple[MethodSpec, list[dict[str, Any]]]],
    protocol: str,
    seed: int,
    val_size: int | None,
    n_train_models: int,
    record: set[str],
    share: dict[str, str],
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    m_all = len(data.model_names)
    perm = rng.permutation(m_all)
    strength = None
    if protocol == "unseen-models":
        train_cols, test_cols = np.sort(perm[:n_train_models]), np.sort(perm[n_train_models:])
    elif protocol == "strongest-unseen":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            strength = np.nanmean(data.quality, axis=0)
        order = np.argsort(strength, kind="stable")  # weakest first
        train_cols, test_cols = np.sort(order[:n_train_models]), np.sort(order[n_train_models:])
    else:
        train_cols = test_cols = np.arange(m_all)
    rows = _split_prompts(data.quality.shape[0], rng, val_size)
    cache: dict[str, Any] = {}
    xs = tuple(np.ascontiguousarray(data.x[r]) for r in rows)
    outer = _make_trial(data, rows, xs, train_cols, test_cols, seed, cache)
    # Inner selection run: the training pool split again; its "test pool" labels are training-pool labels.
    if strength is not None:  # the same shape of split inside the training pool: its strongest third held out
        by_strength = train_cols[np.argsort(strength[train_cols], kind="stable")]
        n_in = max(1, round(len(by_strength) / 3))
        inner_tr, inner_te = np.sort(by_strength[:-n_in]), np.sort(by_strength[-n_in:])
    else:
        inner_tr, inner_te = _inner_split(train_cols, np.random.default_rng([seed, 1]))
    inner = _make_trial(data, rows, xs, inner_tr, inner_te, seed, cache)
    with _KMeansMemo():
        return _run_methods(outer, inner, specs, record, seed, share)


def _run_methods(
    outer: TrialData, inner: TrialData, specs: dict[str, tuple[MethodSpec, list[dict[str, Any]]]], record: set[str], seed: int, share: dict[str, str]
) -> dict[str, Any]:

    metrics: dict[str, dict[str, float]] = {}
    params: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    grid_scores: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for name, (spec, grid) in specs.items():
        t0 = time.perf_counter()
        if spec.kind == "point":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = best_single_point(outer.clairvoyant_test, outer.clairvoyant_test_cost, select_quality=outer.y_val)
            metrics[name] = {"quality": p["quality"], "cost": p["cost"]}
            params[name] = {"model": outer.test_models[int(p["model"])]}
            seconds[name] = time.perf_counter() - t0
            continue
        chosen = grid[0]
        if len(grid) > 1 and name in share and share[name] in params:
            other = params[share[name]]
            matching = [cand for cand in grid if all(cand[k] == v for k, v in other.items() if k in cand)]
            grid_use = matching or grid
            chosen = grid_use[0]
        elif len(grid) > 1:
            inner_scores = {}
            for cand in grid:
                g, c = spec.factory(inner, **cand)
                inner_scores[_param_key(cand)] = _score(inner, g, c)[0]["audc"]
            best = max(inner_scores.values())
            chosen = next(cand for cand in grid if inner_scores[_param_key(cand)] == best)
        g, c = spec.factory(outer, **chosen)
        met, curve = _score(outer, g, c)
        metrics[name] = met
        params[name] = chosen
        curves[name] = curve.to_dict()
        if name in record and len(grid) > 1:
            scores = {_param_key(chosen): met["audc"]}
            for cand in grid:
                key = _param_key(cand)
                if key not in scores:
                    scores[key] = _score(outer, *spec.factory(outer, **cand))[0]["audc"]
            grid_scores[name] = scores
        seconds[name] = time.perf_counter() - t0
    if "zero" in metrics:
        for name, met in metrics.items():
            if "audc" not in met:
                continue
            if "clairvoyant_knn" in metrics:
                met["gap_closed"] = gap_closed(met["audc"], metrics["zero"]["audc"], metrics["clairvoyant_knn"]["audc"])
            if "oracle" in metrics:
                met["gap_closed_oracle"] = gap_closed(met["audc"], metrics["zero"]["audc"], metrics["oracle"]["audc"])
    if "best_single" in metrics:
        curves["best_single"] = {"cost": [metrics["best_single"]["cost"]], "quality": [metrics["best_single"]["quality"]]}
    return {
        "seed": seed,
        "test_models": outer.test_models,
        "metrics": metrics,
        "params": params,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "grid": grid_scores,
        "curves": curves,
    }
