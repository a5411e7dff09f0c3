"""End-to-end overhead of ``router.route(prompt)`` with the default embedder (cache disabled).

Usage: python benchmarks/bench_overhead.py [--n 1000] [--embedders torch,onnx,onnx-int8] [--dataset mmlu_pro]

* ``import unirouter`` time (fresh interpreters, median of 5) and whether it pulled in torch;
* cold start in a fresh process per embedder: load a saved router, first ``route(prompt)`` (loads the
  embedding model), second call; for ONNX embedders also the one-time export (+ quantisation);
* warm: p50/p95/p99 of ``route(prompt)`` over ``--n`` real prompts mixed evenly from the three shared
  datasets (short ARC/GSM8K questions to long MMLU-Pro questions with ten options), no embedding
  cache; and the decision alone (``route(embedding=x)``) as a share of the embedding time.
Embedder specs: ``torch``, ``onnx``, ``onnx-int8`` with optional ``:tN`` (N threads) and ``:sN``
(max_seq_length N). The router (K=20, every near-complete model of ``--dataset`` added) is fitted
on cached torch embeddings. Targets: p50 <= 10 ms, p99 <= 25 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_embeddings, fitted_router, fmt_ms, load_mixed_prompts, make_embedder, percentiles, table, write_result

HERE = Path(__file__).resolve().parent

IMPORT_SNIPPET = (
    "import sys, time; t, c = time.perf_counter(), time.process_time(); import unirouter; "
    "dt, dc = time.perf_counter() - t, time.process_time() - c; "
    "print(dt, dc, int('torch' in sys.modules), int('sentence_transformers' in sys.modules))"
)

COLD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {here!r})
from _common import make_embedder
from unirouter import UniRouter
t1 = time.perf_counter()
emb = make_embedder({spec!r}, cache=None)
if {onnx_dir!r}:
    emb.onnx_dir = {onnx_dir!r}
router = UniRouter.load({path!r}, embedder=emb)
t2 = time.perf_counter()
d = router.route({prompt!r})
t3 = time.perf_counter()
router.route({prompt2!r})
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_router_s": t2 - t1, "first_route_s": t3 - t2, "second_route_s": t4 - t3, "model": d.model}}))
"""


def import_time(n: int = 5) -> dict[str, float]:
    runs, cpu = [], []
    for _ in range(n):
        out = subprocess.run([sys.executable, "-c", IMPORT_SNIPPET], capture_output=True, text=True, check=True)
        dt, dc, torch_loaded, st_loaded = out.stdout.split()
        runs.append(float(dt))
        cpu.append(float(dc))
    return {
        "median_s": statistics.median(runs),
        "median_cpu_s": statistics.median(cpu),
        "runs_s": runs,
        "torch_imported": bool(int(torch_loaded)),
        "st_imported": bool(int(st_loaded)),
    }


