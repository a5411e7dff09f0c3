"""Helpers shared by the speed benchmarks: machine description, timing, tables, JSON results.

Every ``bench_*.py`` prints a table and writes ``benchmarks/results/speed_<name>.json`` with the keys
``title``, ``command``, ``date``, ``machine`` and ``section_markdown`` (read by ``make_report.py``),
plus its raw figures. Timings are medians of repeated runs: the machine is shared, so single runs
are noisy. Run long benchmarks under ``nice -n 5``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATASETS = ("mmlu_pro", "routerbench_subset", "zeroeval_math_code")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> str:
    """One line: CPU, cores, RAM, load when the benchmark started, library versions."""
    try:
        mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        mem = f"{mem_kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        mem = "RAM unknown"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    libs = ", ".join(f"{p} {_version(p)}" for p in ("numpy", "torch", "sentence-transformers", "onnxruntime"))
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores (shared with other jobs; 1-min load {load:.1f} at start), {mem}; "
        f"Python {platform.python_version()}, {libs}"
    )


def command() -> str:
    """The command line that reproduces this run."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        script = Path("benchmarks") / script.name
    return " ".join(["python", str(script), *map(shlex.quote, sys.argv[1:])])


def write_result(name: str, *, title: str, section_markdown: str, **raw: Any) -> Path:
    """Write ``results/speed_<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {
        "title": title,
        "command": command(),
        "date": _dt.date.today().isoformat(),
        "machine": machine(),
        "section_markdown": section_markdown,
        **raw,
    }
    path = RESULTS_DIR / f"speed_{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(out), indent=2) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def median_time(
    fn: Callable[[], Any], *, number: int = 1, repeat: int = 7, warmup: int = 1, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls, in seconds.

    ``clock=time.thread_time`` counts only this thread's CPU time: on a shared machine it leaves out
    the time the thread waited for a core (only meaningful for single-threaded code).
    """
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        t = clock()
        for _ in range(number):
            fn()
        runs.append((clock() - t) / number)
    return statistics.median(runs)


def percentiles(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of durations in seconds, returned in milliseconds."""
    a = np.asarray(values_s, dtype=np.float64) * 1e3
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "max_ms": float(a.max()),
        "n": int(a.size),
    }


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load_mixed_prompts(n: int, *, seed: int = 0, datasets: Sequence[str] = DATASETS) -> tuple[list[str], list[str]]:
    """``n`` real prompts drawn evenly (then at random) from the shared datasets, with their dataset name.

    Prompts are unique; the order is shuffled so short and long prompts alternate.
    """
    from unirouter import default_data_dir, load_dataset

    rng = np.random.default_rng(seed)
    pools: list[tuple[str, list[str]]] = []
    for name in datasets:
        ds = load_dataset(default_data_dir() / name, load_responses=False)
        pools.append((name, list(dict.fromkeys(ds.texts))))
    # Even shares; what a small dataset cannot supply goes to the others.
    caps = [len(pool) for _, pool in pools]
    per = [0] * len(pools)
    left = min(n, sum(caps))
    while left > 0:
        open_ = [i for i in range(len(pools)) if per[i] < caps[i]]
        share = max(1, left // len(open_))
        for i in open_:
            take = min(share, caps[i] - per[i], left)
            per[i] += take
            left -= take
    texts: list[str] = []
    names: list[str] = []
    for (name, pool), k in zip(pools, per):
        idx = rng.choice(len(pool), size=k, replace=False)
        texts += [pool[i] for i in idx]
        names += [name] * k
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [names[i] for i in order]


def rss_mib() -> float:
    """Resident set size of this process in MiB (from /proc, psutil as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def fmt_ms(ms: float) -> str:
    return f"{ms:,.1f}"


def cached_embeddings(texts: Sequence[str]) -> np.ndarray:
    """Default-MiniLM (torch) embeddings from the on-disk cache (``benchmarks/embed_datasets.py`` fills it)."""
    from unirouter import SentenceTransformerEmbedder
    from unirouter.embedding.embedders import default_cache_dir

    return SentenceTransformerEmbedder(cache=default_cache_dir()).embed(list(texts))


def make_embedder(spec: str, *, cache: Any = None) -> Any:
    """``"torch"``, ``"onnx"`` or ``"onnx-int8"``, optionally ``":tN"`` for N intra-op threads and
    ``":sN"`` for ``max_seq_length=N`` (e.g. ``"onnx-int8:t1"``)."""
    from unirouter import SentenceTransformerEmbedder

    backend, *opts = spec.split(":")
    kwargs: dict[str, Any] = {"cache": cache}
    for o in opts:
        if o.startswith("t"):
            kwargs["num_threads"] = int(o[1:])
        elif o.startswith("s"):
            kwargs["max_seq_length"] = int(o[1:])
        else:
            raise SystemExit(f"unknown embedder option {o!r} in {spec!r}")
    if backend == "onnx-int8":
        return SentenceTransformerEmbedder(backend="onnx", quantize=True, **kwargs)
    return SentenceTransformerEmbedder(backend=backend, **kwargs)


def fitted_router(
    dataset: str, embedder: Any, *, n_clusters: int = 20, method: str = "kmeans", seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """A UniRouter fitted on ``dataset``'s 60% training split (cached torch embeddings), with every
    model of near-complete coverage added from the 10% validation split; returns it and the splits."""
    import warnings

    from unirouter import UniRouter, UniRouterWarning, default_data_dir, load_dataset
    from unirouter.data.datasets import split_indices

    ds = load_dataset(default_data_dir() / dataset, load_responses=False)
    models = ds.complete_models(min_coverage=0.99)
    rows = ds.complete_rows(models)
    ds = ds.subset(rows, models=models)
    tr, va, te = split_indices(len(ds), (0.6, 0.1, 0.3), random_state=seed)
    train, val, test = ds.subset(tr), ds.subset(va), ds.subset(te)
    x_tr, x_va = cached_embeddings(train.texts), cached_embeddings(val.texts)
    router = UniRouter(n_clusters, method=method, random_state=seed, embedder=embedder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit_dataset(train, val, embeddings=x_tr, validation_embeddings=x_va)
    return router, {"train": train, "val": val, "test": test}
