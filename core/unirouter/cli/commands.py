"""The ``unirouter`` command: fit, add-model, validation-set, route, info, evaluate.

Every sub-command checks what it can before the slow part (loading the embedding model, embedding),
prints results on stdout and context on stderr (``--quiet`` keeps only results and warnings), and
exits 2 with one ``unirouter CMD: error: ...`` line on bad input, worded with the command's flags.
A closed output pipe (``| head``) ends the command quietly with exit code 141.
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

from unirouter.data.datasets import RoutingDataset, ValidationSet, load_dataset, split_indices
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


# -- shared helpers --------------------------------------------------------------------------------
# The library speaks Python (``overwrite=True``); the command line has flags. Messages that reach the
# user through the CLI are reworded with this table (the library's own messages stay as they are).
_CLI_WORDING = (
    ("pass overwrite=True", "pass --overwrite"),
    ("pass replace=True", "pass --replace"),
    ("add one with add_model(...)", "add one with `unirouter add-model`"),
    ("add it with add_model(..., cost=...)", "fit with --no-models and add it with `unirouter add-model ... --cost X`"),
    ("after applying models=/exclude=", "after applying --models/--exclude"),
    ("drop that model with models=", "leave that model out with --exclude"),
    ("Remove duplicates (ValidationSet.deduplicate helps)", "Remove the repeated prompts from the validation file"),
    ("set prompt_field= to use another", "the CLI reads 'prompt', 'text' or 'question'"),
    ("on this sample", "on the router's validation prompts"),
    ("raise the share", "raise --max-top-share"),
)
_CLI_LEADS = (("budget ", "--budget "), ("quality floor ", "--quality-floor "), ("max_top_share ", "--max-top-share "))


def _cli_wording(message: str) -> str:
    for python, cli in _CLI_WORDING:
        message = message.replace(python, cli)
    for python, cli in _CLI_LEADS:  # calibration messages start with the target's Python name
        if message.startswith(python):
            message = cli + message[len(python) :]
    return message


def _say(args: argparse.Namespace, message: str) -> None:
    """Progress and context on stderr (stdout stays for results); silenced by --quiet."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _number(value: float | None, flag: str, *, low: float = 0.0, high: float | None = None, strict_low: bool = False) -> None:
    """Range check of a numeric flag, worded with the flag's name (before anything expensive runs)."""
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if strict_low else value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"> {low:g}" if strict_low else f">= {low:g}"
        if high is not None:
            bounds = f"in {'(' if strict_low else '['}{low:g}, {high:g}]"
        msg = f"{flag} must be a finite number {bounds}. Got {value!r}."
        raise InvalidInputError(msg)


def _split_names(value: str | None) -> list[str] | None:
    return None if value is None else [x.strip() for x in value.split(",") if x.strip()]


def _embedder(saved: Any, *, no_cache: bool, quiet: bool) -> Any:
    """The router's embedder with the shared on-disk cache, so prompts embedded before cost nothing."""
    from unirouter.embedding.embedders import SentenceTransformerEmbedder, default_cache_dir

    if saved is not None and not isinstance(saved, str):
        return None
    return SentenceTransformerEmbedder(saved, cache=None if no_cache else default_cache_dir(), show_progress=not quiet)


def _uncached(embedder: Any, texts: Sequence[str]) -> list[str]:
    """The distinct texts the embedder will have to compute (not yet in its cache)."""
    from unirouter.embedding.embedders import EmbeddingCache

    distinct = list(dict.fromkeys(texts))
    cache = getattr(embedder, "cache", None)
    if cache is None:
        return distinct
    keys = [EmbeddingCache.key(t) for t in distinct]
    found = cache.get_many(embedder.name, keys)
    return [t for t, k in zip(distinct, keys) if k not in found]


