"""Where the routing time goes (issue 20): each embedder path against the bare-encoder floor, one run.

Usage: nice -n 5 python benchmarks/bench_embedding_speed.py [--n 60] [--rounds 3] [--threads 1,2]
       [--batch-n 120] [--cold-reps 3]

Everything is measured in this one process (cold start: fresh subprocesses), interleaved: for every
prompt of every round each path runs once, in a rotated order, so machine load hits all paths alike.
Figures are ratios to the floor, the bare ``SentenceTransformer.encode([p])`` of the old default
(torch). Paths:

* ``floor``      bare sentence-transformers MiniLM on torch (no unirouter)
* ``torch``      ``router.route(p)``, ``SentenceTransformerEmbedder(backend="torch")``
* ``auto``       ``router.route(p)``, the default ``backend="auto"`` (ONNX Runtime fp32 here)
* ``onnx-int8``  ``router.route(p)``, ``backend="onnx", quantize=True`` (own router: own identity)
* ``wordllama``  ``router.route(p)``, ``WordLlamaEmbedder()`` (own router), if installed
* ``semantic-router``  the peer: semantic-router's ``IndexedRouter`` with its ``LocalEncoder`` on the same
  MiniLM folder (sentence-transformers on torch), one route per UniRouter cluster holding the same 150
  validation prompts as utterances; ``router(p)``. Measured only if ``semantic_router`` is importable:
  it pulls ~25 API-client packages, so it lives in a throwaway environment layered over the project's
  venv, never in the venv itself::

    python3 -m venv --without-pip /tmp/srvenv
    echo <venv>/lib/python3.11/site-packages > /tmp/srvenv/lib/python3.11/site-packages/zz_main.pth
    <venv>/bin/pip install --target /tmp/srvenv/lib/python3.11/site-packages semantic-router
    # then delete from the target every distribution the venv already has, so the venv's versions win
    PYTHONPATH=core:. nice -n 5 /tmp/srvenv/bin/python benchmarks/bench_embedding_speed.py ...
* ``decision``   ``router.route(embedding=x)``: the routing alone

Per path: single-prompt p50/p90 on short and long prompts (long = MMLU-Pro, short = the other two
datasets) with 1 and 2 threads (memory cache off); a repeated text (second call / first call, with
the default in-memory cache); ``route_batch`` prompts/s against the same prompts one call at a time
and against the old batching (64 per batch, no token budget); cold start to the first decision in a
fresh process; the installed size of each backend's packages. The routers are UniRouter K=20 fitted
on 400 MMLU-Pro prompts with 150 validation prompts, every near-complete model added.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, load_mixed_prompts, table, write_result


def installed_mib(*dists: str) -> float:
    """Size on disk of the given distributions' files (their own files, not their dependencies)."""
    total = 0
    for d in dists:
        try:
            files = metadata.distribution(d).files or []
        except metadata.PackageNotFoundError:
            continue
        for f in files:
            p = Path(f.locate())
            if p.is_file():
                total += p.stat().st_size
    return total / 2**20


def _split(ds, models, n_train: int, n_val: int, seed: int):
    rows = ds.complete_rows(models)
    rng = np.random.default_rng(seed)
    pick = rng.choice(rows, size=n_train + n_val, replace=False)
    return pick[:n_train], pick[n_train:]


def validation_prompts(n_train: int = 400, n_val: int = 150, seed: int = 0) -> list[str]:
    """The validation prompts `fit_router` uses (same split), for the semantic-router peer's routes."""
    from unirouter import default_data_dir, load_dataset

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    _, va = _split(ds, ds.complete_models(min_coverage=0.99), n_train, n_val, seed)
    return [ds.texts[i] for i in va]


def semantic_router_peer(model_path: str, router) -> object:
    """semantic-router's IndexedRouter on the same MiniLM and the same validation prompts.

    One route per UniRouter cluster (the cluster a validation prompt weighs most), so both libraries
    compare a prompt against the same 150 labelled prompts; semantic-router answers with a route name,
    UniRouter with a model. Embedding dominates both, which is what this benchmark compares.
    """
    from semantic_router import IndexedRouter, Route
    from semantic_router.encoders.local import LocalEncoder

    texts = validation_prompts()
    labels = [f"cluster-{int(np.argmax(d.cluster_weights))}" for d in router.route_batch(texts)]
    routes = [Route(name=name, utterances=[t for t, lab in zip(texts, labels) if lab == name]) for name in sorted(set(labels))]
    return IndexedRouter(encoder=LocalEncoder(name=model_path, device="cpu"), routes=routes)


