"""Evaluation metrics for cost-aware routers (method.md section 3.1, the official definitions).

A router is evaluated on a test set through its two matrices ``gamma (n, M)`` (predicted error) and
``cost (n, M)`` (expected cost used in the decision); for a cost weight ``lam`` it sends prompt ``i``
to ``argmin_m gamma[i, m] + lam * cost[i, m]`` (exact ties to the cheaper model). The metrics:

* :func:`operating_points` — the *exact* sweep over ``lam``: every prompt's decision changes only at
  the breakpoints of the lower envelope of its lines ``gamma + lam * cost``; all breakpoints are
  computed, from ``lam = 0`` up to the ``lam`` where every prompt has moved to its cheapest model.
  Each point is (mean normalised realised cost, mean realised quality) over the test prompts; the
  normaliser ``C`` is the largest mean realised cost of any single model of the pool.
* :func:`deferral_curve` — the upper convex hull of the points, made non-decreasing, linearly
  interpolated, flat left of the cheapest point and right of the last one.
* :func:`audc` (over ``[0, 1]``), ``audc(curve, upper=0.5)`` (AUDC@50, not rescaled), :func:`qnc`
  (smallest normalised cost reaching the best single model's quality; 1.0 if never reached),
  :func:`peak_quality`, :func:`gap_closed`, :func:`best_single_point`.

Quality may be 0/1 or graded in ``[0, 1]``; NaN cells (missing results) are masked: a point's
quality is the mean over the prompts whose chosen model has a result (likewise for cost).

This module is the bottom of :mod:`unirouter.evaluation`: it knows nothing of routers, methods or
protocols (:mod:`unirouter.evaluation.methods` and :mod:`unirouter.evaluation.protocols` build on it).

Examples
--------
>>> pts = operating_points(gamma, cost, quality=y_test, realised_cost=c_test)
>>> curve = deferral_curve(pts)
>>> audc(curve), audc(curve, upper=0.5), qnc(curve, target=y_test.mean(0).max())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unirouter.exceptions import InvalidInputError

__all__ = [
    "DeferralCurve",
    "OperatingPoints",
    "audc",
    "best_single_point",
    "curve_metrics",
    "deferral_curve",
    "envelope_breakpoints",
    "gap_closed",
    "normalising_cost",
    "operating_points",
    "peak_quality",
    "qnc",
]


# -- operating points ------------------------------------------------------------------------------
_LAM_RTOL = 1e-10  # breakpoints closer than this (relative) are the same breakpoint
@dataclass(frozen=True)
class OperatingPoints:
    """The (cost, quality) points of one router over the whole ``lam`` sweep.

    Attributes
    ----------
    cost : ndarray (P,)
        Mean normalised realised cost of each point.
    quality : ndarray (P,)
        Mean realised quality of each point.
    cost_weight : ndarray (P,)
        The smallest ``lam`` giving each point (``0`` for the first one).
    cost_scale : float
        ``C``, the normaliser of ``cost``.
    """

    cost: np.ndarray
    quality: np.ndarray
    cost_weight: np.ndarray
    cost_scale: float

    def __len__(self) -> int:
        return int(self.cost.shape[0])


def _as_matrix(a: Any, what: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if shape is not None and arr.ndim == 1 and arr.shape[0] == shape[1]:
        arr = np.broadcast_to(arr, shape)
    if arr.ndim != 2:
        msg = f"{what} must be a 2-D array (n_prompts, n_models). Got shape {arr.shape}."
        raise InvalidInputError(msg)
    if shape is not None and arr.shape != shape:
        msg = f"{what} has shape {arr.shape}; expected {shape} (n_prompts, n_models)."
        raise InvalidInputError(msg)
    return arr


def envelope_breakpoints(gamma: Any, cost: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every change of decision of ``argmin_m gamma[i, m] + lam * cost[i, m]`` over ``lam >= 0``.

    Parameters
    ----------
    gamma, cost : array (n, M)
        Finite predicted errors and decision costs (``cost`` may also be (M,)).

    Returns
    -------
    start : ndarray (n,) of int
        The model chosen at ``lam = 0`` (lowest ``gamma``, ties to the cheaper model).
    lam, row, old, new : ndarrays (E,)
        Event ``e``: for ``lam >= lam[e]`` prompt ``row[e]`` moves from model ``old[e]`` to the
        strictly cheaper model ``new[e]`` (at ``lam[e]`` itself the two tie and the cheaper one wins).
        Events of one row are in increasing ``lam``; after its last event a row sits on its cheapest
        model. At most ``M - 1`` events per row.
    """
    g = _as_matrix(gamma, "gamma")
    c = _as_matrix(cost, "cost", g.shape)
    if not (np.isfinite(g).all() and np.isfinite(c).all()):
        msg = "gamma and cost must be finite (no NaN or inf); predicted errors of missing cells must be filled."
        raise InvalidInputError(msg)
    n, m = g.shape
    if n == 0 or m == 0:
        msg = f"need at least one prompt and one model. Got gamma of shape {g.shape}."
        raise InvalidInputError(msg)
    gmin = g.min(axis=1, keepdims=True)
    cur = np.argmin(np.where(g == gmin, c, np.inf), axis=1)
    start = cur.copy()
    rows = np.arange(n)
    lams, rws, olds, news = [], [], [], []
    lam_now = np.zeros(n)
    while rows.size:
        g0 = g[rows, cur[rows]][:, None]
        c0 = c[rows, cur[rows]][:, None]
        gr, cr = g[rows], c[rows]
        cheaper = cr < c0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(cheaper, (gr - g0) / np.where(cheaper, c0 - cr, 1.0), np.inf)
        tmin = t.min(axis=1)
        moving = np.isfinite(tmin)
        if not moving.any():
            break
        r = rows[moving]
        tm = np.maximum(tmin[moving], lam_now[r])  # numerical safety: events never go back in lam
        tie = t[moving] <= tm[:, None]
        nxt = np.argmin(np.where(tie, cr[moving], np.inf), axis=1)
        lams.append(tm)
        rws.append(r)
        olds.append(cur[r].copy())
        news.append(nxt)
        cur[r] = nxt
        lam_now[r] = tm
        rows = r
    if lams:
        return start, np.concatenate(lams), np.concatenate(rws), np.concatenate(olds), np.concatenate(news)
    empty = np.zeros(0, dtype=np.int64)
    return start, np.zeros(0), empty, empty, empty


