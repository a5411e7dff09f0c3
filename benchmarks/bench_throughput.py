"""Throughput of batched routing end to end: ``router.route_batch(prompts)`` with embedding, no cache.

Usage: python benchmarks/bench_throughput.py [--n 10000] [--embedders torch,onnx,onnx-int8] [--batch-size N]
       [--limit torch=2000,onnx=2000]

``--n`` unique real prompts mixed evenly from the three shared datasets (mmlu_pro,
routerbench_subset, zeroeval_math_code) are routed in one ``route_batch`` call per embedder (cache
disabled), by a UniRouter (K=20) fitted on MMLU-Pro with its near-complete models. Reported:
prompts/s end to end, the decision share (``route_batch(embeddings=X)``), and how close each
embedder's output is to the torch reference (cached embeddings of the same prompts): cosine,
same K-means cluster, same chosen model, and the accuracy of the chosen model on the MMLU-Pro test
prompts in the sample. ``--limit SPEC=N`` routes only the first N prompts (same mix: the order is
shuffled) with a slow embedder, to bound the run time on a busy machine. Target: >= 300 prompts/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_embeddings, fitted_router, load_mixed_prompts, make_embedder, table, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--embedders", default="torch,onnx,onnx-int8")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the embedder's (64 torch, 16 ONNX)")
    ap.add_argument("--limit", default="", help="SPEC=N,...: route only the first N prompts with SPEC")
    args = ap.parse_args()
    specs = args.embedders.split(",")
    limits = {k: int(v) for k, v in (item.split("=") for item in args.limit.split(",") if item)}

    prompts, sources = load_mixed_prompts(args.n, seed=2)
    x_ref = cached_embeddings(prompts)  # torch reference (from the on-disk cache)
    router, splits = fitted_router("mmlu_pro", make_embedder("torch"))
    test = splits["test"]
    test_row = {t: i for i, t in enumerate(test.texts)}
    names = router.models_
    col = {n: j for j, n in enumerate(test.model_names)}
    scored = [i for i, p in enumerate(prompts) if p in test_row]
    ref_dec = router.route_batch(embeddings=x_ref)
    ref_model = [d.model for d in ref_dec]
    ref_cluster = np.array([d.cluster for d in ref_dec])
    n_tokens_note = f"{len(prompts)} prompts ({', '.join(f'{s}: {sources.count(s)}' for s in sorted(set(sources)))})"
    print(n_tokens_note, f"; router K={router.n_clusters}, M={len(names)}", flush=True)

    def accuracy(models: list[str], n: int | None = None) -> tuple[float, int]:
        rows = [i for i in scored if n is None or i < n]
        return float(np.mean([test.correctness[test_row[prompts[i]], col[models[i]]] for i in rows])), len(rows)

    results = {}
    for spec in specs:
        emb = make_embedder(spec, cache=None)
        if args.batch_size:
            emb.batch_size = args.batch_size
        router._embedder = emb  # same fitted router, this embedder
        router.embedder = emb
        t = time.perf_counter()
        emb.embed(["warm-up: load the model"])
        load_s = time.perf_counter() - t
        captured: list[np.ndarray] = []
        compute = emb._compute

        def recording(texts, compute=compute, captured=captured):
            out = compute(texts)
            captured.append(np.asarray(out))
            return out

        emb._compute = recording
        n = min(limits.get(spec, len(prompts)), len(prompts))
        t, c = time.perf_counter(), time.process_time()
        dec = router.route_batch(prompts[:n])
        total_s, cpu_s = time.perf_counter() - t, time.process_time() - c
        x = np.concatenate(captured)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        t = time.perf_counter()
        router.route_batch(embeddings=x)
        decide_s = time.perf_counter() - t
        models = [d.model for d in dec]
        cos = (x * x_ref[:n]).sum(axis=1)
        acc, n_scored = accuracy(models, n)
        ref_acc_n, _ = accuracy(ref_model, n)
        results[spec] = {
            "n": n,
            "load_s": load_s,
            "total_s": total_s,
            "prompts_per_s": n / total_s,
            "cpu_s": cpu_s,
            "prompts_per_cpu_s": n / cpu_s,
            "decision_s": decide_s,
            "cosine_min": float(cos.min()),
            "cosine_median": float(np.median(cos)),
            "same_cluster": float(np.mean(np.array([d.cluster for d in dec]) == ref_cluster[:n])),
            "same_model": float(np.mean([a == b for a, b in zip(models, ref_model)])),
            "accuracy_scored": acc,
            "reference_accuracy_scored": ref_acc_n,
            "n_scored": n_scored,
        }
        r = results[spec]
        print(f"{spec}: {r['prompts_per_s']:.0f} prompts/s ({r['total_s']:.0f} s), same model {100 * r['same_model']:.1f}%", flush=True)

    ref_acc, _ = accuracy(ref_model)
    rows = [
        [
            spec,
            f"{r['n']:,}",
            f"{r['prompts_per_s']:,.0f}",
            f"{r['prompts_per_cpu_s']:,.0f}",
            f"{r['total_s']:,.0f}",
            f"{1e3 * r['decision_s']:,.0f} ({100 * r['decision_s'] / r['total_s']:.2f}%)",
            f"{r['cosine_median']:.4f} / {r['cosine_min']:.4f}",
            f"{100 * r['same_cluster']:.1f}%",
            f"{100 * r['same_model']:.1f}%",
            f"{100 * r['accuracy_scored']:.2f}% vs {100 * r['reference_accuracy_scored']:.2f}% ({r['n_scored']})",
            "met" if r["prompts_per_s"] >= 300 else "NOT met",
        ]
        for spec, r in results.items()
    ]
    md = (
        f"One `route_batch(prompts)` call over {n_tokens_note}, embedding included, no cache, "
        f"batch size {args.batch_size or 'default (64 torch, 16 ONNX)'}; per CPU-s = prompts per second of process CPU time (all threads; the machine was "
        f"shared, so the wall clock includes waits for a core); router K={router.n_clusters}, M={len(names)} (MMLU-Pro models). "
        "Agreement is against the torch embeddings of the same prompts (cosine median / min; "
        f"same K-means cluster; same chosen model at cost weight 0). Accuracy = mean correctness of the chosen "
        f"model on the MMLU-Pro test prompts among those routed, vs the torch embeddings' choice on the same prompts (count).\n\n"
        + table(
            [
                "embedder",
                "prompts",
                "prompts/s",
                "per CPU-s",
                "total s",
                "decision ms (share)",
                "cosine med / min",
                "same cluster",
                "same model",
                "accuracy",
                ">= 300/s",
            ],
            rows,
        )
        + "\n"
    )
    print()
    print(md)
    write_result(
        "throughput",
        title="Batched routing throughput (route_batch, embedding included, no cache)",
        section_markdown=md,
        results=results,
        reference_accuracy=ref_acc,
        batch_size=args.batch_size,
    )


if __name__ == "__main__":
    main()
