"""Replay logged traffic through a router: what would each policy have chosen, spent and scored?

Users want proof of savings on *their* traffic before switching. :func:`replay` reads a log of
prompts (JSONL or Parquet, a file or a folder of such files; optionally the model that answered
and what it cost), embeds and routes every prompt under one or several :class:`ReplayPolicy`
(a cost weight, or a budget per prompt calibrated once before the replay), and writes

* every decision (one row per prompt and policy: chosen model, expected quality = 1 - predicted
  error, expected cost, and the logged model and cost beside them), JSONL or Parquet by suffix;
* a summary: share of calls per model, mean expected quality and total expected spend per policy,
  against the logged baseline (the logged spend, and the router's expected quality and cost of
  the logged model on the same prompts).

Two engines, same results: in process, streaming the log in batches (small logs); or on Ray Data
(``ray=True``) where a pool of actors each holding the embedder and the router embeds and routes
batches (``map_batches``) while the driver streams results to disk, so the log is never held in
memory. Ray is an optional extra and is imported only then.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from unirouter.exceptions import DatasetError, InvalidInputError, PersistenceError

__all__ = ["ReplayPolicy", "replay", "log_files"]

_JSONL = (".jsonl", ".ndjson", ".json")
_PARQUET = (".parquet", ".pq")


class ReplayPolicy(BaseModel):
    """A routing policy to replay: a cost weight, or a mean cost budget per prompt.

    ``budget`` is turned into a cost weight once, before the replay, with
    :func:`unirouter.calibrate_cost_weight` on a calibration sample (the router's validation
    prompts, or the first prompts of the log), so every prompt of the log sees the same weight.
    Neither given: the router's own ``cost_weight``. ``models`` restricts the candidates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    cost_weight: float | None = None
    budget: float | None = None
    models: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ReplayPolicy:
        if self.cost_weight is not None and self.budget is not None:
            msg = f"policy {self.name!r}: give cost_weight or budget, not both."
            raise ValueError(msg)
        for key in ("cost_weight", "budget"):
            v = getattr(self, key)
            if v is not None and (not math.isfinite(v) or v < 0):
                msg = f"policy {self.name!r}: {key} must be a finite number >= 0. Got {v!r}."
                raise ValueError(msg)
        return self


