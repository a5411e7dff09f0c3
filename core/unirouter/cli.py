"""The ``unirouter`` command: fit, add-model, route, info, evaluate, replay.

Every sub-command prints a clear message and exits non-zero on bad input (2 for usage and input
errors). Only the public API is used here.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unirouter.datasets import RoutingDataset, ValidationSet, load_dataset, split_indices
from unirouter.exceptions import InvalidInputError, UniRouterError

__all__ = ["main"]


def _read_prompts(path: Path) -> list[str]:
    """Prompts from a .txt (one per line), .jsonl/.jsonl.gz (field 'prompt' or 'text') or .csv file."""
    if not path.is_file():
        msg = f"prompts file {str(path)!r} does not exist."
        raise InvalidInputError(msg)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        vs = ValidationSet.from_jsonl(path, prompt_field=_jsonl_text_field(path))
        return vs.prompts
    if name.endswith(".csv"):
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        field = next((k for k in ("prompt", "text") if rows and k in rows[0]), None)
        if field is None:
            msg = f"{path} needs a 'prompt' (or 'text') column."
            raise InvalidInputError(msg)
        return [r[field] for r in rows]
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _jsonl_text_field(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    msg = f"{path}: the first row is not valid JSON ({e.msg})."
                    raise InvalidInputError(msg) from e
                if not isinstance(row, dict):
                    break
                for k in ("prompt", "text", "question"):
                    if k in row:
                        return k
                break
    msg = f"{path}: rows need a 'prompt' (or 'text'/'question') field."
    raise InvalidInputError(msg)


def _read_validation(path: Path) -> ValidationSet:
    name = path.name.lower()
    if name.endswith(".csv"):
        return ValidationSet.from_csv(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return ValidationSet.from_jsonl(path, prompt_field=_jsonl_text_field(path))
    return ValidationSet(_read_prompts(path))


def _read_numbers(path: Path, router: Any, column: str) -> np.ndarray:
    """One value per validation prompt: a .npy, a JSON list, a text file (one per line, empty =
    missing) or a CSV with a ``column`` column (aligned by an ``id`` column when present)."""
    if not path.is_file():
        msg = f"{column} file {str(path)!r} does not exist."
        raise InvalidInputError(msg)
    try:
        return _parse_numbers(path, router, column)
    except (ValueError, TypeError) as e:  # malformed JSON/CSV/.npy: say which file, never a traceback
        if isinstance(e, InvalidInputError):
            raise
        msg = f"{path}: could not read {column} values ({type(e).__name__}: {e})."
        raise InvalidInputError(msg) from e


def _parse_numbers(path: Path, router: Any, column: str) -> np.ndarray:
    name = path.name.lower()
    if name.endswith(".npy"):
        return np.load(path, allow_pickle=False).astype(float)
    if name.endswith(".json"):
        return np.array([np.nan if v is None else v for v in json.loads(path.read_text())], dtype=float)
    if name.endswith(".csv"):
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or column not in rows[0]:
            msg = f"{path} needs a {column!r} column."
            raise InvalidInputError(msg)
        values = [float(r[column]) if r[column] != "" else math.nan for r in rows]
        if "id" in rows[0] and router.validation_set_ is not None:
            by_id = {r["id"]: v for r, v in zip(rows, values)}
            missing = [i for i in router.validation_set_.ids if i not in by_id]
            if missing:
                msg = f"{path} has no row for validation ids {missing[:5]}{'...' if len(missing) > 5 else ''}."
                raise InvalidInputError(msg)
            values = [by_id[i] for i in router.validation_set_.ids]
        return np.asarray(values, dtype=float)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        try:
            out.append(float(s) if s else math.nan)
        except ValueError:
            msg = f"{path}: {s!r} is not a number (one value per line, empty line = missing)."
            raise InvalidInputError(msg) from None
    return np.asarray(out, dtype=float)


def cmd_fit(args: argparse.Namespace) -> int:
    from unirouter.embedders import SentenceTransformerEmbedder, default_cache_dir
    from unirouter.router import UniRouter

    embedder = SentenceTransformerEmbedder(cache=None if args.no_cache else default_cache_dir(), show_progress=not args.quiet)
    router = UniRouter(args.n_clusters, method=args.method, prior_strength=args.prior_strength, random_state=args.seed, embedder=embedder)
    if args.data:
        ds: RoutingDataset = load_dataset(args.data)
        models = ds.complete_models(min_coverage=args.min_coverage)
        if not models:
            msg = f"no model of {ds.name!r} has {args.min_coverage:.0%} of its results; lower --min-coverage."
            raise InvalidInputError(msg)
        tr, va = split_indices(len(ds), (1 - args.val_fraction, args.val_fraction), random_state=args.seed)
        if args.max_train and len(tr) > args.max_train:
            tr = np.sort(np.random.default_rng(args.seed).choice(tr, args.max_train, replace=False))
        router.fit_dataset(ds.subset(tr, models), ds.subset(va, models), add_models=not args.no_models)
        what = f"{len(tr)} training / {len(va)} validation prompts of {ds.name}, {len(router.models_)} models added"
    else:
        if not args.prompts or not args.validation:
            msg = "give --data DIR (a routing dataset) or both --prompts FILE and --validation FILE."
            raise InvalidInputError(msg)
        router.fit(_read_prompts(Path(args.prompts)), validation=_read_validation(Path(args.validation)))
        what = f"{args.prompts} with validation set {args.validation}"
    router.save(args.out, overwrite=args.overwrite)
    print(f"fitted {router.method} router (K={router.n_clusters}) on {what}; saved to {args.out}")
    return 0


def cmd_add_model(args: argparse.Namespace) -> int:
    from unirouter.router import UniRouter

    router = UniRouter.load(args.router)
    scores = _read_numbers(Path(args.correctness), router, "correctness")
    if (args.cost is None) == (args.costs is None):
        msg = "give exactly one of --cost X (per query) or --costs FILE (per validation prompt)."
        raise InvalidInputError(msg)
    cost: Any = args.cost if args.cost is not None else _read_numbers(Path(args.costs), router, "cost")
    profile = router.add_model(args.name, correctness=scores, cost=cost, replace=args.replace)
    router.save(args.router, overwrite=True)
    print(json.dumps(profile.summary(), indent=2))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from unirouter.embedders import SentenceTransformerEmbedder, default_cache_dir
    from unirouter.persistence import read_router_info
    from unirouter.router import UniRouter

    # Same embedding cache as `fit`, so prompts embedded before cost no model call.
    saved = read_router_info(args.router)["params"].get("embedder")
    embedder = None
    if not args.no_cache and (saved is None or isinstance(saved, str)):
        embedder = SentenceTransformerEmbedder(saved, cache=default_cache_dir())
    router = UniRouter.load(args.router, embedder=embedder)
    prompts = args.prompt if args.prompt != ["-"] else [line for line in sys.stdin.read().splitlines() if line.strip()]
    split = lambda s: None if s is None else [x for x in s.split(",") if x]  # noqa: E731
    decisions = router.route_batch(prompts, cost_weight=args.cost_weight, models=split(args.models), exclude=split(args.exclude))
    for p, d in zip(prompts, decisions):
        if args.json:
            print(json.dumps({"prompt": p, **d.to_dict()}))
        else:
            print(f"{d.model}\t(predicted error {d.chosen_predicted_error:.3f}, expected cost {d.chosen_expected_cost:.3g})\t{p[:60]}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from unirouter.persistence import read_router_info

    meta = read_router_info(args.router)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    params = meta["params"]
    print(f"router     {args.router}  ({meta['class']}, schema {meta['schema']})")
    print(f"method     {params.get('method', '-')}, K={params.get('n_clusters', '-')}, prior_strength={params.get('prior_strength', '-')}")
    print(f"embedder   {meta['embedder']['name']} (dim {meta['embedder']['dim']})")
    print(f"validation {meta['validation']['n']} prompts, fingerprint {meta['validation']['fingerprint']}")
    print(f"models     {len(meta['models'])}")
    for m in meta["models"]:
        print(f"  {m['name']:<40} cost/query {m['cost_per_query']:.4g}  added {m['created_at'][:19]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unirouter", description="Route each prompt to the cheapest LLM likely to answer it well (UniRoute).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a router and save it", description="Fit a UniRoute router on a routing dataset (train/validation split) or on a prompts file plus a validation file, and save it.")
    src = p.add_argument_group("input (one of)")
    src.add_argument("--data", help="routing dataset folder (with dataset.json); its models are added from their validation labels")
    src.add_argument("--prompts", help="unlabelled training prompts: .txt (one per line), .jsonl or .csv")
    p.add_argument("--validation", help="validation prompts (.jsonl/.csv with prompt[,reference,id]) when using --prompts")
    p.add_argument("--out", required=True, help="directory to save the router to")
    p.add_argument("--n-clusters", type=int, default=20, help="K (default 20)")
    p.add_argument("--method", choices=["kmeans", "learned"], default="kmeans")
    p.add_argument("--prior-strength", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of a dataset's prompts used for validation (default 0.1)")
    p.add_argument("--max-train", type=int, default=None, help="use at most this many training prompts")
    p.add_argument("--min-coverage", type=float, default=1.0, help="keep models with at least this share of results (default 1.0)")
    p.add_argument("--no-models", action="store_true", help="do not add the dataset's models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a router already saved at --out")
    p.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("add-model", help="add a model from its validation labels", description="Add (profile) a model from its correctness on the router's validation prompts.")
    p.add_argument("router", help="saved router directory (updated in place, atomically)")
    p.add_argument("name", help="model name")
    p.add_argument("--correctness", required=True, help="scores in [0,1], one per validation prompt: .txt, .json, .npy or .csv (column 'correctness', aligned by 'id' if present)")
    p.add_argument("--cost", type=float, help="cost per query")
    p.add_argument("--costs", help="per-prompt costs file (same formats; CSV column 'cost')")
    p.add_argument("--replace", action="store_true", help="replace an existing profile with this name")
    p.set_defaults(func=cmd_add_model)

    p = sub.add_parser("route", help="choose a model for prompts", description="Print the chosen model for each prompt.")
    p.add_argument("router", help="saved router directory")
    p.add_argument("prompt", nargs="+", help="prompt(s); '-' reads one prompt per line from stdin")
    p.add_argument("--cost-weight", type=float, default=None, help="lambda (default: the router's)")
    p.add_argument("--models", help="comma-separated models to choose among")
    p.add_argument("--exclude", help="comma-separated models never to choose")
    p.add_argument("--json", action="store_true", help="print the full decision as JSON lines")
    p.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("info", help="describe a saved router")
    p.add_argument("router", help="saved router directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    try:
        from unirouter import _evaluate_cli
    except ImportError:  # pragma: no cover - ships with the package
        _evaluate_cli = None
    if _evaluate_cli is not None:
        _evaluate_cli.register(sub)
    from unirouter import _replay_cli

    _replay_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UniRouterError as e:
        print(f"unirouter {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
