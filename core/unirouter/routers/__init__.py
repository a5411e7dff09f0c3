"""The routers: the shared base machinery and every router built on it.

``base`` (pool of model profiles, decisions, save/load hooks) < ``cluster_maps`` (K-means and the
learned cluster map) < ``uniroute`` (:class:`UniRouter`, the paper's two routers), ``difficulty``
(:class:`DifficultyRouter`, beyond the paper), ``baselines`` (:class:`ZeroRouter`, :class:`KNNRouter`);
``calibration`` turns a budget, a quality floor or a cap on the top model's share into a cost weight.
Routers build on :mod:`unirouter.profiling`, :mod:`unirouter.persistence`, :mod:`unirouter.embedding`
and :mod:`unirouter.data`; nothing below imports them. Importing this package registers every built-in
router kind for loading.
"""

from unirouter.routers.base import BaseRouter, RoutingDecision
from unirouter.routers.baselines import KNNRouter, ZeroRouter
from unirouter.routers.calibration import calibrate_cost_weight, routing_summary
from unirouter.routers.difficulty import DifficultyRouter
from unirouter.routers.uniroute import UniRouter

__all__ = [
    "BaseRouter",
    "DifficultyRouter",
    "KNNRouter",
    "RoutingDecision",
    "UniRouter",
    "ZeroRouter",
    "calibrate_cost_weight",
    "routing_summary",
]