def fit_router(embedder, n_train: int = 400, n_val: int = 150, seed: int = 0):
    from unirouter import UniRouter, UniRouterWarning, ValidationSet, default_data_dir, load_dataset

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    models = ds.complete_models(min_coverage=0.99)
    tr, va = _split(ds, models, n_train, n_val, seed)
    col = [ds.model_names.index(m) for m in models]
    val = ValidationSet([ds.texts[i] for i in va])
    router = UniRouter(20, random_state=seed, embedder=embedder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit([ds.texts[i] for i in tr], validation=val)
        for m, j in zip(models, col):
            router.add_model(m, correctness=ds.correctness[va, j], cost=float(np.nanmean(ds.cost[va, j])) if ds.cost is not None else 0.0)
    return router


COLD = r"""
import sys, time
t0 = float(sys.argv[1])
from unirouter import UniRouter, SentenceTransformerEmbedder
kind, path = sys.argv[2], sys.argv[3]
if kind == "wordllama":
    from unirouter.embedding.embedders import WordLlamaEmbedder
    emb = WordLlamaEmbedder()
else:
    emb = SentenceTransformerEmbedder(backend=kind)
router = UniRouter.load(path, embedder=emb)
d = router.route("What is the capital of France? Answer with one word.")
print(time.time() - t0, getattr(emb, "backend_", kind))
"""


def cold_start(kind: str, path: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", COLD, repr(time.time()), kind, path], capture_output=True, text=True, env=env, check=True)
    secs, backend = out.stdout.split()[-2:]
    return float(secs), backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="prompts per length class (short, long)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch-n", type=int, default=120, help="prompts routed in one route_batch call")
    ap.add_argument("--cold-reps", type=int, default=3)
    ap.add_argument("--name", default="embedding", help="results/speed_<name>.json")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]

    # The library's own default when it loads torch (see SentenceTransformerEmbedder): idle OpenMP
    # threads sleep instead of spinning. Importing torch here first would otherwise skip it, and
    # spinning threads make 2-thread torch 10x slower on a shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from sentence_transformers import SentenceTransformer
    from unirouter import SentenceTransformerEmbedder
    from unirouter.embedding.embedders import WordLlamaEmbedder

    long_prompts, _ = load_mixed_prompts(args.n, seed=3, datasets=("mmlu_pro",))
    short_prompts, _ = load_mixed_prompts(args.n, seed=3, datasets=[d for d in DATASETS if d != "mmlu_pro"])
    batch_prompts, _ = load_mixed_prompts(args.batch_n, seed=4)

    try:
        import wordllama  # noqa: F401

        have_wordllama = True
    except ImportError:
        have_wordllama = False
    try:
        import semantic_router

        sr_version = semantic_router.__version__
        # Importing it configures the root logger at INFO (through a client SDK), which turns on
        # sentence-transformers' per-call progress bars for every torch path here; measure the
        # libraries, not that side effect.
        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    except ImportError:
        sr_version = None

    # One embedder per (path, threads); routers shared by embedder identity.
    floor_model = SentenceTransformer(SentenceTransformerEmbedder()._model_path(), device="cpu")
    tok = floor_model.tokenizer
    n_tokens = {k: int(np.median([len(tok(p, truncation=True, max_length=256)["input_ids"]) for p in v])) for k, v in (("short", short_prompts), ("long", long_prompts))}
    print("median tokens:", n_tokens, flush=True)

    def make(path: str, t: int):
        if path == "torch":
            return SentenceTransformerEmbedder(backend="torch", memory_cache=0)
        if path == "auto":
            return SentenceTransformerEmbedder(memory_cache=0, num_threads=t)
        if path == "onnx-int8":
            return SentenceTransformerEmbedder(backend="onnx", quantize=True, memory_cache=0, num_threads=t)
        return WordLlamaEmbedder(memory_cache=0)

    paths = ["torch", "auto", "onnx-int8"] + (["wordllama"] if have_wordllama else [])
    base_router = fit_router(SentenceTransformerEmbedder(memory_cache=0))
    routers = {"torch": base_router, "auto": base_router}
    routers["onnx-int8"] = fit_router(make("onnx-int8", 2))
    if have_wordllama:
        routers["wordllama"] = fit_router(make("wordllama", 2))
    sr = semantic_router_peer(SentenceTransformerEmbedder()._model_path(), base_router) if sr_version else None
    if sr is not None:
        sr("warm-up")
    print("routers fitted", "(semantic-router %s)" % sr_version if sr else "(no semantic-router)", flush=True)

    single: dict = {}
    batch: dict = {}
    for t in threads:
        torch.set_num_threads(t)
        embs = {p: make(p, t) for p in paths}
        for p in paths:
            embs[p].embed(["warm-up"])
        x_probe = embs["auto"].embed(["a probe prompt"])[0]

        def route_with(p: str, prompt: str, embs=embs):
            r = routers[p]
            r._embedder = embs[p]
            return r.route(prompt)

        calls = {
            "floor": lambda q: floor_model.encode([q], normalize_embeddings=True, convert_to_numpy=True),
            **{p: (lambda q, p=p: route_with(p, q)) for p in paths},
            **({"semantic-router": lambda q: sr(q)} if sr is not None else {}),
            "decision": lambda q: base_router.route(embedding=x_probe),
        }
        for cls, prompts in (("short", short_prompts), ("long", long_prompts)):
            times = {k: np.zeros((args.rounds, len(prompts))) for k in calls}
            names = list(calls)
            for r in range(args.rounds):
                for i, q in enumerate(prompts):
                    shift = (r * len(prompts) + i) % len(names)
                    for k in names[shift:] + names[:shift]:
                        s = time.perf_counter()
                        calls[k](q)
                        times[k][r, i] = time.perf_counter() - s
            per_prompt = {k: np.median(v, axis=0) for k, v in times.items()}  # median over rounds
            floor = per_prompt["floor"]
            for k, v in per_prompt.items():
                single[(k, cls, t)] = {
                    "p50_ms": 1e3 * float(np.percentile(v, 50)),
                    "p90_ms": 1e3 * float(np.percentile(v, 90)),
                    "ratio_p50": float(np.percentile(v, 50) / np.percentile(floor, 50)),
                    "paired_ratio_median": float(np.median(v / floor)),
                }
            print(t, cls, {k: round(single[(k, cls, t)]["p50_ms"], 2) for k in calls}, flush=True)

        # Batched routing: route_batch vs one at a time vs the old batching (64 per batch, no budget).
        for p in paths:
            r = routers[p]
            r._embedder = embs[p]
            e = embs[p]
            modes = {"route_batch": lambda: r.route_batch(batch_prompts), "one_by_one": lambda: [r.route(q) for q in batch_prompts]}
            if isinstance(e, SentenceTransformerEmbedder):

                def old(e=e, r=r):
                    e.max_batch_tokens, e.batch_size = 10**9, 64
                    try:
                        return r.route_batch(batch_prompts)
                    finally:
                        e.max_batch_tokens, e.batch_size = None, None

                modes["old_batching"] = old
            secs = {m: [] for m in modes}
            for rep in range(2):
                for m in (list(modes) if rep == 0 else list(modes)[::-1]):
                    s = time.perf_counter()
                    modes[m]()
                    secs[m].append(time.perf_counter() - s)
            for m, v in secs.items():
                batch[(p, m, t)] = len(batch_prompts) / min(v)
            print(t, p, {m: round(batch[(p, m, t)], 1) for m in modes}, flush=True)

    # Repeated text: the default in-memory cache (second call / first call).
    repeated = {}
    for p in ("torch", "auto"):
        e = SentenceTransformerEmbedder(backend=p)
        e.embed(["warm-up"])
        r = routers[p]
        r._embedder = e
        first, second = [], []
        for q in short_prompts[:20] + long_prompts[:20]:
            s = time.perf_counter()
            r.route(q)
            first.append(time.perf_counter() - s)
            s = time.perf_counter()
            r.route(q)
            second.append(time.perf_counter() - s)
        repeated[p] = {"first_ms": 1e3 * float(np.median(first)), "second_ms": 1e3 * float(np.median(second)), "ratio": float(np.median(np.array(second) / np.array(first)))}
    print("repeated", repeated, flush=True)

    # Cold start: fresh process -> import, load a saved router, first decision (ONNX export already cached).
    cold: dict[str, list[float]] = {}
    cold_backend = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = {}
        for p in ("torch", "auto") + (("wordllama",) if have_wordllama else ()):
            saved[p] = str(Path(tmp) / p)
            routers[p].save(saved[p])
        for rep in range(args.cold_reps):
            for p in saved:
                secs, backend = cold_start(p, saved[p])
                cold.setdefault(p, []).append(secs)
                cold_backend[p] = backend
        # One-time cost of the ONNX export on a machine that has none yet.
        env_dir = Path(tmp) / "fresh-cache"
        s = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "from unirouter import SentenceTransformerEmbedder as E; E(backend='onnx').embed(['x'])"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "UNIROUTER_CACHE_DIR": str(env_dir)},
            check=True,
            capture_output=True,
        )
        export_s = time.perf_counter() - s
    cold_med = {p: float(np.median(v)) for p, v in cold.items()}
    print("cold", cold_med, "export", export_s, flush=True)

    sizes = {
        "torch + transformers + sentence-transformers": installed_mib("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors"),
        "onnxruntime + onnx": installed_mib("onnxruntime", "onnx", "flatbuffers", "protobuf"),
        "wordllama": installed_mib("wordllama"),
    }

    # -- tables --
    labels = {"floor": "bare `SentenceTransformer.encode([p])` (floor)", "torch": "`route(p)`, backend='torch'", "auto": "`route(p)`, default backend='auto' (ONNX fp32)",
              "onnx-int8": "`route(p)`, backend='onnx', quantize=True", "wordllama": "`route(p)`, `WordLlamaEmbedder()`", "decision": "`route(embedding=x)` (the decision)",
              "semantic-router": f"semantic-router {sr_version} `IndexedRouter(LocalEncoder(MiniLM))(p)` (peer)"}
    rows = []
    for k in ["floor", *paths, *(["semantic-router"] if sr is not None else []), "decision"]:
        row = [labels[k]]
        for t in threads:
            for cls in ("short", "long"):
                s = single[(k, cls, t)]
                row.append(f"{s['p50_ms']:.2f} / {s['p90_ms']:.1f} ({s['ratio_p50']:.2f})")
        rows.append(row)
    header = ["per prompt: p50 / p90 ms (p50 ratio to floor)"] + [f"{cls}, {t} thr" for t in threads for cls in ("short", "long")]
    single_md = table(header, rows)
    brows = []
    for p in paths:
        row = [labels[p]]
        for t in threads:
            one = batch[(p, "one_by_one", t)]
            old = batch.get((p, "old_batching", t))
            row.append(f"{batch[(p, 'route_batch', t)]:.0f} vs {one:.0f}" + (f" (old {old:.0f})" if old else ""))
        brows.append(row)
    batch_md = table(["prompts/s: route_batch vs one at a time (old batching)"] + [f"{t} thr" for t in threads], brows)
    rep_md = table(["repeated text (default memory cache)", "first ms", "second ms", "second / first"],
                   [[labels[p], f"{v['first_ms']:.1f}", f"{v['second_ms']:.3f}", f"{v['ratio']:.4f}"] for p, v in repeated.items()])
    cold_md = table(["cold start to first decision (fresh process)", "median s", "backend"], [[p, f"{v:.2f}", cold_backend[p]] for p, v in cold_med.items()])
    size_md = table(["installed size", "MiB"], [[k, f"{v:.0f}"] for k, v in sizes.items()])
    md = (
        f"{args.n} short prompts (median {n_tokens['short']} tokens; routerbench_subset + zeroeval_math_code) and {args.n} long "
        f"(MMLU-Pro, median {n_tokens['long']} tokens), {args.rounds} rounds interleaved per prompt, memory cache off; "
        "ratios are to the bare-encoder floor measured in the same run. Routers: UniRouter K=20 on 400 MMLU-Pro prompts. "
        + (
            f"semantic-router {sr_version} (the peer) runs the same MiniLM on torch through its `LocalEncoder`, routes = {len(sr.routes)} UniRouter clusters holding the same 150 validation prompts; "
            "it is installed in a separate environment layered over the project's (see the script's docstring), not in the project's venv.\n\n"
            if sr is not None
            else "semantic-router is not measured in this run (not importable; see the script's docstring for the separate environment).\n\n"
        )
        + f"{single_md}\n\n{batch_md}\n\n"
        f"`route_batch` over {len(batch_prompts)} mixed prompts (best of 2); old batching = 64 prompts per batch padded to the longest.\n\n"
        f"{rep_md}\n\n{cold_md}\n\nOne-time ONNX export on an empty cache (fresh process, includes loading torch): {export_s:.1f} s.\n\n{size_md}\n"
    )
    print(md)
    write_result(
        args.name,
        title=f"Embedding speed: each path against the bare-encoder floor, {args.threads} thread(s) (issue 20)",
        section_markdown=md,
        single={f"{k}|{c}|{t}": v for (k, c, t), v in single.items()},
        batch={f"{p}|{m}|{t}": v for (p, m, t), v in batch.items()},
        repeated=repeated,
        cold_start_s=cold,
        cold_backend=cold_backend,
        onnx_export_s=export_s,
        installed_mib=sizes,
        median_tokens=n_tokens,
        semantic_router_version=sr_version,
        n=args.n,
        rounds=args.rounds,
        batch_n=len(batch_prompts),
    )


if __name__ == "__main__":
    main()
