"""The ``unirouter replay`` sub-command (wired into ``unirouter.cli`` with :func:`register`).

    unirouter replay ROUTER LOG [--out DECISIONS.jsonl|.parquet] [--summary SUMMARY.json]
                     [--cost-weight L ...] [--budget B ...] [--models a,b] [--prompt-field prompt]
                     [--model-field model] [--cost-field cost] [--id-field id] [--batch-size N]
                     [--calibration-prompts N] [--ray] [--ray-address ADDR] [--actors N] [--overwrite]

Each ``--cost-weight`` and each ``--budget`` value is one policy; prints the summary per policy
(share per model, expected quality, expected spend, saving against the logged spend).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "replay",
        help="replay a log of prompts through a saved router under one or several policies",
        description="Route every prompt of a JSONL or Parquet log (optionally with the model that answered and its cost) under "
        "each policy, write every decision and print a summary against the logged baseline. Large logs: --ray.",
    )
    p.add_argument("router", help="saved router directory")
    p.add_argument("log", help="log of prompts: .jsonl or .parquet file, or a folder of them")
    p.add_argument("--out", default=None, help="write every decision here (.parquet or .jsonl)")
    p.add_argument("--summary", default=None, help="write the summary here as JSON")
    p.add_argument("--cost-weight", type=float, nargs="+", default=[], help="one policy per cost weight (lambda)")
    p.add_argument("--budget", type=float, nargs="+", default=[], help="one policy per mean cost budget per prompt (calibrated once)")
    p.add_argument("--models", default=None, help="comma-separated models every policy may choose among")
    p.add_argument("--prompt-field", default="prompt")
    p.add_argument("--model-field", default="model", help="field with the model that answered (optional in the log)")
    p.add_argument("--cost-field", default="cost", help="field with the logged cost (optional in the log)")
    p.add_argument("--id-field", default="id")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--calibration-prompts", type=int, default=None, help="calibrate budgets on the first N log prompts (default: the router's validation prompts)")
    p.add_argument("--ray", action="store_true", help="run on Ray Data with a pool of embedding actors (needs unirouter[ray])")
    p.add_argument("--ray-address", default=None, help="Ray cluster to use (implies --ray)")
    p.add_argument("--actors", type=int, default=1, help="embedding actors on Ray (one CPU each; default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out / --summary files")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``replay``; returns the exit code (0 ok, 2 bad input)."""
    from unirouter.exceptions import UniRouterError
    from unirouter.persistence import load_router
    from unirouter.evaluation.replay import ReplayPolicy, replay

    models = tuple(m for m in args.models.split(",") if m) if args.models else None
    try:
        policies = [ReplayPolicy(name=f"cost_weight={v:g}", cost_weight=v, models=models) for v in args.cost_weight]
        policies += [ReplayPolicy(name=f"budget={v:g}", budget=v, models=models) for v in args.budget]
    except ValueError as e:  # pydantic's ValidationError
        print(f"unirouter replay: error: {e}", file=sys.stderr)
        return 2
    if not policies:
        policies = [ReplayPolicy(name="default", models=models)]
    use_ray = bool(args.ray or args.ray_address)
    try:
        router = load_router(args.router)
        doc = replay(
            router,
            args.log,
            policies=policies,
            output=args.out,
            summary_path=args.summary,
            overwrite=args.overwrite,
            prompt_field=args.prompt_field,
            model_field=args.model_field or None,
            cost_field=args.cost_field or None,
            id_field=args.id_field or None,
            batch_size=args.batch_size,
            calibration_prompts=args.calibration_prompts,
            ray=use_ray,
            num_actors=args.actors,
            ray_address=args.ray_address,
            progress=not args.no_progress,
        )
    except (UniRouterError, ImportError) as e:
        print(f"unirouter replay: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(doc))
    for p in (args.out, args.summary):
        if p:
            print(f"wrote {p}")
    return 0


def format_summary(doc: dict[str, Any]) -> str:
    """One line per policy (and the logged baseline) of a replay summary."""
    lines = [f"{doc['prompts']} prompts, {doc['engine']}, {doc['seconds']:.1f} s"]
    lg = doc["logged"]
    if lg["spend"] is not None or lg["expected_quality"] is not None:
        q = "-" if lg["expected_quality"] is None else f"{lg['expected_quality']:.3f}"
        s = "-" if lg["spend"] is None else f"{lg['spend']:.6g}"
        lines.append(f"logged      expected quality {q}  spend {s}")
    for name, e in doc["policies"].items():
        vs = e["vs_logged"]
        saving = f"  saving {100 * vs['saving_share']:.1f}%" if vs.get("saving_share") is not None else ""
        dq = f"  quality {vs['quality_change']:+.3f} vs logged" if "quality_change" in vs else ""
        top = ", ".join(f"{m} {100 * s:.0f}%" for m, s in sorted(e["share"].items(), key=lambda kv: -kv[1])[:3])
        lines.append(
            f"{name:<20} lambda {e['cost_weight']:.4g}  expected quality {e['expected_quality']:.3f}  spend {e['expected_spend']:.6g}{saving}{dq}  [{top}]"
        )
    return "\n".join(lines)