def _announce_embedding(args: argparse.Namespace, embedder: Any, texts: Sequence[str], *, sample: int = 48) -> None:
    """Say how many prompts will be embedded and, when that is more than a few seconds, about how long.

    The speed is measured on this machine by embedding a spread-out sample of the missing prompts first
    (they land in the cache, so nothing is wasted); time scales with text length, so the estimate is
    in characters per second.
    """
    import time

    if getattr(args, "quiet", False):
        return
    missing = _uncached(embedder, texts)
    n_distinct = len(set(texts))
    if not missing:
        _say(args, f"all {n_distinct} distinct prompts are in the embedding cache; no embedding needed.")
        return
    cached = n_distinct - len(missing)
    head = f"embedding {len(missing)} prompt{'s' if len(missing) > 1 else ''}" + (f" ({cached} already cached)" if cached else "")
    if getattr(embedder, "cache", None) is None or len(missing) <= 4 * sample:
        _say(args, head + "...")
        return
    _say(args, head + "; measuring the speed on a sample first...")
    pick = [missing[i] for i in np.linspace(0, len(missing) - 1, sample).astype(int)]
    embedder.model  # noqa: B018 - load the model outside the timed part
    t0 = time.perf_counter()
    embedder.embed(pick)
    rate = sum(map(len, pick)) / max(time.perf_counter() - t0, 1e-6)
    left = sum(map(len, missing)) - sum(map(len, pick))
    _say(
        args,
        f"about {_duration(left / rate)} for the remaining {len(missing) - sample} prompts on this machine "
        f"({sample * rate / sum(map(len, pick)):.0f} prompts/s); --max-train N embeds fewer training prompts.",
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- fit -------------------------------------------------------------------------------------------
def _check_out(out: str, *, overwrite: bool) -> Path:
    """Refuse an --out that cannot be written, before any work (never replace a non-router folder)."""
    import os

    dest = Path(out)
    if dest.exists():
        if not overwrite:
            msg = f"--out {dest} already exists; pass --overwrite to replace the router saved there, or choose another --out."
            raise InvalidInputError(msg)
        if not (dest.is_dir() and (dest / "router.json").is_file()):
            msg = f"--out {dest} exists and is not a saved unirouter router; refusing to overwrite it."
            raise InvalidInputError(msg)
    parent = dest.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        msg = f"--out {dest}: cannot create it, {parent} is not a writable directory."
        raise InvalidInputError(msg)
    return dest


def cmd_fit(args: argparse.Namespace) -> int:
    from unirouter.routers.uniroute import UniRouter

    # 1. Everything that can be checked without embedding: flags, --out, the input files.
    if args.n_clusters < 1:
        raise InvalidInputError(f"--n-clusters must be an int >= 1. Got {args.n_clusters}.")
    _number(args.prior_strength, "--prior-strength")
    if not 0 < args.val_fraction < 1:
        raise InvalidInputError(f"--val-fraction must lie strictly between 0 and 1 (the rest is for training). Got {args.val_fraction!r}.")
    _number(args.min_coverage, "--min-coverage", high=1.0)
    if args.max_train is not None and args.max_train < 1:
        raise InvalidInputError(f"--max-train must be an int >= 1. Got {args.max_train}.")
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be an int >= 0. Got {args.seed}.")
    if args.method == "learned" and not args.data:
        raise InvalidInputError("--method learned trains on the labels of known models: it needs --data DIR.")
    out = _check_out(args.out, overwrite=args.overwrite)

    dropped: list[tuple[str, str]] = []
    if args.data:
        if args.prompts or args.validation:
            raise InvalidInputError("give either --data DIR or --prompts FILE with --validation FILE, not both.")
        ds: RoutingDataset = load_dataset(args.data)
        models = ds.complete_models(min_coverage=args.min_coverage)
        if not models:
            msg = f"no model of {ds.name!r} has {args.min_coverage:.0%} of its results; lower --min-coverage."
            raise InvalidInputError(msg)
        if not args.no_models and ds.cost is None:
            no_cost = [m for j, m in enumerate(ds.model_names) if m in models and not (ds.models and ds.models[j].get("mean_cost_usd"))]
            if no_cost:
                msg = f"dataset {ds.name!r} has no cost for models {no_cost[:5]}; fit with --no-models and add them with `unirouter add-model ... --cost X`."
                raise InvalidInputError(msg)
        tr, va = split_indices(len(ds), (1 - args.val_fraction, args.val_fraction), random_state=args.seed)
        if args.max_train and len(tr) > args.max_train:
            tr = np.sort(np.random.default_rng(args.seed).choice(tr, args.max_train, replace=False))
        train, val = ds.subset(tr, models), ds.subset(va, models)
        keep = set(ValidationSet.deduplicate(val.texts))
        first: dict[str, str] = {}
        for i, (pid, text) in enumerate(zip(val.ids, val.texts)):
            if i in keep:
                first[text] = pid
            else:
                dropped.append((pid, first[text]))
        train_texts, val_texts = train.texts, [t for i, t in enumerate(val.texts) if i in keep]
        what = f"of {ds.name}, {len(models)} models" + (" (not added: --no-models)" if args.no_models else " added")
    else:
        if not args.prompts or not args.validation:
            msg = "give --data DIR (a routing dataset) or both --prompts FILE and --validation FILE."
            raise InvalidInputError(msg)
        train_texts = _read_prompts(Path(args.prompts))
        if args.max_train and len(train_texts) > args.max_train:
            rows = np.sort(np.random.default_rng(args.seed).choice(len(train_texts), args.max_train, replace=False))
            train_texts = [train_texts[i] for i in rows]
        vs = _read_validation(Path(args.validation))
        val_texts = vs.prompts
        what = f"from {args.prompts}, validation set {args.validation}"
    if args.n_clusters > len(train_texts):
        msg = f"--n-clusters {args.n_clusters} is larger than the number of training prompts ({len(train_texts)}); lower --n-clusters."
        raise InvalidInputError(msg)
    if dropped:
        ids = ", ".join(f"{a!r} (same text as {b!r})" for a, b in dropped[:5]) + (" ..." if len(dropped) > 5 else "")
        _say(args, f"validation: {len(dropped)} of {len(dropped) + len(val_texts)} prompts repeat an earlier prompt's text and were dropped "
                   f"(the router keeps {len(val_texts)}): {ids}.")
    _say(args, f"training prompts: {len(train_texts)}; validation prompts kept: {len(val_texts)}; K = {args.n_clusters}.")
    if args.n_clusters > len(val_texts):
        _say(args, f"note: {len(val_texts)} validation prompts for {args.n_clusters} clusters; some clusters will fall back to each model's overall error.")

    # 2. The expensive part, announced.
    embedder = _embedder(None, no_cache=args.no_cache, quiet=args.quiet)
    _announce_embedding(args, embedder, [*train_texts, *val_texts])
    router = UniRouter(args.n_clusters, method=args.method, prior_strength=args.prior_strength, random_state=args.seed, embedder=embedder)
    if args.data:
        router.fit_dataset(train, val, add_models=not args.no_models)
    else:
        router.fit(train_texts, validation=vs)
    router.save(out, overwrite=args.overwrite)
    dup = f" ({len(dropped)} repeated validation prompt{'s' if len(dropped) > 1 else ''} dropped)" if dropped else ""
    print(f"fitted {router.method} router (K={router.n_clusters}) on {len(train_texts)} training / {router.n_validation_} validation prompts{dup} {what}; saved to {out}")
    _say(args, f"next: `unirouter info {out}` shows each model and the cost/quality operating points.")
    return 0


# -- add-model, validation-set -------------------------------------------------------------------
def cmd_add_model(args: argparse.Namespace) -> int:
    from unirouter.exceptions import DuplicateModelError
    from unirouter.persistence import read_router_info
    from unirouter.routers.uniroute import UniRouter

    meta = read_router_info(args.router)
    if not args.replace and any(m["name"] == args.name for m in meta["models"]):
        msg = f"a model named {args.name!r} is already registered with {args.router}; pass --replace to replace its profile."
        raise DuplicateModelError(msg, model=args.name)
    if (args.cost is None) == (args.costs is None):
        msg = "give exactly one of --cost X (per query) or --costs FILE (per validation prompt)."
        raise InvalidInputError(msg)
    router = UniRouter.load(args.router)
    scores = _read_numbers(Path(args.correctness), router, "correctness")
    cost: Any = args.cost if args.cost is not None else _read_numbers(Path(args.costs), router, "cost")
    profile = router.add_model(args.name, correctness=scores, cost=cost, replace=args.replace)
    router.save(args.router, overwrite=True)
    print(json.dumps(profile.summary(), indent=2))
    return 0


def cmd_validation_set(args: argparse.Namespace) -> int:
    """Write the prompts a new model must answer (id, prompt, reference), in the router's order."""
    from unirouter.persistence import load_router

    vs = load_router(args.router).validation_set_
    if vs is None:
        msg = f"{args.router} was saved without its validation prompts (fitted from embeddings only)."
        raise InvalidInputError(msg)
    rows = []
    for i, p in enumerate(vs.prompts):
        row: dict[str, Any] = {"id": vs.ids[i], "prompt": p}
        if vs.references is not None:
            row["reference"] = vs.references[i]
        rows.append(row)
    if args.out is None:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 0
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        msg = f"--out {out} already exists; pass --overwrite to replace it."
        raise InvalidInputError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.lower().endswith(".csv"):
        with open(out, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        with open(out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    _say(args, f"wrote {len(rows)} validation prompts to {out}: answer each, grade it in [0, 1], then "
               f"`unirouter add-model {args.router} NAME --correctness FILE --cost X` (CSV rows are matched by 'id').")
    return 0


# -- route -----------------------------------------------------------------------------------------
_TARGETS = ("budget", "quality_floor", "max_top_share")


def cmd_route(args: argparse.Namespace) -> int:
    from unirouter._validation import check_prompts
    from unirouter.routers.calibration import calibrate_cost_weight, routing_summary
    from unirouter.exceptions import UnknownModelError
    from unirouter.persistence import read_router_info
    from unirouter.routers.uniroute import UniRouter

    # Checks that need no embedding model (loading it costs seconds).
    meta = read_router_info(args.router)
    names = [m["name"] for m in meta["models"]]
    if not names:
        msg = f"{args.router} has no models yet; add one with `unirouter add-model {args.router} NAME --correctness FILE --cost X`."
        raise UnknownModelError(msg)
    models, exclude = _split_names(args.models), _split_names(args.exclude)
    for n in [*(models or []), *(exclude or [])]:
        if n not in names:
            raise UnknownModelError(f"model {n!r} is not registered with {args.router}; registered: {names}.", model=n)
    candidates = [n for n in (models or names) if n not in set(exclude or [])]
    if not candidates:
        raise UnknownModelError("no candidate model is left after applying --models/--exclude.")
    _number(args.cost_weight, "--cost-weight")
    _number(args.budget, "--budget", strict_low=True)
    _number(args.quality_floor, "--quality-floor", high=1.0)
    _number(args.max_top_share, "--max-top-share", high=1.0)
    target = {k: getattr(args, k) for k in _TARGETS if getattr(args, k) is not None}
    if target and not meta["validation"].get("has_prompts", True):
        msg = f"{args.router} was saved without its validation prompts, so --budget/--quality-floor/--max-top-share cannot be calibrated; use --cost-weight."
        raise InvalidInputError(msg)
    if not args.prompt or args.prompt == ["-"]:
        if not args.prompt and sys.stdin.isatty():
            raise InvalidInputError("give the prompts as arguments or pipe them on stdin (one per line).")
        prompts = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not prompts:
            raise InvalidInputError("stdin held no prompt (one prompt per line; blank lines are skipped).")
    else:
        prompts = check_prompts(args.prompt)

    router = UniRouter.load(args.router, embedder=_embedder(meta["params"].get("embedder"), no_cache=args.no_cache, quiet=True))
    lam = args.cost_weight
    if target:
        vs = router.validation_set_
        x = router.embedder_.embed(vs.prompts)
        lam = calibrate_cost_weight(router, embeddings=x, models=candidates, **target)
        gamma, cost, cols = router.predict(embeddings=x, models=candidates)
        s = routing_summary(gamma, cost, lam)
        top = int(np.argmax(cost.mean(axis=0)))
        (kind, value), = target.items()
        _say(
            args,
            f"cost weight {lam:.4g} meets --{kind.replace('_', '-')} {value:g} on the router's {len(vs)} validation prompts: "
            f"predicted quality {1 - s['error']:.3f}, expected cost {s['cost']:.3g}/query, "
            f"{s['shares'][top]:.0%} of prompts to the most expensive model ({cols[top]}).",
        )
    decisions = router.route_batch(prompts, cost_weight=lam, models=candidates if models or exclude else None)
    for p, d in zip(prompts, decisions):
        quality, cost_of = 1.0 - d.chosen_predicted_error, d.chosen_expected_cost
        if args.json:
            rec = {"prompt": p, **d.to_dict(), "predicted_quality": round(quality, 6), "chosen_expected_cost": cost_of}
            if target:
                rec["calibrated_for"] = target
            sys.stdout.write(json.dumps(rec) + "\n")
        else:
            sys.stdout.write(f"{d.model}\tpredicted quality {quality:.3f}\texpected cost {cost_of:.3g}\t{_one_line(p)[:60]}\n")
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- info ------------------------------------------------------------------------------------------
def operating_points(router: Any, embeddings: np.ndarray, *, n_points: int = 7) -> list[dict[str, Any]]:
    """A few cost weights spread evenly in predicted quality, with what each gives on ``embeddings``.

    Rows run from lambda = 0 (best predicted quality) to the cheapest routing. Each row's lambda is
    the calibrated one (:func:`unirouter.calibrate_cost_weight`, ``quality_floor``) for an evenly spaced
    quality level, rounded to two significant digits and re-evaluated there, so every row is exactly
    what ``--cost-weight`` gives on these prompts.
    """
    from unirouter.routers.calibration import calibrate_cost_weight, routing_summary

    gamma, cost, names = router.predict(embeddings=embeddings)
    # quality of the cheapest routing: each prompt's cheapest model (ties: the better one)
    low_cost = cost <= cost.min(axis=1, keepdims=True) * (1 + 1e-12)
    q_low = float(np.mean(1.0 - np.where(low_cost, gamma, np.inf).min(axis=1)))
    q_best = 1.0 - routing_summary(gamma, cost, 0.0)["error"]
    lams = [0.0]
    for floor in np.linspace(q_best, q_low, n_points - 1)[1:-1]:
        lam = calibrate_cost_weight(router, embeddings=embeddings, quality_floor=float(min(max(floor, 0.0), 1.0)))
        lams.append(float(f"{lam:.2g}") if lam > 0 else 0.0)
    # the cheapest routing, at the smallest weight reaching it (the quality floor would give the largest)
    lam = calibrate_cost_weight(router, embeddings=embeddings, budget=float(cost.min(axis=1).mean()) * (1 + 1e-9))
    if lam > 0:  # rounded up, so the row still reaches the cheapest routing
        unit = 10.0 ** (math.floor(math.log10(lam)) - 1)
        lam = float(f"{math.ceil(lam / unit * (1 - 1e-12)) * unit:.2g}")
    lams.append(lam)
    out: list[dict[str, Any]] = []
    for lam in lams:
        s = routing_summary(gamma, cost, lam)
        if out and abs(out[-1]["cost_per_query"] - s["cost"]) < 1e-15 and abs(out[-1]["predicted_quality"] - (1 - s["error"])) < 1e-12:
            continue
        most = int(np.argmax(s["shares"]))
        out.append(
            {
                "cost_weight": lam,
                "predicted_quality": 1.0 - s["error"],
                "cost_per_query": s["cost"],
                "most_chosen": names[most],
                "most_chosen_share": float(s["shares"][most]),
            }
        )
    return out


def cmd_info(args: argparse.Namespace) -> int:
    from unirouter.persistence import load_router, read_router_info

    meta = read_router_info(args.router)
    router = load_router(args.router, embedder=_embedder(meta["params"].get("embedder"), no_cache=False, quiet=True))
    profiles = router.profiles_
    points: list[dict[str, Any]] = []
    vs = router.validation_set_
    if profiles and vs is not None:
        missing = _uncached(router.embedder_, vs.prompts)
        if missing:
            _say(args, f"embedding {len(missing)} validation prompts for the operating points (cached for next time)...")
        points = operating_points(router, router.embedder_.embed(vs.prompts))
    summaries = [{**p.summary(), "per_prompt_costs": p.costs is not None} for p in profiles.values()]
    if args.json:
        print(json.dumps({**meta, "model_summaries": summaries, "operating_points": points}, indent=2))
        return 0
    params = meta["params"]
    print(f"router     {args.router}  ({meta['class']}, schema {meta['schema']})")
    print(f"method     {params.get('method', '-')}, K={params.get('n_clusters', '-')}, prior_strength={params.get('prior_strength', '-')}")
    print(f"embedder   {meta['embedder']['name']} (dim {meta['embedder']['dim']})")
    print(f"validation {meta['validation']['n']} prompts, fingerprint {meta['validation']['fingerprint']}"
          + ("" if vs is None else f"  (list them: unirouter validation-set {args.router})"))
    print(f"models     {len(summaries)}" + ("" if summaries else f"  (add one: unirouter add-model {args.router} NAME --correctness FILE --cost X)"))
    if summaries:
        width = max(len(s["name"]) for s in summaries)
        print(f"  {'model':<{width}}  {'val. accuracy':>13}  {'mean cost/query':>15}  added")
        for s in sorted(summaries, key=lambda s: s["cost_per_query"]):
            print(f"  {s['name']:<{width}}  {s['validation_accuracy']:>13.3f}  {s['cost_per_query']:>15.4g}  {s['created_at'][:10]}")
    if points:
        print()
        print(f"operating points (router's predictions on its {len(vs)} validation prompts; "
              "pass a row's cost weight as --cost-weight, or its cost as --budget):")
        print(f"  {'--cost-weight':>13}  {'pred. quality':>13}  {'cost/query':>10}  most chosen model")
        for p in points:
            lam = p["cost_weight"]
            shown = f"{lam:.0f}" if lam >= 10 else f"{lam:.2g}"
            print(f"  {shown:>13}  {p['predicted_quality']:>13.3f}  {p['cost_per_query']:>10.3g}  {p['most_chosen']} ({p['most_chosen_share']:.0%})")
    return 0


# -- parser and entry point ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unirouter",
        description="Route each prompt to the cheapest LLM likely to answer it well (UniRoute).",
        epilog="Typical loop: fit -> info (pick a cost weight or budget) -> route; new model: validation-set -> "
        "grade its answers -> add-model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "fit",
        help="fit a router and save it",
        formatter_class=raw,
        description="Fit a UniRoute router on a routing dataset (train/validation split) or on a prompts file plus a\n"
        "validation file, and save it. Flags, --out and the input files are checked before anything is embedded;\n"
        "the number of prompts to embed and an estimate of the time are printed first (embeddings are cached\n"
        "on disk, so a second fit on the same prompts is fast). Repeated validation prompts are dropped and reported.",
    )
    src = p.add_argument_group("input (one of)")
    src.add_argument("--data", help="routing dataset folder (with dataset.json); its models are added from their validation labels")
    src.add_argument("--prompts", help="unlabelled training prompts: .txt (one per line), .jsonl or .csv")
    p.add_argument("--validation", help="validation prompts (.jsonl/.csv with prompt[,reference,id]) when using --prompts")
    p.add_argument("--out", required=True, help="directory to save the router to (must not exist unless --overwrite)")
    p.add_argument("--n-clusters", type=int, default=20, help="K (default 20)")
    p.add_argument("--method", choices=["kmeans", "learned"], default="kmeans")
    p.add_argument("--prior-strength", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of a dataset's prompts used for validation (default 0.1)")
    p.add_argument("--max-train", type=int, default=None, help="use at most this many training prompts (faster: fewer to embed)")
    p.add_argument("--min-coverage", type=float, default=1.0, help="keep models with at least this share of results (default 1.0)")
    p.add_argument("--no-models", action="store_true", help="do not add the dataset's models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a router already saved at --out")
    p.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    p.add_argument("--quiet", action="store_true", help="print only the result line (and warnings)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "add-model",
        help="add a model from its validation labels",
        description="Add (profile) a model from its quality on the router's validation prompts. "
        "`unirouter validation-set ROUTER --out val.csv` writes those prompts (id, prompt, reference).",
    )
    p.add_argument("router", help="saved router directory (updated in place, atomically)")
    p.add_argument("name", help="model name")
    p.add_argument(
        "--correctness",
        required=True,
        help="scores in [0,1], one per validation prompt in the order of `unirouter validation-set`: .txt, .json, .npy "
        "or .csv (column 'correctness', matched by 'id' if present); empty = unknown",
    )
    p.add_argument("--cost", type=float, help="cost per query")
    p.add_argument("--costs", help="per-prompt costs file (same formats; CSV column 'cost')")
    p.add_argument("--replace", action="store_true", help="replace an existing profile with this name")
    p.set_defaults(func=cmd_add_model)

    p = sub.add_parser(
        "validation-set",
        help="write the validation prompts a new model must answer",
        description="Write the router's validation prompts (id, prompt, reference) as JSON lines on stdout, or to --out "
        "(.csv or .jsonl). Run a new model on each, grade its answers in [0, 1], and pass the scores to `add-model`.",
    )
    p.add_argument("router", help="saved router directory")
    p.add_argument("--out", help="file to write (.csv or .jsonl); default: JSON lines on stdout")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_validation_set)

    p = sub.add_parser(
        "route",
        help="choose a model for prompts",
        formatter_class=raw,
        description="Print the chosen model for each prompt, with its predicted quality and expected cost.\n\n"
        "Each call loads the embedding model (several seconds): for many prompts, pass them together as\n"
        "arguments, or pipe them on stdin, one per line, in one call.\n\n"
        "The cost weight (lambda) trades quality for cost; its useful scale depends on the costs' units, so\n"
        "rather than guessing it, give a target: --budget (mean cost per query), --quality-floor or\n"
        "--max-top-share, calibrated on the router's validation prompts. `unirouter info ROUTER` lists\n"
        "operating points (cost weight -> predicted quality, cost per query).",
    )
    p.add_argument("router", help="saved router directory")
    p.add_argument("prompt", nargs="*", help="prompt(s); none or '-' reads one prompt per line from stdin")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--cost-weight", type=float, default=None, help="lambda (default: the router's, 0 = best predicted quality)")
    target.add_argument("--budget", type=float, default=None, metavar="COST_PER_QUERY", help="target mean cost per query (e.g. USD): the cost weight is calibrated to it")
    target.add_argument("--quality-floor", type=float, default=None, metavar="Q", help="lowest acceptable mean predicted quality in [0, 1]: the cheapest routing meeting it")
    target.add_argument("--max-top-share", type=float, default=None, metavar="SHARE", help="at most this share of prompts to the most expensive model")
    p.add_argument("--models", help="comma-separated models to choose among")
    p.add_argument("--exclude", help="comma-separated models never to choose")
    p.add_argument("--json", action="store_true", help="print the full decision as JSON lines")
    p.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    p.add_argument("--quiet", action="store_true", help="print only the decisions")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser(
        "info",
        help="describe a saved router: models, accuracy, cost, operating points",
        description="Describe a saved router: each model's validation accuracy and mean cost per query, and a table of "
        "operating points (cost weight -> predicted quality and cost per query on the validation prompts).",
    )
    p.add_argument("router", help="saved router directory")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_info)

    try:
        from unirouter.cli import evaluate as _evaluate_cli
    except ImportError:  # pragma: no cover - ships with the package
        _evaluate_cli = None
    if _evaluate_cli is not None:
        _evaluate_cli.register(sub)
    from unirouter.integration import savings

    savings.register(sub)
    from unirouter.cli import replay as _replay_cli

    _replay_cli.register(sub)
    return parser


def _discard_stdout() -> None:
    """After a closed pipe (``| head``): point stdout at /dev/null so the exit flush stays silent."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    import os
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    # The embedding model's "Loading weights" bar says nothing to a CLI user; --quiet hides every bar.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if getattr(args, "quiet", False) or getattr(args, "no_progress", False):
        os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm reads it when imported (after this point)

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings API
        print(f"unirouter {args.command}: warning: {_cli_wording(str(message))}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _discard_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command cut off by `head`
    except UniRouterError as e:
        print(f"unirouter {args.command}: error: {_cli_wording(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable input, full disk, no permission: the system's words, one line
        print(f"unirouter {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
