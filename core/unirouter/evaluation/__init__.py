"""Evaluation: metrics of deferral curves, routing methods, and the paper's protocols.

``metrics`` (operating points, deferral curve, AUDC, QNC, gap closed; knows nothing above it) <
``methods`` (the registry of routing methods under evaluation) < ``protocols`` (unseen-models and
fixed-pool trials, data preparation, results). The metrics are imported here; methods and protocols
(which load data and routers) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from unirouter.evaluation.metrics import (
    DeferralCurve,
    OperatingPoints,
    audc,
    best_single_point,
    curve_metrics,
    deferral_curve,
    envelope_breakpoints,
    gap_closed,
    normalising_cost,
    operating_points,
    peak_quality,
    qnc,
)

_PROTOCOL_NAMES = {"METHODS", "ProtocolResult", "TrialData", "register_method", "run_protocol", "unregister_method"}

__all__ = [
    "METHODS",
    "DeferralCurve",
    "OperatingPoints",
    "ProtocolResult",
    "TrialData",
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
    "register_method",
    "run_protocol",
    "unregister_method",
]


def __getattr__(name: str) -> Any:  # protocols load data and routers: import them on first use
    if name in _PROTOCOL_NAMES:
        from unirouter.evaluation import protocols

        return getattr(protocols, name)
    raise AttributeError(f"module 'unirouter.evaluation' has no attribute {name!r}")
