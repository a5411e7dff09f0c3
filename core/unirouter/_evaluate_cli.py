"""The ``unirouter evaluate`` sub-command (wired into ``unirouter.cli`` with :func:`register`).

    unirouter evaluate --data DIR [--protocol unseen-models|fixed-pool] [--trials N] [--seed S]
                       [--val-size N] [--methods m ...] [--k-grid K ...] [--knn-grid k ...]
                       [--json OUT] [--plot OUT.png] [--plugin module ...]
                       [--ray] [--ray-address ADDR] [--workers N]

Prints a table (AUDC, AUDC@50, QNC, peak, gap closed: mean +/- 2 standard errors over trials) and
the paired win rates of the UniRoute routers against K-NN. :func:`format_table` and
:func:`plot_curves` are shared with ``benchmarks/make_report.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from unirouter._protocols import DEFAULT_METHODS

__all__ = ["format_paired", "format_table", "plot_curves", "register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate routers and baselines on a routing dataset (method.md section 3)",
        description="Run the unseen-models (or fixed-pool) protocol on a routing dataset and print AUDC, AUDC@50, QNC, "
        "peak quality and gap closed (mean +/- 2 SE over trials), plus paired win rates against K-NN.",
    )
    p.add_argument("--data", required=True, help="dataset folder (with dataset.json)")
    p.add_argument("--protocol", default="unseen-models", choices=["unseen-models", "fixed-pool"])
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
    p.add_argument("--plot", default=None, help="write the deferral curves of the first trial to this PNG")
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

    from unirouter._protocols import run_protocol
    from unirouter.exceptions import UniRouterError

    executor = None
    try:
        for mod in args.plugin or []:
            importlib.import_module(mod)
        if getattr(args, "ray", False) or getattr(args, "ray_address", None):
            from unirouter.executors import RayExecutor

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
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
        print(f"wrote {out}")
    if args.plot:
        plot_curves(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0


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
    """The per-method table of an evaluation JSON document (mean ± 2 SE)."""
    labels = doc.get("labels", {})
    header = ["method", "AUDC", "AUDC@50", "QNC", "QNC not reached", "peak", "gap closed (vs clairv. K-NN)", "gap closed (vs oracle)"]
    rows = []
    for m, e in doc["methods"].items():
        label = labels.get(m, m)
        if "audc" not in e:  # a point (best single model)
            q, c = e.get("quality"), e.get("cost")
            rows.append([label, "(point)", "", f"cost {_pm(c)}", "", f"quality {_pm(q)}", "", ""])
            continue
        n = doc.get("trials", 0)
        rows.append(
            [
                label,
                _pm(e.get("audc")),
                _pm(e.get("audc50")),
                _pm(e.get("qnc")),
                f"{e.get('qnc_not_reached', 0)}/{n}",
                _pm(e.get("peak")),
                _gap(e, "gap_closed", "gap_closed_of_means"),
                _gap(e, "gap_closed_oracle", "gap_closed_oracle_of_means"),
            ]
        )
    return _render(header, rows, markdown=markdown)


def _gap(e: dict[str, Any], key: str, of_means: str) -> str:
    """Ratio of mean AUDC gains (robust), then the per-trial mean ± 2 SE in brackets."""
    v = e.get(of_means)
    head = "–" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.0f}%"
    per = _pm(e.get(key), 2)
    return head if per == "–" else f"{head} ({per})"


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
                _pm(diff, 4),
                _pm(dq, 3),
                "–" if p is None else f"{p:.3g}",
            ]
        )
    if not rows:
        return ""
    header = ["pair (A vs B)", "A's AUDC win rate", "AUDC A − B", "QNC A − B", "sign-test p"]
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
    """Deferral curves of every method in the first trial (best single model as a point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = doc.get("curves_trial0") or {}
    labels = doc.get("labels", {})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, cv in curves.items():
        if m == "best_single":
            ax.plot(cv["cost"], cv["quality"], "k*", markersize=12, label=labels.get(m, m))
            continue
        x = list(cv["cost"])
        y = list(cv["quality"])
        # flat left of the cheapest point and right of the last one (method.md 3.1)
        x = [0.0, *x, max(1.0, x[-1])]
        y = [y[0], *y, y[-1]]
        style = "--" if m in ("oracle", "clairvoyant_knn", "zero") else "-"
        ax.plot(x, y, style, label=labels.get(m, m), linewidth=1.6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("normalised cost (mean cost per query / largest single-model mean cost)")
    ax.set_ylabel("quality (mean accuracy on S_test)")
    ax.set_title(title or f"{doc.get('dataset')}: deferral curves, {doc.get('protocol')}, trial 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