def normalising_cost(realised_cost: Any) -> float:
    """``C``: the largest mean realised cost (NaN masked) of any single model (column)."""
    rc = _as_matrix(realised_cost, "realised_cost")
    with np.errstate(invalid="ignore"):
        means = np.nanmean(np.where(np.isnan(rc), np.nan, rc), axis=0) if rc.size else np.array([])
    if means.size == 0 or not np.isfinite(means).any():
        msg = "realised_cost has no observed value; cannot normalise costs."
        raise InvalidInputError(msg)
    c = float(np.nanmax(means))
    if c <= 0:
        msg = f"the largest mean realised cost of a single model is {c}; costs must be positive to normalise."
        raise InvalidInputError(msg)
    return c


def operating_points(
    gamma: Any,
    cost: Any,
    *,
    quality: Any,
    realised_cost: Any,
    cost_scale: float | None = None,
) -> OperatingPoints:
    """All operating points of a router over the exact ``lam`` sweep (method.md 3.1).

    Parameters
    ----------
    gamma : array (n, M)
        Predicted error of each model on each test prompt.
    cost : array (n, M) or (M,)
        Cost the router uses in its decision (e.g. the validation mean cost per model).
    quality : array (n, M)
        Realised quality in [0, 1] (0/1 or graded); NaN = missing (masked).
    realised_cost : array (n, M)
        Realised per-query cost; NaN = missing (masked).
    cost_scale : float, optional
        ``C``; default :func:`normalising_cost` of ``realised_cost``.

    Returns
    -------
    OperatingPoints
        One point for ``lam = 0`` and one after each distinct breakpoint; the last point has every
        prompt on its cheapest model.
    """
    g = _as_matrix(gamma, "gamma")
    shape = g.shape
    q = _as_matrix(quality, "quality", shape)
    rc = _as_matrix(realised_cost, "realised_cost", shape)
    obs_q = ~np.isnan(q)
    if ((q[obs_q] < 0) | (q[obs_q] > 1)).any():
        msg = "quality must lie in [0, 1] (NaN for missing cells)."
        raise InvalidInputError(msg)
    if (rc[~np.isnan(rc)] < 0).any():
        msg = "realised_cost must be >= 0 (NaN for missing cells)."
        raise InvalidInputError(msg)
    scale = normalising_cost(rc) if cost_scale is None else float(cost_scale)
    if not np.isfinite(scale) or scale <= 0:
        msg = f"cost_scale must be a finite number > 0. Got {cost_scale!r}."
        raise InvalidInputError(msg)
    start, lam, row, old, new = envelope_breakpoints(g, cost)
    qv, qo = np.where(obs_q, q, 0.0), obs_q.astype(np.float64)
    obs_c = ~np.isnan(rc)
    cv, co = np.where(obs_c, rc, 0.0), obs_c.astype(np.float64)
    n = shape[0]
    r0 = np.arange(n)
    base = np.array([qv[r0, start].sum(), qo[r0, start].sum(), cv[r0, start].sum(), co[r0, start].sum()])
    order = np.argsort(lam, kind="stable")
    lam, row, old, new = lam[order], row[order], old[order], new[order]
    deltas = np.stack(
        [
            qv[row, new] - qv[row, old],
            qo[row, new] - qo[row, old],
            cv[row, new] - cv[row, old],
            co[row, new] - co[row, old],
        ],
        axis=1,
    )
    sums = np.vstack([base[None, :], base[None, :] + np.cumsum(deltas, axis=0)])
    # Keep the state after the last event of each distinct lam (plus the lam = 0 state). Breakpoints
    # equal up to rounding (the same lam computed through different float expressions) are one.
    if lam.size:
        distinct = lam[1:] - lam[:-1] > _LAM_RTOL * np.maximum(1.0, np.abs(lam[1:]))
        last = np.flatnonzero(np.append(distinct, True)) + 1
        keep = np.concatenate([[0], last])
        lam_pts = np.concatenate([[0.0], lam[last - 1]])
    else:
        keep = np.array([0])
        lam_pts = np.array([0.0])
    if lam.size and lam[0] == 0.0:  # an event exactly at lam = 0: the tie goes to the cheaper model
        keep, lam_pts = keep[1:], lam_pts[1:]
    s = sums[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        qual = np.where(s[:, 1] > 0, s[:, 0] / np.maximum(s[:, 1], 1e-300), np.nan)
        cst = np.where(s[:, 3] > 0, s[:, 2] / np.maximum(s[:, 3], 1e-300), np.nan) / scale
    return OperatingPoints(cost=cst, quality=qual, cost_weight=lam_pts, cost_scale=scale)


# -- deferral curve and its metrics ---------------------------------------------------------------
@dataclass(frozen=True)
class DeferralCurve:
    """A non-decreasing, concave, piecewise-linear quality-vs-normalised-cost curve.

    ``cost`` and ``quality`` are its vertices (strictly increasing in both); ``q(c)`` interpolates
    linearly between them and is flat outside (method.md 3.1).
    """

    cost: np.ndarray
    quality: np.ndarray

    def __call__(self, c: Any) -> np.ndarray | float:
        out = np.interp(np.asarray(c, dtype=np.float64), self.cost, self.quality)
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self, *, decimals: int = 6) -> dict[str, list[float]]:
        return {"cost": np.round(self.cost, decimals).tolist(), "quality": np.round(self.quality, decimals).tolist()}