# -- reading the log --------------------------------------------------------------------------------
def log_files(path: str | Path) -> tuple[list[Path], str]:
    """The files of a log (a file, or a folder of files of one format, in name order) and the format."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _JSONL + _PARQUET)
        if not files:
            msg = f"log folder {p} holds no .jsonl or .parquet file."
            raise DatasetError(msg, path=p)
    elif p.is_file():
        files = [p]
    else:
        msg = f"log {p} does not exist."
        raise DatasetError(msg, path=p)
    kinds = {"parquet" if f.suffix.lower() in _PARQUET else "jsonl" if f.suffix.lower() in _JSONL else None for f in files}
    if None in kinds:
        msg = f"log {p}: give a .jsonl (one JSON object per line) or .parquet file."
        raise DatasetError(msg, path=p)
    if len(kinds) > 1:
        msg = f"log folder {p} mixes JSONL and Parquet files; keep one format per folder."
        raise DatasetError(msg, path=p)
    return files, kinds.pop()


def _iter_log(files: Sequence[Path], fmt: str, fields: dict[str, str | None], batch_size: int) -> Iterator[dict[str, list[Any]]]:
    """Stream the log as column batches ``{key: values}`` for the fields it has (prompt required)."""
    wanted = {k: v for k, v in fields.items() if v is not None}
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for f in files:
            pf = pq.ParquetFile(f)
            names = set(pf.schema_arrow.names)
            if wanted["prompt"] not in names:
                msg = f"log {f} has no column {wanted['prompt']!r} (columns: {sorted(names)}); set prompt_field."
                raise DatasetError(msg, path=f)
            cols = {k: v for k, v in wanted.items() if v in names}
            for rb in pf.iter_batches(batch_size=batch_size, columns=list(dict.fromkeys(cols.values()))):
                yield {k: rb.column(v).to_pylist() for k, v in cols.items()}
        return
    for f in files:
        batch: dict[str, list[Any]] = {k: [] for k in wanted}
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    msg = f"log {f} line {lineno} is not JSON ({e.msg}); the log must hold one JSON object per line."
                    raise DatasetError(msg, path=f) from None
                if not isinstance(rec, dict) or wanted["prompt"] not in rec:
                    msg = f"log {f} line {lineno} has no field {wanted['prompt']!r}; set prompt_field."
                    raise DatasetError(msg, path=f)
                for k, v in wanted.items():
                    batch[k].append(rec.get(v))
                if len(batch["prompt"]) >= batch_size:
                    yield batch
                    batch = {k: [] for k in wanted}
        if batch["prompt"]:
            yield batch


# -- routing one batch (the same code in process and in Ray actors) --------------------------------------
class _BatchRouter:
    """Embeds and routes a column batch under every policy; one row out per row in."""

    def __init__(self, router: Any, embedder: Any, plan: list[tuple[float, np.ndarray]]) -> None:
        self.router = router
        self.embedder = embedder
        self.plan = plan  # (cost weight, pool columns) per policy

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        from unirouter.routers.base import _argmin_rows

        prompts = [str(p) if p is not None else "" for p in batch["prompt"]]
        bad = [i for i, p in enumerate(prompts) if not p.strip()]
        if bad:
            msg = f"the log has {len(bad)} empty prompt(s) in a batch (first at offset {bad[0]} of the batch); drop or fill them."
            raise DatasetError(msg)
        x = np.asarray(self.embedder.embed(prompts), dtype=np.float32)
        gamma, cost, names = self.router.predict(embeddings=x)
        scale = self.router._pool.tie_scale
        n = len(prompts)
        out: dict[str, np.ndarray] = {}
        for p, (lam, cols) in enumerate(self.plan):
            pick = cols[_argmin_rows(gamma[:, cols], cost[:, cols], lam, scale)]
            out[f"choice_{p}"] = pick.astype(np.int64)
            out[f"quality_{p}"] = 1.0 - gamma[np.arange(n), pick]
            out[f"cost_{p}"] = cost[np.arange(n), pick]
        index = {m: j for j, m in enumerate(names)}
        logged = batch.get("model")
        lj = np.array([index.get(m, -1) if isinstance(m, str) else -1 for m in logged], dtype=np.int64) if logged is not None else np.full(n, -1)
        ok = lj >= 0
        out["logged_index"] = lj
        out["logged_quality"] = np.where(ok, 1.0 - gamma[np.arange(n), np.where(ok, lj, 0)], np.nan)
        out["logged_expected_cost"] = np.where(ok, cost[np.arange(n), np.where(ok, lj, 0)], np.nan)
        out["logged_model"] = np.array(["" if m is None else str(m) for m in logged], dtype=object) if logged is not None else np.full(n, "", dtype=object)
        logged_cost = batch.get("cost")
        out["logged_cost"] = np.array([np.nan if c is None else float(c) for c in logged_cost], dtype=np.float64) if logged_cost is not None else np.full(n, np.nan)
        ids = batch.get("id")
        out["id"] = np.array(["" if v is None else str(v) for v in ids], dtype=object) if ids is not None else np.full(n, "", dtype=object)
        return out


class _Summary:
    """Running totals per policy and for the logged baseline (nothing per prompt is kept)."""

    def __init__(self, names: list[str], policies: list[ReplayPolicy], lams: list[float]) -> None:
        self.names, self.policies, self.lams = names, policies, lams
        m, p = len(names), len(policies)
        self.n = 0
        self.counts = np.zeros((p, m), dtype=np.int64)
        self.q_sum = np.zeros(p)
        self.c_sum = np.zeros(p)
        self.q_known = np.zeros(p)  # on prompts whose logged model the router knows
        self.c_costed = np.zeros(p)  # on prompts with a logged cost
        self.logged_counts: dict[str, int] = {}
        self.n_known = 0
        self.n_costed = 0
        self.logged_spend = 0.0
        self.logged_q = 0.0
        self.logged_ec = 0.0

    def add(self, out: dict[str, np.ndarray]) -> None:
        lj = np.asarray(out["logged_index"])
        known = lj >= 0
        lc = np.asarray(out["logged_cost"], dtype=np.float64)
        costed = np.isfinite(lc)
        self.n += lj.size
        for p in range(len(self.policies)):
            ch, q, c = np.asarray(out[f"choice_{p}"]), np.asarray(out[f"quality_{p}"]), np.asarray(out[f"cost_{p}"])
            self.counts[p] += np.bincount(ch, minlength=len(self.names))
            self.q_sum[p] += q.sum()
            self.c_sum[p] += c.sum()
            self.q_known[p] += q[known].sum()
            self.c_costed[p] += c[costed].sum()
        for m in out["logged_model"]:
            if m:
                self.logged_counts[m] = self.logged_counts.get(m, 0) + 1
        self.n_known += int(known.sum())
        self.n_costed += int(costed.sum())
        self.logged_spend += float(lc[costed].sum())
        self.logged_q += float(np.asarray(out["logged_quality"])[known].sum())
        self.logged_ec += float(np.asarray(out["logged_expected_cost"])[known].sum())

    def to_dict(self) -> dict[str, Any]:
        n = max(self.n, 1)
        logged = {
            "prompts_with_model": int(sum(self.logged_counts.values())),
            "share": {m: c / n for m, c in sorted(self.logged_counts.items())},
            "prompts_with_cost": self.n_costed,
            "spend": self.logged_spend if self.n_costed else None,
            "prompts_with_known_model": self.n_known,
            "expected_quality": self.logged_q / self.n_known if self.n_known else None,
            "expected_spend": self.logged_ec if self.n_known else None,
        }
        policies = {}
        for p, pol in enumerate(self.policies):
            entry: dict[str, Any] = {
                "cost_weight": self.lams[p],
                "budget": pol.budget,
                "models": list(pol.models) if pol.models else None,
                "share": {m: int(c) / n for m, c in zip(self.names, self.counts[p]) if c},
                "expected_quality": float(self.q_sum[p] / n),
                "expected_spend": float(self.c_sum[p]),
                "expected_cost_per_prompt": float(self.c_sum[p] / n),
            }
            vs: dict[str, Any] = {}
            if self.n_known:
                vs["quality_change"] = float(self.q_known[p] / self.n_known - logged["expected_quality"])
                vs["expected_spend_of_logged_models"] = self.logged_ec
            if self.n_costed:
                vs["spend_on_costed_prompts"] = float(self.c_costed[p])
                vs["saving"] = float(self.logged_spend - self.c_costed[p])
                vs["saving_share"] = float(1 - self.c_costed[p] / self.logged_spend) if self.logged_spend > 0 else None
            entry["vs_logged"] = vs
            policies[pol.name] = entry
        return {"prompts": self.n, "models": list(self.names), "policies": policies, "logged": logged}


class _DecisionWriter:
    """Decisions to JSONL or Parquet (by suffix), written to a temporary file and renamed at the end."""

    def __init__(self, path: Path, names: list[str], policies: list[ReplayPolicy]) -> None:
        self.path, self.names, self.policies = path, names, policies
        self.fmt = "parquet" if path.suffix.lower() in _PARQUET else "jsonl"
        self.tmp = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: Any = None
        self._fh: Any = None
        if self.fmt == "jsonl":
            self._fh = open(self.tmp, "w", encoding="utf-8")
        self.row = 0

    def write(self, out: dict[str, np.ndarray]) -> None:
        n = len(out["logged_index"])
        rows = np.arange(self.row, self.row + n)
        self.row += n
        cols: dict[str, list[Any]] = {k: [] for k in ("row", "id", "policy", "model", "expected_quality", "expected_cost", "logged_model", "logged_cost")}
        lc = [None if not np.isfinite(c) else float(c) for c in np.asarray(out["logged_cost"], dtype=np.float64)]
        for p, pol in enumerate(self.policies):
            cols["row"] += rows.tolist()
            cols["id"] += [str(v) or None for v in out["id"]]
            cols["policy"] += [pol.name] * n
            cols["model"] += [self.names[j] for j in out[f"choice_{p}"]]
            cols["expected_quality"] += np.asarray(out[f"quality_{p}"], dtype=float).tolist()
            cols["expected_cost"] += np.asarray(out[f"cost_{p}"], dtype=float).tolist()
            cols["logged_model"] += [str(m) or None for m in out["logged_model"]]
            cols["logged_cost"] += lc
        if self.fmt == "jsonl":
            keys = list(cols)
            for vals in zip(*cols.values()):
                self._fh.write(json.dumps(dict(zip(keys, vals))) + "\n")
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [("row", pa.int64()), ("id", pa.string()), ("policy", pa.string()), ("model", pa.string()), ("expected_quality", pa.float64()),
             ("expected_cost", pa.float64()), ("logged_model", pa.string()), ("logged_cost", pa.float64())]
        )
        table = pa.Table.from_pydict(cols, schema=schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, schema)
        self._writer.write_table(table)

    def close(self, *, ok: bool) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._writer is not None:
            self._writer.close()
        if ok:
            if self.fmt == "parquet" and self._writer is None:  # empty log: still a valid file
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"row": pa.array([], pa.int64())}), self.tmp)
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# -- the replay ------------------------------------------------------------------------------------------
def replay(
    router: Any,
    log: str | Path,
    *,
    policies: Sequence[ReplayPolicy] | None = None,
    output: str | Path | None = None,
    summary_path: str | Path | None = None,
    overwrite: bool = False,
    prompt_field: str = "prompt",
    model_field: str | None = "model",
    cost_field: str | None = "cost",
    id_field: str | None = "id",
    embedder: Any = None,
    batch_size: int = 256,
    calibration_prompts: int | None = None,
    ray: bool = False,
    num_actors: int = 1,
    ray_address: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Route every prompt of a log under each policy; write the decisions; return the summary.

    Parameters
    ----------
    router : a fitted router with models registered
    log : path
        JSONL (one object per line) or Parquet file, or a folder of such files (read in name order).
    policies : list of ReplayPolicy, optional
        Default: one policy ``"default"`` at the router's ``cost_weight``.
    output : path, optional
        Where to write the decisions (``.parquet`` / ``.pq`` for Parquet, else JSONL). Refused if it
        exists, unless ``overwrite=True``; written to a temporary name and renamed when complete.
    summary_path : path, optional
        Also write the summary here as JSON (same overwrite rule).
    prompt_field, model_field, cost_field, id_field : str
        Field names in the log; the last three are optional in the log (``None``: ignore).
    embedder : Embedder, optional
        Default: the router's embedder, without its on-disk cache (a replayed prompt is embedded once;
        caching millions of one-off prompts would only fill the disk).
    batch_size : int, default=256
        Prompts per embedding batch (and per Ray Data batch).
    calibration_prompts : int, optional
        Budgets are calibrated on the first ``calibration_prompts`` prompts of the log; default: on
        the router's validation prompts.
    ray : bool, default=False
        Run on Ray Data: ``map_batches`` over a pool of ``num_actors`` actors (one CPU each), each
        holding the embedder and the router; the driver streams results in log order. Starts a
        local Ray (shut down at the end) unless one is running or ``ray_address`` is given.

    Returns
    -------
    dict
        ``{"prompts", "models", "policies": {name: {share, expected_quality, expected_spend, ...,
        "vs_logged": {...}}}, "logged": {...}, "seconds", "engine"}``.
    """
    t0 = time.perf_counter()
    router._check_fitted()
    names = list(router.models_)
    if not names:
        msg = "the router has no model registered; add models before replaying traffic."
        raise InvalidInputError(msg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be an int >= 1. Got {batch_size!r}."
        raise InvalidInputError(msg)
    if isinstance(num_actors, bool) or not isinstance(num_actors, int) or num_actors < 1:
        msg = f"num_actors must be an int >= 1. Got {num_actors!r}."
        raise InvalidInputError(msg)
    pols = list(policies) if policies else [ReplayPolicy(name="default")]
    if len({p.name for p in pols}) != len(pols):
        msg = f"policy names must be distinct. Got {[p.name for p in pols]}."
        raise InvalidInputError(msg)
    files, fmt = log_files(log)
    outs = [Path(p) for p in (output, summary_path) if p is not None]
    for p in outs:
        if p.exists() and not overwrite:
            msg = f"{p} exists; pass overwrite=True (--overwrite) or choose another path."
            raise PersistenceError(msg, path=p)
        if p.resolve() in {f.resolve() for f in files}:
            msg = f"{p} is the log itself; choose another output path."
            raise PersistenceError(msg, path=p)
    if embedder is None:
        embedder = router.embedder_
        if getattr(embedder, "cache", None) is not None:
            embedder = copy.copy(embedder)
            embedder.cache = None
    fields = {"prompt": prompt_field, "model": model_field, "cost": cost_field, "id": id_field}

    # Policies -> (cost weight, candidate columns), once, before any prompt is routed.
    sample = None
    if calibration_prompts is not None and any(p.budget is not None for p in pols):
        sample = []
        for b in _iter_log(files, fmt, fields, batch_size):
            sample += [str(x) for x in b["prompt"]]
            if len(sample) >= calibration_prompts:
                break
        sample = sample[:calibration_prompts]
    sample_x = np.asarray(embedder.embed(sample), dtype=np.float32) if sample else None
    plan, lams = [], []
    for pol in pols:
        cols = np.arange(len(names)) if pol.models is None else np.asarray(router._columns(router._pool, pol.models, None))
        if pol.budget is not None:
            from unirouter.routers.calibration import calibrate_cost_weight

            lam = calibrate_cost_weight(router, embeddings=sample_x, budget=pol.budget, models=pol.models) if sample_x is not None else calibrate_cost_weight(router, budget=pol.budget, models=pol.models)
        elif pol.cost_weight is not None:
            lam = float(pol.cost_weight)
        else:
            lam = router._default_cost_weight()
        plan.append((float(lam), cols))
        lams.append(float(lam))

    summary = _Summary(names, pols, lams)
    writer = _DecisionWriter(Path(output), names, pols) if output is not None else None
    ok = False
    try:
        if ray:
            batches = _ray_batches(router, embedder, plan, files, fmt, fields, batch_size, num_actors, ray_address, progress)
        else:
            mapper = _BatchRouter(router, embedder, plan)
            batches = (mapper(b) for b in _iter_log(files, fmt, fields, batch_size))
        bar = None
        if progress and not ray:
            from tqdm.auto import tqdm

            bar = tqdm(desc="replay", unit="prompt")
        for out in batches:
            summary.add(out)
            if writer is not None:
                writer.write(out)
            if bar is not None:
                bar.update(len(out["logged_index"]))
        if bar is not None:
            bar.close()
        ok = True
    finally:
        if writer is not None:
            writer.close(ok=ok)
    doc = summary.to_dict()
    doc["engine"] = f"ray ({num_actors} actor{'s' if num_actors > 1 else ''})" if ray else "in-process"
    doc["seconds"] = round(time.perf_counter() - t0, 3)
    if summary_path is not None:
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_path).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return doc


