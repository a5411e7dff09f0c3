"""Keep a budget on the traffic actually sent: adapt the cost weight online from realised spend.

A cost weight calibrated on the validation prompts meets the budget *on prompts like those*. When the
traffic shifts (say, only history questions, for which the router prefers an expensive model), the
same cost weight overspends. :class:`BudgetPacer` closes the loop: after each call it is told the
realised cost and moves ``lambda`` multiplicatively,

    log lam_t = log lam_0 + rate * (spent_t - budget * t) / budget         (projected on [lo, hi])

i.e. integral control on the cumulative overspend measured in budget-sized calls (online dual
ascent on the budget constraint, in log space because lambda is a scale). Overspending raises
``lambda`` (cheaper models), underspending lowers it (better models), so the mean spend per call
converges to the budget whenever the budget is reachable between ``lo`` and ``hi``.

The hard K-means map has gaps between its operating points (no single ``lambda`` gives a mean cost
in the gap). The pacer needs none: its ``lambda`` moves back and forth across the breakpoint, and the
calls on either side mix the two adjacent operating points in the proportion that meets the budget.

Nothing here needs a router: the pacer only sees realised costs. :class:`unirouter.integration.CandidatePool`
keeps one per (budget, candidate set) and feeds it the realised cost of every call. The same
controller keeps a share: fed 1 for a call answered by the most expensive model and 0 otherwise,
its "mean spend" is that model's share of calls (``max_top_share``).
"""

from __future__ import annotations

import copy as _copy
import math
import threading
from typing import Any

from unirouter.exceptions import InvalidInputError

__all__ = ["BudgetPacer"]


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be a finite number {bound}. Got {value!r}."
        raise InvalidInputError(msg)
    return float(value)


class BudgetPacer:
    """Online cost-weight controller that keeps the mean realised cost per call at ``budget``.

    Parameters
    ----------
    budget : float > 0
        Target mean cost per call (same unit as the costs reported to :meth:`update`).
    cost_weight : float >= 0
        Starting ``lambda``, typically :func:`unirouter.calibrate_cost_weight` for the budget (so
        traffic like the validation prompts sees no change at first).
    rate : float > 0, default=0.05
        Change of ``log lambda`` per budget-sized call of overspend. Larger reacts faster and
        oscillates more; 0.05 means an overspend of 20 calls' budget multiplies lambda by e.
    min_cost_weight, max_cost_weight : float
        The range ``lambda`` is kept in. ``max_cost_weight`` should send every call to the cheapest
        model (``calibrate_cost_weight`` computes such a bound); ``min_cost_weight`` stands for
        "quality only" (``lambda`` = 0 cannot be reached multiplicatively).

    Attributes
    ----------
    cost_weight : float
        The current ``lambda`` (read it before each call).
    calls_, spent_ : int, float
        Calls reported and their total cost.
    """

    def __init__(
        self,
        budget: float,
        *,
        cost_weight: float,
        rate: float = 0.05,
        min_cost_weight: float = 1e-6,
        max_cost_weight: float = 1e9,
    ) -> None:
        self.budget = _positive("budget", budget)
        self.rate = _positive("rate", rate)
        self.min_cost_weight = _positive("min_cost_weight", min_cost_weight)
        self.max_cost_weight = _positive("max_cost_weight", max_cost_weight)
        if self.max_cost_weight <= self.min_cost_weight:
            msg = f"max_cost_weight ({max_cost_weight}) must exceed min_cost_weight ({min_cost_weight})."
            raise InvalidInputError(msg)
        start = _positive("cost_weight", cost_weight, allow_zero=True)
        self.initial_cost_weight = start
        self._log_lam = math.log(min(max(start, self.min_cost_weight), self.max_cost_weight))
        self.calls_ = 0
        self.spent_ = 0.0
        self._lock = threading.Lock()

    @property
    def cost_weight(self) -> float:
        """The ``lambda`` to route the next call with (exactly the starting weight before any call)."""
        if self.calls_ == 0 and self.min_cost_weight <= self.initial_cost_weight <= self.max_cost_weight:
            return self.initial_cost_weight
        return math.exp(self._log_lam)

    @property
    def mean_spend(self) -> float:
        """Realised mean cost per call so far (0 before the first call)."""
        return self.spent_ / self.calls_ if self.calls_ else 0.0

    def update(self, cost: float) -> float:
        """Record one call's realised cost; returns the ``lambda`` for the next call."""
        c = _positive("realised cost", cost, allow_zero=True)
        with self._lock:
            self.calls_ += 1
            self.spent_ += c
            step = self.rate * (c - self.budget) / self.budget
            lo, hi = math.log(self.min_cost_weight), math.log(self.max_cost_weight)
            self._log_lam = min(max(self._log_lam + step, lo), hi)
            return math.exp(self._log_lam)

    def copy(self) -> BudgetPacer:
        """An independent pacer in this one's state: a batch plays its calls forward on the copy
        (fed expected costs) while the calls' realised costs still go to this one."""
        with self._lock:
            twin = _copy.copy(self)
        twin._lock = threading.Lock()
        return twin

    def state(self) -> dict[str, float]:
        """JSON-ready view for decision metadata: target, spend so far, current lambda."""
        return {
            "budget": self.budget,
            "calls": self.calls_,
            "mean_spend": self.mean_spend,
            "cost_weight": self.cost_weight,
        }

    def __repr__(self) -> str:
        return f"BudgetPacer(budget={self.budget:.6g}, cost_weight={self.cost_weight:.6g}, calls={self.calls_}, mean_spend={self.mean_spend:.6g})"