def deferral_curve(points: OperatingPoints | Any, quality: Any = None) -> DeferralCurve:
    """The deferral curve of operating points: upper convex hull, made non-decreasing.

    Parameters
    ----------
    points : OperatingPoints, or array (P,) of normalised costs (then give ``quality``)
    quality : array (P,), optional

    Returns
    -------
    DeferralCurve
        The least concave non-decreasing majorant of the points (equivalently, the upper hull cut
        at its highest point; dominated points cannot matter).
    """
    if isinstance(points, OperatingPoints):
        x, y = points.cost, points.quality
    else:
        if quality is None:
            msg = "deferral_curve needs OperatingPoints, or costs and quality arrays."
            raise InvalidInputError(msg)
        x, y = np.asarray(points, dtype=np.float64).ravel(), np.asarray(quality, dtype=np.float64).ravel()
        if x.shape != y.shape:
            msg = f"costs and quality must have the same length. Got {x.shape[0]} and {y.shape[0]}."
            raise InvalidInputError(msg)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        msg = "deferral_curve needs at least one finite (cost, quality) point."
        raise InvalidInputError(msg)
    x, y = x[ok], y[ok]
    order = np.lexsort((-y, x))  # by cost, then best quality first
    x, y = x[order], y[order]
    # Pareto front: strictly better quality than every cheaper-or-equal point.
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(y)[:-1]])
    front = y > prev_best
    x, y = x[front], y[front]
    hx: list[float] = []
    hy: list[float] = []
    for px, py in zip(x.tolist(), y.tolist()):
        while len(hx) >= 2 and (hx[-1] - hx[-2]) * (py - hy[-2]) - (hy[-1] - hy[-2]) * (px - hx[-2]) >= 0:
            hx.pop()
            hy.pop()
        hx.append(px)
        hy.append(py)
    return DeferralCurve(cost=np.asarray(hx), quality=np.asarray(hy))


