"""Fit and add: K-means fit and learned-map training on 10k prompts; add_model from labels.

Usage: python benchmarks/bench_fit.py [--n-train 10000] [--n-val 1000] [--clusters 20,40] [--profile]

Uses cached MMLU-Pro embeddings (``benchmarks/embed_datasets.py`` fills the cache): ``--n-train``
prompts to fit on, ``--n-val`` other prompts as the validation set, and the labels of the
near-complete models. Times ``UniRouter(K).fit(...)`` for method="kmeans" and method="learned"
(default training settings: up to 300 epochs, early stopping), and ``add_model(name,
correctness=..., cost=...)`` on the validation set with a flat cost and with per-prompt costs, into
pools of 30 and 1000 models (median of many calls). Targets: fit <= 60 s, add_model <= 5 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_embeddings, table, write_result
from unirouter import UniRouter, UniRouterWarning, default_data_dir, load_dataset


def timed_fit(router: UniRouter, **kwargs) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads)."""
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit(**kwargs)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--clusters", default="20,40")
    ap.add_argument("--profile", action="store_true", help="print cProfile summaries of both fits")
    args = ap.parse_args()
    ks = [int(v) for v in args.clusters.split(",")]

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    models = ds.complete_models(min_coverage=0.99)
    rows = ds.complete_rows(models)
    ds = ds.subset(rows, models=models)
    perm = np.random.default_rng(0).permutation(len(ds))
    tr, va = perm[: args.n_train], perm[args.n_train : args.n_train + args.n_val]
    train, val = ds.subset(np.sort(tr)), ds.subset(np.sort(va))
    t = time.perf_counter()
    x_tr, x_va = cached_embeddings(train.texts), cached_embeddings(val.texts)
    print(f"embeddings from cache: {x_tr.shape[0]} + {x_va.shape[0]} in {time.perf_counter() - t:.1f} s; {len(models)} models", flush=True)

    # The first fit of a process pays for importing scikit-learn (K-means) and torch (learned map):
    # timed here once, so the fit times below are the fitting itself.
    t = time.perf_counter()
    import sklearn.cluster  # noqa: F401

    imports = {"sklearn.cluster_s": time.perf_counter() - t}
    t = time.perf_counter()
    import torch  # noqa: F401

    imports["torch_s"] = time.perf_counter() - t
    print("one-time imports:", {k: round(v, 2) for k, v in imports.items()}, flush=True)

    fits, profiles = [], {}
    for k in ks:
        for method in ("kmeans", "learned"):
            router = UniRouter(k, method=method, random_state=0)
            kw = {"embeddings": x_tr, "validation_embeddings": x_va}
            if method == "learned":
                kw.update(train_correctness=train.correctness, validation_correctness=val.correctness)
            if args.profile and k == ks[0]:
                pr = cProfile.Profile()
                pr.enable()
            secs, cpu = timed_fit(router, **kw)
            if args.profile and k == ks[0]:
                pr.disable()
                buf = io.StringIO()
                pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(12)
                profiles[method] = buf.getvalue()
                print(profiles[method])
            rep = router.training_report_
            fits.append({"K": k, "method": method, "seconds": secs, "cpu_seconds": cpu, **rep})
            extra = f" ({rep['epochs']:.0f} epochs, best {rep['best_epoch']:.0f})" if rep else ""
            print(f"fit K={k} {method}: {secs:.1f} s, CPU {cpu:.1f} s{extra}", flush=True)

    # add_model from labels, into pools of increasing size.
    router = UniRouter(ks[0], random_state=0)
    timed_fit(router, embeddings=x_tr, validation_embeddings=x_va)
    rng = np.random.default_rng(1)
    labels = [val.correctness[:, j] for j in range(len(models))]
    costs = [val.cost[:, j] if val.cost is not None else None for j in range(len(models))]
    adds = []
    n_added = 0
    for pool_size in (30, 1000):
        flat, per_prompt = [], []
        while n_added < pool_size:
            j = n_added % len(models)
            y = labels[j] if n_added < len(models) else rng.integers(0, 2, args.n_val).astype(float)
            cost: object = float(np.nanmean(costs[j])) if n_added % 2 == 0 or costs[j] is None else np.nan_to_num(costs[j])
            t = time.perf_counter()
            router.add_model(f"m{n_added:04d}", correctness=y, cost=cost)
            (flat if isinstance(cost, float) else per_prompt).append(time.perf_counter() - t)
            n_added += 1
        # Steady state at this pool size: re-add (replace) a model many times.
        rep_flat, rep_pp = [], []
        for i in range(60):
            j = i % len(models)
            t = time.perf_counter()
            router.add_model(f"m{j:04d}", correctness=labels[j], cost=0.001, replace=True)
            rep_flat.append(time.perf_counter() - t)
            if costs[j] is not None:
                t = time.perf_counter()
                router.add_model(f"m{j:04d}", correctness=labels[j], cost=np.nan_to_num(costs[j]), replace=True)
                rep_pp.append(time.perf_counter() - t)
        adds.append(
            {
                "pool_size": pool_size,
                "flat_cost_ms": 1e3 * statistics.median(rep_flat),
                "per_prompt_cost_ms": 1e3 * statistics.median(rep_pp) if rep_pp else None,
                "growing_pool_median_ms": 1e3 * statistics.median(flat + per_prompt),
            }
        )
        print(adds[-1], flush=True)

    # Where add_model time goes, at 1000 models.
    pr = cProfile.Profile()
    pr.enable()
    for i in range(30):
        router.add_model(f"m{i:04d}", correctness=labels[i % len(models)], cost=0.001, replace=True)
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(10)
    profiles["add_model_1000"] = buf.getvalue()

    fit_rows = [
        [
            f["K"],
            f["method"],
            f"{f['seconds']:.1f}",
            f"{f['cpu_seconds']:.1f}",
            f"{f.get('epochs', 0):.0f} (best {f.get('best_epoch', 0):.0f})" if f["method"] == "learned" else "-",
            "met" if f["seconds"] <= 60 else "NOT met",
        ]
        for f in fits
    ]
    add_rows = [
        [
            a["pool_size"],
            f"{a['flat_cost_ms']:.2f}",
            "-" if a["per_prompt_cost_ms"] is None else f"{a['per_prompt_cost_ms']:.2f}",
            "met" if max(a["flat_cost_ms"], a["per_prompt_cost_ms"] or 0) <= 5 else "NOT met",
        ]
        for a in adds
    ]
    md = (
        f"MMLU-Pro, cached MiniLM embeddings: {x_tr.shape[0]} training prompts, {x_va.shape[0]} validation prompts, "
        f"{len(models)} training LLMs (learned map). K-means: scikit-learn, n_init=3. Learned map: torch, Adam, "
        "batch 1024, up to 300 epochs with early stopping (patience 20).\n\n"
        + table(["K", "router", "fit s (wall)", "CPU s (all threads)", "epochs", "<= 60 s"], fit_rows)
        + f"\n\nOne-time imports before the first fit of a process (not included above): scikit-learn "
        f"{imports['sklearn.cluster_s']:.1f} s, torch {imports['torch_s']:.1f} s."
        + f"\n\n`add_model(name, correctness=..., cost=...)` on {x_va.shape[0]} validation prompts, median ms "
        "(replacing a model in a pool of the given size; per-prompt costs give per-cluster expected costs):\n\n"
        + table(["models in pool", "flat cost ms", "per-prompt costs ms", "<= 5 ms"], add_rows)
        + "\n"
    )
    print()
    print(md)
    write_result("fit", title="Fit and add_model time", section_markdown=md, fits=fits, add_model=adds, imports=imports, profiles=profiles)


if __name__ == "__main__":
    main()
