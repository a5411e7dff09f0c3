"""Turn a target into a cost weight (lambda) on a sample of prompts.

Along the Lagrangian path ``argmin_h gamma(x,h) + lam * cost(x,h)``, the mean expected cost, the
predicted error and the share of calls to the most expensive model are all monotone step functions
of ``lam``. Each target is therefore met at a threshold found by bisection (in log space, to machine
precision) on the router's own predictions for the sample:

* ``budget``: the smallest ``lam`` whose mean expected cost per query is <= budget;
* ``quality_floor``: the largest ``lam`` whose predicted accuracy is >= the floor;
* ``max_quality_drop``: the same, with the floor = predicted accuracy of the best single model on the
  sample minus the drop (e.g. 0.01 = "within 1 point of the best model");
* ``max_top_share``: the smallest ``lam`` sending at most that share of calls to the most expensive
  model.

The quality targets are read off the router's *predicted* error, which is optimistic: the model with
the lowest estimated error in a cluster is partly chosen for its lucky estimate (winner's curse), so
on new prompts the realised quality falls short of the floor. With ``honest=True`` the quality at
each ``lam`` is instead *measured* out of fold on the validation prompts: each fold is routed by
profiles re-estimated without that fold's labels, and the true scores of the chosen models are
averaged. The largest ``lam`` on a grid before that measured quality first drops below the floor is
returned. It is a held-out estimate, not a guarantee: with a few hundred validation prompts its
standard error is 1-2 points, and traffic unlike the validation prompts can realise less.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from unirouter._validation import check_bool, check_int, check_random_state, check_real
from unirouter.exceptions import InvalidInputError

__all__ = ["calibrate_cost_weight", "routing_summary"]


def _check_router(router: Any) -> None:
    # Duck-typed: importing BaseRouter here would make an import circle (base imports this module).
    if not all(callable(getattr(router, a, None)) for a in ("predict", "_check_fitted", "_gamma_cost")):
        msg = f"router must be a fitted unirouter router (UniRouter, DifficultyRouter, KNNRouter, ...). Got {type(router).__name__}."
        raise InvalidInputError(msg)
    router._check_fitted()


def _choices(gamma: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    scale = float(cost.max()) if cost.size else 0.0
    tie = 1e-9 * cost / scale if scale > 0 else 0.0
    return np.argmin(gamma + lam * cost + tie, axis=1)


def routing_summary(gamma: np.ndarray, cost: np.ndarray, lam: float) -> dict[str, Any]:
    """Predicted mean error, mean cost and per-model call shares at ``lam`` (matrices are (n, M))."""
    pick = _choices(gamma, cost, lam)
    rows = np.arange(gamma.shape[0])
    return {
        "error": float(gamma[rows, pick].mean()),
        "cost": float(cost[rows, pick].mean()),
        "shares": np.bincount(pick, minlength=gamma.shape[1]) / gamma.shape[0],
    }


def _lam_max(gamma: np.ndarray, cost: np.ndarray) -> float:
    """A lambda large enough that every prompt goes to its cheapest model."""
    spread = float(gamma.max() - gamma.min()) + 1e-12
    c = np.sort(np.unique(np.round(cost, 15)))
    gaps = np.diff(c)
    gap = float(gaps[gaps > 0].min()) if (gaps > 0).any() else 1.0
    return 4.0 * spread / max(gap, 1e-15)


def _lam_min(gamma: np.ndarray, cost: np.ndarray) -> float:
    """Half the smallest lambda at which any prompt's choice leaves its best-quality model (0 when
    no prompt has a cheaper alternative): below it, routing is quality-only on these prompts."""
    rows = np.arange(gamma.shape[0])
    best = np.argmin(gamma, axis=1)
    dg = gamma - gamma[rows, best][:, None]
    dc = cost[rows, best][:, None] - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dc > 0, dg / np.where(dc > 0, dc, 1.0), np.inf)
    low = float(ratio.min()) if ratio.size else np.inf
    return 0.5 * low if np.isfinite(low) and low > 0 else 0.0


def _bisect(ok: Callable[[float], bool], lo: float, hi: float, *, smallest: bool) -> float:
    """Threshold of a monotone predicate on [lo, hi], bisecting log(lam) then lam."""
    a, b = np.log(max(lo, 1e-300)), np.log(hi)
    for _ in range(200):
        mid = np.exp(0.5 * (a + b))
        if ok(mid) == smallest:
            b = np.log(mid)
        else:
            a = np.log(mid)
        if b - a < 1e-12:
            break
    return float(np.exp(b) if smallest else np.exp(a))


def calibrate_cost_weight(
    router: Any,
    prompts: Sequence[str] | None = None,
    *,
    embeddings: Any = None,
    budget: float | None = None,
    quality_floor: float | None = None,
    max_quality_drop: float | None = None,
    max_top_share: float | None = None,
    models: Iterable[str] | None = None,
    honest: bool = False,
    n_folds: int = 5,
    random_state: Any = 0,
) -> float:
    """The cost weight that meets one target on a sample of prompts.

    Parameters
    ----------
    router : a fitted router with models registered
    prompts : list of str, optional
        A sample of the traffic to calibrate on (or give ``embeddings``); the router's validation
        prompts are typical.
    budget : float, optional
        Target mean cost per query.
    quality_floor : float in [0, 1], optional
        Minimum predicted accuracy.
    max_quality_drop : float in [0, 1], optional
        Allowed drop of predicted accuracy below the best single model on the sample.
    max_top_share : float in [0, 1], optional
        Maximum share of calls to the most expensive model.
    models : list of str, optional
        Restrict to these models.
    honest : bool, default False
        Quality targets only: measure quality out of fold on the router's validation prompts (their
        true scores) instead of trusting the predicted error (see the module docstring). The
        sample is then the validation set; ``prompts`` are ignored and ``embeddings``, if given,
        must be the validation prompts' embeddings (they save embedding them again).
    n_folds, random_state :
        The out-of-fold split for ``honest``.

    Returns
    -------
    float
        lambda (>= 0). Exactly one target must be given.
    """
    targets = {"budget": budget, "quality_floor": quality_floor, "max_quality_drop": max_quality_drop, "max_top_share": max_top_share}
    given = {k: v for k, v in targets.items() if v is not None}
    if len(given) != 1:
        msg = f"give exactly one target among {list(targets)}; got {sorted(given) or 'none'}."
        raise InvalidInputError(msg)
    (kind, value), = given.items()
    value = check_real(value, kind, low=0.0)
    if kind != "budget" and value > 1:
        msg = f"{kind} is a fraction and must lie in [0, 1]. Got {value!r}."
        raise InvalidInputError(msg)
    _check_router(router)
    honest = check_bool(honest, "honest")
    check_int(n_folds, "n_folds", low=2)
    check_random_state(random_state)
    if prompts is None and embeddings is None:
        vs = getattr(router, "validation_set_", None)
        if vs is None:
            msg = "give a sample of prompts (or embeddings=) to calibrate on."
            raise InvalidInputError(msg)
        prompts = vs.prompts
    gamma, cost, _ = router.predict(prompts, embeddings=embeddings, models=models)
    hi = _lam_max(gamma, cost)

    def at(lam: float) -> dict[str, Any]:
        return routing_summary(gamma, cost, lam)

    if kind == "budget":
        if at(0.0)["cost"] <= value:
            return 0.0
        cheapest = at(hi)["cost"]
        if cheapest > value * (1 + 1e-9):
            msg = f"budget {value:.6g} is below the cheapest routing's mean cost {cheapest:.6g} on this sample; raise the budget."
            raise InvalidInputError(msg)
        return _bisect(lambda lam: at(lam)["cost"] <= value, 0.0, hi, smallest=True)

    if kind == "max_top_share":
        per_model = cost.mean(axis=0)
        top = int(np.argmax(per_model))
        if at(0.0)["shares"][top] <= value:
            return 0.0
        floor_share = float(at(hi)["shares"][top])
        if floor_share > value:
            msg = (
                f"max_top_share {value:.4g} cannot be met: even the cheapest routing sends {floor_share:.4g} of "
                "this sample to the most expensive model (it is the cheapest candidate there); raise the share "
                "or drop that model with models=."
            )
            raise InvalidInputError(msg)
        return _bisect(lambda lam: at(lam)["shares"][top] <= value, 0.0, hi, smallest=True)

    if honest and kind in ("quality_floor", "max_quality_drop"):
        return _honest_quality_lambda(router, kind, float(value), models, hi, n_folds, random_state, embeddings)

    # quality targets: the largest lam still meeting the floor
    floor = value if kind == "quality_floor" else (1.0 - float(gamma.mean(axis=0).min())) - value
    if 1.0 - at(0.0)["error"] < floor - 1e-12:
        best = 1.0 - at(0.0)["error"]
        msg = f"quality floor {floor:.4f} is above the best predicted accuracy {best:.4f} on this sample; lower it."
        raise InvalidInputError(msg)
    if 1.0 - at(hi)["error"] >= floor:
        return hi
    return _bisect(lambda lam: 1.0 - at(lam)["error"] >= floor - 1e-12, 0.0, hi, smallest=False)


def _out_of_fold_predictions(
    router: Any, models: Iterable[str] | None, n_folds: int, random_state: Any, embeddings: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted error and cost ``(n_val, M)`` of each validation prompt from profiles estimated
    without its fold's labels, and the true scores ``(n_val, M)``."""
    from unirouter._validation import as_rng
    from unirouter.profiles import cluster_statistics

    vs = getattr(router, "validation_set_", None)
    pool = router._pool
    if vs is None or pool.psi.shape[1] != router.n_parts_:
        msg = "honest=True needs a router that keeps its validation prompts and routes on per-part statistics (UniRouter, KNNRouter)."
        raise InvalidInputError(msg)
    if not isinstance(n_folds, int) or isinstance(n_folds, bool) or n_folds < 2:
        msg = f"n_folds must be an integer >= 2. Got {n_folds!r}."
        raise InvalidInputError(msg)
    cols = router._columns(pool, models, None)
    names = [pool.names[i] for i in cols]
    scores = np.vstack([pool.profiles[n].scores for n in names]).T  # (n_val, M)
    n = scores.shape[0]
    if embeddings is not None:
        x = np.asarray(embeddings)
        if x.ndim != 2 or x.shape[0] != n:
            msg = f"honest=True routes the {n} validation prompts; embeddings= must be theirs. Got shape {x.shape}."
            raise InvalidInputError(msg)
    else:
        x = router._embed(vs.prompts)
    folds = as_rng(random_state).permutation(n) % n_folds
    labels, parts = router.validation_labels_, router.n_parts_
    a = float(getattr(router, "prior_strength", 0.0) or 0.0)
    gamma = np.empty((n, len(names)))
    cost = np.empty((n, len(names)))
    for f in range(n_folds):
        held = folds == f
        psi = np.vstack(
            [cluster_statistics(np.where(held, np.nan, 1.0 - scores[:, j]), labels, parts, a)[0] for j in range(len(names))]
        )
        g, c, _ = router._gamma_cost(x[held], psi, pool.cost[cols])
        gamma[held], cost[held] = g, c
    return gamma, cost, scores


def _honest_quality_lambda(
    router: Any, kind: str, value: float, models: Iterable[str] | None, hi: float, n_folds: int, random_state: Any,
    embeddings: Any = None,
) -> float:
    gamma, cost, scores = _out_of_fold_predictions(router, models, n_folds, random_state, embeddings)
    rows = np.arange(scores.shape[0])
    best_single = float(np.nanmax(np.nanmean(scores, axis=0)))
    floor = value if kind == "quality_floor" else best_single - value
    grid = np.concatenate([[0.0], np.geomspace(hi * 1e-7, hi, 400)])

    def realised(lam: float) -> float:
        return float(np.nanmean(scores[rows, _choices(gamma, cost, lam)]))

    if realised(0.0) < floor:
        msg = (
            f"quality floor {floor:.4f} is above the quality the router reaches out of fold on its validation "
            f"prompts ({realised(0.0):.4f}); lower it."
        )
        raise InvalidInputError(msg)
    lam = 0.0
    for g in grid[1:]:
        if realised(float(g)) < floor:
            break
        lam = float(g)
    return lam