def cold_start(spec: str, router_dir: str, prompts: list[str], onnx_dir: str = "") -> dict[str, float]:
    code = COLD_SNIPPET.format(here=str(HERE), spec=spec, path=router_dir, prompt=prompts[0], prompt2=prompts[1], onnx_dir=onnx_dir)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm(router, spec: str, prompts: list[str], sources: list[str], x_ref: np.ndarray) -> dict:
    emb = make_embedder(spec, cache=None)
    router._embedder = emb  # route with this embedder (the router was fitted on torch embeddings)
    router.embedder = emb
    router.route(prompts[0])  # load the model
    router.route(prompts[1])
    e2e, cpu, chosen = [], [], []
    for p in prompts:
        t, c = time.perf_counter(), time.process_time()
        d = router.route(p)
        e2e.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        chosen.append(d.model)
    # The decision alone, from precomputed embeddings of the same prompts.
    dec = []
    for i in range(x_ref.shape[0]):
        t = time.perf_counter()
        router.route(embedding=x_ref[i])
        dec.append(time.perf_counter() - t)
    by_source = {s: percentiles([e for e, src in zip(e2e, sources) if src == s]) for s in sorted(set(sources))}
    return {"e2e": percentiles(e2e), "cpu": percentiles(cpu), "decision": percentiles(dec), "by_dataset": by_source, "chosen": chosen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--embedders", default="torch,onnx,onnx-int8")
    ap.add_argument("--dataset", default="mmlu_pro", help="dataset whose models the router holds")
    ap.add_argument("--no-cold", action="store_true", help="skip the fresh-process cold-start runs")
    args = ap.parse_args()
    specs = args.embedders.split(",")

    imp = import_time()
    print(f"import unirouter: median {imp['median_s'] * 1e3:.0f} ms (torch imported: {imp['torch_imported']})", flush=True)

    prompts, sources = load_mixed_prompts(args.n, seed=1)
    x_ref = cached_embeddings(prompts)
    router, _ = fitted_router(args.dataset, make_embedder("torch"))
    print(f"router: K={router.n_clusters}, M={len(router.models_)} models of {args.dataset}", flush=True)

    cold: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_cold:
            for spec in specs:
                # A router saved under this embedder's identity (int8 has its own name).
                router_dir = str(Path(tmp) / f"router-{spec.replace(':', '_')}")
                fitted_router(args.dataset, make_embedder(spec))[0].save(router_dir)
                if spec.startswith("onnx"):
                    fresh = str(Path(tmp) / f"onnx-{spec.replace(':', '_')}")  # nothing exported yet
                    cold[f"{spec} (first use ever: export)"] = cold_start(spec, router_dir, prompts, onnx_dir=fresh)
                cold[spec] = cold_start(spec, router_dir, prompts)
                print(spec, "cold:", {k: round(v, 3) if isinstance(v, float) else v for k, v in cold[spec].items()}, flush=True)

    results = {}
    for spec in specs:
        results[spec] = warm(router, spec, prompts, sources, x_ref)
        r = results[spec]
        print(
            f"{spec}: e2e p50 {r['e2e']['p50_ms']:.1f} ms, p99 {r['e2e']['p99_ms']:.1f} ms; decision p50 {r['decision']['p50_ms'] * 1e3:.0f} us",
            flush=True,
        )

    ref = results[specs[0]]["chosen"]
    rows = []
    for spec in specs:
        r = results[spec]
        e, d = r["e2e"], r["decision"]
        embed_p50 = max(e["p50_ms"] - d["p50_ms"], 1e-9)
        agree = float(np.mean([a == b for a, b in zip(ref, r["chosen"])]))
        rows.append(
            [
                spec,
                fmt_ms(e["p50_ms"]),
                fmt_ms(e["p95_ms"]),
                fmt_ms(e["p99_ms"]),
                f"{fmt_ms(r['cpu']['p50_ms'])} / {fmt_ms(r['cpu']['p99_ms'])}",
                f"{d['p50_ms'] * 1e3:.0f}",
                f"{100 * d['p50_ms'] / embed_p50:.2f}%",
                f"{100 * agree:.1f}%",
                "met" if e["p50_ms"] <= 10 else "NOT met",
                "met" if e["p99_ms"] <= 25 else "NOT met",
            ]
        )
    by_ds = [[spec, ds, fmt_ms(v["p50_ms"]), fmt_ms(v["p99_ms"])] for spec in specs for ds, v in results[spec]["by_dataset"].items()]
    cold_rows = [
        [k, f"{v['import_s']:.2f}", f"{v['load_router_s']:.2f}", f"{v['first_route_s']:.2f}", f"{v['second_route_s'] * 1e3:.0f}"]
        for k, v in cold.items()
    ]
    md = (
        f"`route(prompt)` over {len(prompts)} real prompts mixed evenly from {', '.join(sorted(set(sources)))} "
        f"(shuffled), no embedding cache, router K={router.n_clusters} with M={len(router.models_)} models. "
        "Wall-clock percentiles; CPU = process CPU time per call (all threads; on this shared machine the wall "
        "clock also counts waits for a core). Decision = `route(embedding=x)` on the same prompts; "
        "share = decision p50 / (route p50 - decision p50). "
        f"Same decision = share of prompts routed to the same model as `{specs[0]}`.\n\n"
        + table(
            [
                "embedder",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "CPU p50 / p99 ms",
                "decision p50 µs",
                "decision / embedding",
                "same decision",
                "p50 <= 10 ms",
                "p99 <= 25 ms",
            ],
            rows,
        )
        + "\n\nLatency by source dataset (prompt length differs: MMLU-Pro questions carry ten options):\n\n"
        + table(["embedder", "dataset", "p50 ms", "p99 ms"], by_ds)
        + f"\n\n`import unirouter`: median {imp['median_s'] * 1e3:.0f} ms wall, {imp['median_cpu_s'] * 1e3:.0f} ms CPU "
        f"over 5 fresh interpreters (torch imported: {imp['torch_imported']}; target < 500 ms: "
        f"{'met' if imp['median_s'] < 0.5 else ('met on CPU time' if imp['median_cpu_s'] < 0.5 else 'NOT met')}).\n"
    )
    if cold_rows:
        md += (
            "\nCold start, fresh process per row (seconds; the second call in ms):\n\n"
            + table(["embedder", "imports s", "load router s", "first route s", "second route ms"], cold_rows)
            + "\n"
        )
    print()
    print(md)
    for r in results.values():
        r.pop("chosen")
    write_result(
        "overhead",
        title="End-to-end routing overhead (route(prompt), default embedder, no cache)",
        section_markdown=md,
        n_prompts=len(prompts),
        router={"dataset": args.dataset, "n_clusters": router.n_clusters, "n_models": len(router.models_)},
        import_time=imp,
        cold=cold,
        warm=results,
        same_decision_vs_first={spec: row[7] for spec, row in zip(specs, rows)},
    )


if __name__ == "__main__":
    main()