class _RayRouteActor:
    """A Ray Data actor: holds one embedder and one router copy, routes one batch per call."""

    def __init__(self, router: Any, embedder: Any, plan: list[tuple[float, np.ndarray]], fields: dict[str, str | None]) -> None:
        self.mapper = _BatchRouter(router, embedder, plan)
        self.fields = fields

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cols = {k: (batch[v].tolist() if v in batch else None) for k, v in self.fields.items() if v is not None}
        return self.mapper({k: v for k, v in cols.items() if v is not None})


def _ray_batches(
    router: Any, embedder: Any, plan: list[tuple[float, np.ndarray]], files: list[Path], fmt: str, fields: dict[str, str | None],
    batch_size: int, num_actors: int, address: str | None, progress: bool,
) -> Iterator[dict[str, np.ndarray]]:
    from unirouter.evaluation.executors import import_ray

    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    import ray.data

    # Reading reserves no CPU: the actors hold one each, and a read task waiting for a CPU they hold
    # would stall the pipeline (seen with 2 actors on 2 CPUs). Reading is light next to embedding.
    # Fail early, with the file and line, on a log without the prompt field (not deep in an actor).
    next(_iter_log(files, fmt, fields, 1), None)
    paths = [str(f) for f in files]
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True  # decisions come back in log order, as in process
    ctx.enable_progress_bars = progress
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            have = set(pq.read_schema(files[0]).names)
            columns = [v for v in fields.values() if v is not None and v in have]
            ds = ray.data.read_parquet(paths, columns=columns, num_cpus=0)
        else:
            ds = ray.data.read_json(paths, lines=True, num_cpus=0)
        ds = ds.map_batches(
            _RayRouteActor,
            fn_constructor_args=(router, embedder, plan, fields),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=num_actors),
            num_cpus=1,
            udf_modifying_row_count=False,
        )
        try:
            yield from ds.iter_batches(batch_size=batch_size, batch_format="numpy")
        except Exception as e:  # Ray wraps an actor's error; surface ours (e.g. an empty prompt) as is
            ours = _our_error(e)
            if ours is None:
                raise
            raise ours from None
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:  # leave a runtime the caller started alone; shut down the one started here
            ray.shutdown()


def _our_error(e: BaseException) -> BaseException | None:
    """The UniRouterError an actor raised, from Ray's wrappers.

    Ray Data re-wraps a failed batch in ``UserCodeException`` and keeps the original only as text in
    the remote traceback, so the error is rebuilt from its class name and message when the object
    itself did not travel.
    """
    import re

    from unirouter import exceptions as errors

    seen = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, errors.UniRouterError):
            return x
        x = getattr(x, "cause", None) or x.__cause__
    found = re.findall(r"unirouter\.exceptions\.(\w+): (.+)", str(e))
    if not found:
        return None
    name, msg = found[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.UniRouterError)):
        return None
    try:
        return cls(msg.strip())
    except TypeError:  # an error class with required extra fields
        return errors.InvalidInputError(msg.strip())
