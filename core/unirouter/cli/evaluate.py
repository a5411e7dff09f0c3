"""The ``unirouter evaluate`` sub-command (wired into ``unirouter.cli`` with :func:`register`).

    unirouter evaluate --data DIR [--protocol unseen-models|fixed-pool|strongest-unseen] [--trials N] [--seed S]
                       [--val-size N] [--methods m ...] [--k-grid K ...] [--knn-grid k ...]
                       [--json OUT] [--plot OUT.png] [--plugin module ...]
                       [--ray] [--ray-address ADDR] [--workers N]

Prints a table (AUDC, AUDC gain over ZeroRouter in points, AUDC@50, QNC, peak: mean +/- 2 standard
errors over trials; every column is explained in ``--help``) and the paired win rates of the UniRoute
routers against K-NN. :func:`format_table` and :func:`plot_curves` are shared with
``benchmarks/make_report.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from unirouter.evaluation.protocols import DEFAULT_METHODS

__all__ = ["format_paired", "format_table", "format_zero_losses", "plot_curves", "register", "run"]

COLUMNS_HELP = """\
How to read the output (mean ± 2 standard errors over the trials):
  Each router is swept over its cost weight; every setting gives a point (cost, quality) on held-out
  test prompts routed among the test models. Cost is normalised: mean cost per query divided by the
  mean cost of the most expensive single model (1.0 = always that model). The deferral curve joins the
  best points.
  AUDC                    area under the deferral curve over costs 0..1, i.e. the quality averaged
                          over the cost range (higher is better).
  vs ZeroRouter (points)  AUDC minus ZeroRouter's AUDC in the same trial, x 100: accuracy points the
                          router gains by reading the prompt. ZeroRouter mixes the models at random
                          (it only knows their average accuracy and cost).
  AUDC@50                 area over the cheap half of the cost range, 0..0.5 (not rescaled: at most 0.5).
  QNC                     smallest normalised cost at which the router matches the quality of the best
                          single model (lower is better; 1.0 when never reached).
  QNC not reached         trials in which it never matched it.
  peak                    highest quality on the curve.
  Oracle knows every test answer and Clairvoyant K-NN is K-NN given the test models' labels on the
  training prompts: neither can be deployed; they show how much room is left.
  Paired table: A's AUDC win rate = share of trials where A's AUDC beats B's; AUDC A - B (x 100, in
  points) and QNC A - B are paired mean differences; sign-test p is the two-sided sign test on the wins.
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate routers and baselines on a routing dataset",
        description="Run the unseen-models protocol (in each trial, routers are built without a random third of the "
        "models, which are then added from their validation labels only) or the fixed-pool protocol (all models known) "
        "on a routing dataset, and compare routers and baselines.",
        epilog=COLUMNS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset folder (with dataset.json)")
    p.add_argument(
        "--protocol",
        default="unseen-models",
        choices=["unseen-models", "fixed-pool", "strongest-unseen"],
        help="strongest-unseen: the test pool is the strongest third of the models (default unseen-models)",
    )
    p.add_argument("--trials", type=int, default=10, help="number of trials (trial t uses seed S + t; default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=int, default=None, help="validation prompts per trial (default 10%% of the prompts)")
    p.add_argument("--train-fraction", type=float, default=2 / 3, help="share of models in the training pool (default 2/3)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help=f"method keys (default: {' '.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--k-grid", "--K-grid", dest="k_grid", type=int, nargs="+", default=None, help="candidate K (n_clusters)")
    p.add_argument("--knn-grid", type=int, nargs="+", default=None, help="candidate k (n_neighbors) for K-NN")
    p.add_argument("--min-coverage", type=float, default=0.99, help="keep models observed on this share of prompts (default 0.99)")
    p.add_argument("--plugin", nargs="*", default=[], help="modules to import first (they may call register_method)")
    p.add_argument("--json", dest="json_out", default=None, help="write the results as JSON here")
    p.add_argument("--plot", default=None, help="write the mean deferral curves (and each router's gain over ZeroRouter) to this PNG")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--ray", action="store_true", help="run the trials as Ray tasks (needs unirouter[ray]; starts a local Ray unless --ray-address)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to run the trials on (implies --ray), e.g. auto or ray://head:10001")
    p.add_argument("--workers", type=int, default=None, help="trials in flight at once on Ray (default: the cluster's CPUs)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; returns the exit code (0 ok, 2 bad input)."""
    import importlib
    import time

    from unirouter.evaluation.protocols import run_protocol
    from unirouter.exceptions import UniRouterError

    executor = None
    try:
        _check_outputs(args)  # before the trials: a run can take many minutes
        for mod in args.plugin or []:
            importlib.import_module(mod)
        if getattr(args, "ray", False) or getattr(args, "ray_address", None):
            from unirouter.evaluation.executors import RayExecutor

            executor = RayExecutor(address=args.ray_address, num_workers=args.workers)
        elif getattr(args, "workers", None) is not None:
            from unirouter.exceptions import InvalidInputError

            raise InvalidInputError("--workers needs --ray or --ray-address (trials run one after another in process).")
        grids: dict[str, list[int]] = {}
        if args.k_grid:
            grids["n_clusters"] = list(args.k_grid)
        if args.knn_grid:
            grids["n_neighbors"] = list(args.knn_grid)
        t0 = time.perf_counter()
        result = run_protocol(
            args.data,
            protocol=args.protocol,
            trials=args.trials,
            seed=args.seed,
            val_size=args.val_size,
            train_fraction=args.train_fraction,
            methods=args.methods,
            param_grids=grids or None,
            min_coverage=args.min_coverage,
            progress=not args.no_progress,
            executor=executor,
        )
    except (UniRouterError, ImportError) as e:
        print(f"unirouter evaluate: error: {e}", file=sys.stderr)
        return 2
    finally:
        if executor is not None:
            executor.shutdown()
    doc = result.to_json(command=_command(args))
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{doc['dataset']}: {doc['protocol']}, {doc['trials']} trials, {doc['n_items']} prompts, {doc['n_models']} models, {doc['seconds']:.0f} s")
    print(format_table(doc))
    paired = format_paired(doc)
    if paired:
        print()
        print(paired)
    losses = format_zero_losses(doc)
    if losses:
        print()
        print(losses)
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
        print(f"wrote {out}")
    if args.plot:
        plot_curves(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """--plot needs matplotlib, and both outputs need a writable folder: say so before the run."""
    import importlib.util
    import os

    from unirouter.exceptions import InvalidInputError

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        msg = "--plot needs matplotlib: pip install 'unirouter[plot]' (or drop --plot)."
        raise InvalidInputError(msg)
    for flag, value in (("--json", args.json_out), ("--plot", args.plot)):
        if value:
            parent = Path(value).absolute().parent
            while not parent.exists():
                parent = parent.parent
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                msg = f"{flag} {value}: cannot write there, {parent} is not a writable directory."
                raise InvalidInputError(msg)


def _command(args: argparse.Namespace) -> str:
    """The equivalent command line (recorded in the JSON)."""
    import shlex

    parts = ["unirouter", "evaluate", "--data", str(args.data), "--protocol", args.protocol, "--trials", str(args.trials), "--seed", str(args.seed)]
    if args.val_size is not None:
        parts += ["--val-size", str(args.val_size)]
    if abs(args.train_fraction - 2 / 3) > 1e-12:
        parts += ["--train-fraction", str(args.train_fraction)]
    parts += ["--methods", *args.methods]
    if args.k_grid:
        parts += ["--k-grid", *map(str, args.k_grid)]
    if args.knn_grid:
        parts += ["--knn-grid", *map(str, args.knn_grid)]
    if args.min_coverage != 0.99:
        parts += ["--min-coverage", str(args.min_coverage)]
    if args.plugin:
        parts += ["--plugin", *args.plugin]
    if args.json_out:
        parts += ["--json", str(args.json_out)]
    if args.plot:
        parts += ["--plot", str(args.plot)]
    if getattr(args, "ray", False) and not getattr(args, "ray_address", None):
        parts += ["--ray"]
    if getattr(args, "ray_address", None):
        parts += ["--ray-address", str(args.ray_address)]
    if getattr(args, "workers", None) is not None:
        parts += ["--workers", str(args.workers)]
    return " ".join(shlex.quote(p) for p in parts)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _pm(entry: dict[str, Any] | None, digits: int = 3, pct: bool = False) -> str:
    if not entry or entry.get("mean") is None or not math.isfinite(entry.get("mean", float("nan"))):
        return "–"
    m, se = entry["mean"], entry.get("se")
    f = 100.0 if pct else 1.0
    if se is None or not math.isfinite(se):
        return f"{m * f:.{digits}f}"
    return f"{m * f:.{digits}f} ± {2 * se * f:.{digits}f}"


def format_table(doc: dict[str, Any], *, markdown: bool = False) -> str:
    """The per-method table of an evaluation JSON document (mean ± 2 SE; columns in ``COLUMNS_HELP``)."""
    labels = doc.get("labels", {})
    header = ["method", "AUDC", "vs ZeroRouter (points)", "AUDC@50", "QNC", "QNC not reached", "peak"]
    rows = []
    for m, e in doc["methods"].items():
        label = labels.get(m, m)
        if "audc" not in e:  # a point (best single model)
            q, c = e.get("quality"), e.get("cost")
            rows.append([label, "(one model)", "", "", f"cost {_pm(c)}", "", f"quality {_pm(q)}"])
            continue
        n = doc.get("trials", 0)
        rows.append(
            [
                label,
                _pm(e.get("audc")),
                "–" if m == "zero" else _vs_zero(doc, m),
                _pm(e.get("audc50")),
                _pm(e.get("qnc")),
                f"{e.get('qnc_not_reached', 0)}/{n}",
                _pm(e.get("peak")),
            ]
        )
    return _render(header, rows, markdown=markdown)


def _vs_zero(doc: dict[str, Any], m: str) -> str:
    """100 x (AUDC - ZeroRouter's AUDC), paired per trial: mean ± 2 SE (mean difference if no trials kept)."""
    diffs = [
        t["metrics"][m]["audc"] - t["metrics"]["zero"]["audc"]
        for t in doc.get("per_trial") or []
        if "audc" in t["metrics"].get(m, {}) and "audc" in t["metrics"].get("zero", {})
    ]
    diffs = [d for d in diffs if d is not None and math.isfinite(d)]
    if not diffs:
        a, z = doc["methods"].get(m, {}).get("audc"), doc["methods"].get("zero", {}).get("audc")
        if not a or not z or a.get("mean") is None or z.get("mean") is None:
            return "–"
        return f"{100 * (a['mean'] - z['mean']):+.1f}"
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return f"{100 * mean:+.1f}"
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
    return f"{100 * mean:+.1f} ± {200 * se:.1f}"


def format_paired(doc: dict[str, Any], *, markdown: bool = False) -> str:
    """Paired comparisons of the UniRoute routers (and any extra method) against K-NN."""
    paired = doc.get("paired", {})
    labels = doc.get("labels", {})
    rows = []
    for key, val in paired.items():
        if not key.endswith("_audc_win_rate"):
            continue
        a, b = key[: -len("_audc_win_rate")].split("_vs_")
        if a in ("zero", "zero_val", "oracle", "clairvoyant_knn"):
            continue
        diff = paired.get(f"{a}_minus_{b}_audc")
        dq = paired.get(f"{a}_minus_{b}_qnc")
        p = paired.get(f"{a}_vs_{b}_sign_test_p")
        rows.append(
            [
                f"{labels.get(a, a)} vs {labels.get(b, b)}",
                f"{100 * val:.0f}%",
                _pm(diff, 2, pct=True),
                _pm(dq, 3),
                "–" if p is None else f"{p:.3g}",
            ]
        )
    if not rows:
        return ""
    header = ["pair (A vs B)", "A's AUDC win rate", "AUDC A − B (points)", "QNC A − B", "sign-test p"]
    return _render(header, rows, markdown=markdown)


def format_zero_losses(doc: dict[str, Any], *, markdown: bool = False) -> str:
    """How often each router's AUDC is below the prompt-blind ZeroRouter (S_val)'s, and by how much
    (needs ``zero_val`` among the methods)."""
    labels = doc.get("labels", {})
    rows = []
    for m, e in doc.get("methods", {}).items():
        z = e.get("loses_to_zero_val")
        if not z:
            continue
        rows.append(
            [labels.get(m, m), f"{100 * z['rate']:.0f}%", f"{z['mean_loss_when_losing']:.4f}", f"{z['worst_loss']:.4f}", f"{z['mean_diff']:+.4f}"]
        )
    if not rows:
        return ""
    header = ["method", "loses to ZeroRouter (S_val)", "mean AUDC loss when losing", "worst loss", "mean AUDC − ZeroRouter (S_val)"]
    return _render(header, rows, markdown=markdown)


def _render(header: list[str], rows: list[list[str]], *, markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def plot_curves(doc: dict[str, Any], path: str | Path, *, title: str | None = None) -> None:
    """Mean deferral curves over the trials (left) and each router's gain over ZeroRouter (right).

    Both cost axes are logarithmic: routers differ at low cost, which a linear axis squeezes against
    its left edge. Documents without mean curves (older results) fall back to the first trial's curves.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mean = doc.get("curves_mean") or {}
    grid_curves = bool(mean)
    curves = mean or {m: cv for m, cv in (doc.get("curves_trial0") or {}).items() if m != "best_single"}
    labels = doc.get("labels", {})
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(12, 4.8))
    xs = [np.asarray(cv["cost"], float) for cv in curves.values()]
    low = min((float(x[x > 0].min()) for x in xs if (x > 0).any()), default=1e-3)
    if grid_curves:  # the grid starts at 0: begin the axis where the first curve starts to rise
        starts = []
        for cv in curves.values():
            x, y = np.asarray(cv["cost"], float), np.asarray(cv["quality"], float)
            rising = np.nonzero(np.abs(y - y[0]) > 1e-9)[0]
            if rising.size:
                starts.append(float(x[max(rising[0] - 1, 1)]))
        low = min(starts, default=low)
    low = max(low / 1.5, 1e-4)
    grid = np.geomspace(low, 1.0, 300)

    def on_grid(cv: dict[str, Any]) -> np.ndarray:
        return np.interp(grid, np.asarray(cv["cost"], float), np.asarray(cv["quality"], float))

    zero = on_grid(curves["zero"]) if "zero" in curves else None
    off_scale = []  # the oracle's gain dwarfs the routers' differences: named, not drawn, on the right
    for m, cv in curves.items():
        style = ":" if m == "zero" else "--" if m in ("oracle", "clairvoyant_knn") else "-"
        y = on_grid(cv)
        (line,) = ax.plot(grid, y, style, label=labels.get(m, m), linewidth=1.6)
        if zero is not None and m == "oracle":
            off_scale.append(f"{labels.get(m, m)} up to {100 * float(np.max(y - zero)):+.0f}")
        elif zero is not None and m != "zero":
            dx.plot(grid, 100 * (y - zero), style, color=line.get_color(), label=labels.get(m, m), linewidth=1.6)
    best = doc.get("methods", {}).get("best_single") or {}
    bq, bc = (best.get("quality") or {}).get("mean"), (best.get("cost") or {}).get("mean")
    point0 = (doc.get("curves_trial0") or {}).get("best_single")
    if not grid_curves and point0:  # the first trial's curves go with the first trial's point
        bq, bc = point0["quality"][0], point0["cost"][0]
    if bq is not None and bc is not None and bc > 0:
        ax.plot([bc], [bq], "k*", markersize=12, label=labels.get("best_single", "best single model"))
        if zero is not None:
            dx.plot([bc], [100 * (bq - float(np.interp(bc, grid, zero)))], "k*", markersize=12)
    n = doc.get("trials", 0)
    what = f"mean over {n} trials" if grid_curves else "trial 0"
    xlabel = "cost per query, as a share of the most expensive model's (log scale)"
    for a in (ax, dx):
        a.set_xscale("log")
        a.set_xlim(low, 1.0)
        a.set_xlabel(xlabel)
        a.grid(alpha=0.3, which="both")
    ax.set_ylabel("quality on held-out test prompts (mean accuracy)")
    ax.set_title(title or f"{doc.get('dataset')}: deferral curves ({what}, {doc.get('protocol')})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    dx.axhline(0.0, color="grey", linewidth=1, linestyle=":")
    dx.set_ylabel("quality above ZeroRouter at the same cost (points)")
    dx.set_title("gain over ZeroRouter (random mix of the models)" + (f"\nnot shown (off the scale): {', '.join(off_scale)} points" if off_scale else ""), fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