def _integral(curve: DeferralCurve, lower: float, upper: float) -> float:
    inner = curve.cost[(curve.cost > lower) & (curve.cost < upper)]
    knots = np.concatenate([[lower], inner, [upper]])
    vals = np.interp(knots, curve.cost, curve.quality)
    return float(np.sum(0.5 * (vals[1:] + vals[:-1]) * np.diff(knots)))


def audc(curve: DeferralCurve, *, lower: float = 0.0, upper: float = 1.0) -> float:
    """Area under the deferral curve over normalised cost in ``[lower, upper]`` (not rescaled).

    ``audc(curve)`` is AUDC; ``audc(curve, upper=0.5)`` is AUDC@50.
    """
    if not upper > lower:
        msg = f"upper must be greater than lower. Got lower={lower}, upper={upper}."
        raise InvalidInputError(msg)
    return _integral(curve, float(lower), float(upper))


def qnc(curve: DeferralCurve, target: float, *, tol: float = 1e-12) -> tuple[float, bool]:
    """Quality-neutral cost: the smallest ``c`` with ``q(c) >= target``.

    Returns
    -------
    (cost, reached) : (float, bool)
        ``(1.0, False)`` when the curve never reaches ``target``.
    """
    x, y = curve.cost, curve.quality
    t = float(target) - tol
    if y[-1] < t:
        return 1.0, False
    if y[0] >= t:
        return 0.0, True
    i = int(np.argmax(y >= t))
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return float(x0 + (float(target) - y0) * (x1 - x0) / (y1 - y0)), True


def peak_quality(curve: DeferralCurve) -> float:
    """The highest quality on the curve."""
    return float(curve.quality.max())


def gap_closed(value: float, zero: float, reference: float) -> float:
    """``(value - zero) / (reference - zero)``; NaN when the reference does not beat ``zero``."""
    den = float(reference) - float(zero)
    if not den > 0:
        return float("nan")
    return (float(value) - float(zero)) / den


def best_single_point(
    quality: Any, realised_cost: Any, *, select_quality: Any = None, cost_scale: float | None = None
) -> dict[str, float | int]:
    """The best single model as a point: its test quality and normalised cost.

    Parameters
    ----------
    quality, realised_cost : array (n, M)
        Test quality and realised costs (NaN masked).
    select_quality : array (n_val, M), optional
        Quality on the validation prompts, used to *choose* the model (default: ``quality``).
    """
    q = _as_matrix(quality, "quality")
    rc = _as_matrix(realised_cost, "realised_cost", q.shape)
    scale = normalising_cost(rc) if cost_scale is None else float(cost_scale)
    sel = q if select_quality is None else _as_matrix(select_quality, "select_quality")
    if sel.shape[1] != q.shape[1]:
        msg = f"select_quality has {sel.shape[1]} models; quality has {q.shape[1]}."
        raise InvalidInputError(msg)
    with np.errstate(invalid="ignore"):
        acc = np.nanmean(sel, axis=0)
    j = int(np.nanargmax(acc))
    return {"model": j, "quality": float(np.nanmean(q[:, j])), "cost": float(np.nanmean(rc[:, j]) / scale)}


def curve_metrics(curve: DeferralCurve, *, target: float) -> dict[str, float]:
    """AUDC, AUDC@50, QNC (+ whether reached) and peak of one curve."""
    c, reached = qnc(curve, target)
    return {
        "audc": audc(curve),
        "audc50": audc(curve, upper=0.5),
        "qnc": c,
        "qnc_reached": float(reached),
        "peak": peak_quality(curve),
    }
