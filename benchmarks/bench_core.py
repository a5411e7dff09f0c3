"""Issue 2 acceptance on MMLU-Pro: quality at cost weight 0 and a calibrated budget, on held-out data.

Fit on a 60% training split, add every complete model from the 10% validation split (its labels and
per-query costs), route the 30% test split:
- cost weight 0: routed accuracy vs the best single model chosen on validation data;
- budget = 50% of that model's mean validation cost, calibrated on the validation prompts:
  realised mean test cost vs the budget, and accuracy vs every model cheaper than the budget.

Usage: python benchmarks/bench_core.py [--method kmeans|learned] [--n-clusters 20] [--seed 0]
Writes benchmarks/results/core_<method>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from unirouter import SentenceTransformerEmbedder, UniRouter, default_data_dir, load_dataset
from unirouter.data.datasets import split_indices
from unirouter.embedding.embedders import default_cache_dir

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="kmeans", choices=["kmeans", "learned"])
    ap.add_argument("--n-clusters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    models = ds.complete_models(min_coverage=0.99)  # 30 models: all but DeepSeek-Coder-V2 (86% coverage)
    ds = ds.subset(ds.complete_rows(models), models)
    emb = SentenceTransformerEmbedder(cache=default_cache_dir())
    x = emb.embed(ds.texts)
    tr, va, te = split_indices(len(ds), (0.6, 0.1, 0.3), random_state=args.seed)
    train, val, test = ds.subset(tr), ds.subset(va), ds.subset(te)

    router = UniRouter(args.n_clusters, method=args.method, random_state=args.seed, embedder=emb)
    t = time.perf_counter()
    router.fit_dataset(train, val, embeddings=x[tr], validation_embeddings=x[va])
    fit_s = time.perf_counter() - t

    val_acc = np.nanmean(val.correctness, axis=0)
    val_cost = np.nanmean(val.cost, axis=0)
    test_acc = np.nanmean(test.correctness, axis=0)
    test_cost = np.nanmean(test.cost, axis=0)
    best = int(np.argmax(val_acc))
    names = router.models_
    col = {n: j for j, n in enumerate(test.model_names)}

    def realised(lam: float) -> tuple[float, float]:
        pick = router.choose(x[te], lam)
        cols = np.array([col[names[i]] for i in pick])
        rows = np.arange(len(te))
        return float(test.correctness[rows, cols].mean()), float(test.cost[rows, cols].mean())

    acc0, cost0 = realised(0.0)
    budget = 0.5 * float(val_cost[best])
    lam = router.calibrate(embeddings=x[va], budget=budget)
    acc_b, cost_b = realised(lam)
    cheaper = [j for j in range(len(models)) if test_cost[j] <= budget]
    best_cheaper = max(cheaper, key=lambda j: test_acc[j]) if cheaper else None

    out = {
        "title": f"Core acceptance on MMLU-Pro (UniRoute {args.method}, K={args.n_clusters})",
        "command": "python " + " ".join(["benchmarks/bench_core.py", *sys.argv[1:]]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores, Python {platform.python_version()}",
        "n_train": len(tr), "n_val": len(va), "n_test": len(te), "n_models": len(models),
        "best_single": {"model": models[best], "test_accuracy": float(test_acc[best]), "test_mean_cost": float(test_cost[best])},
        "cost_weight_0": {"accuracy": acc0, "mean_cost": cost0, "gap_to_best_points": 100 * (acc0 - float(test_acc[best]))},
        "budget": {
            "target": budget, "cost_weight": lam, "realised_mean_cost": cost_b,
            "relative_error": cost_b / budget - 1, "accuracy": acc_b,
            "best_cheaper_model": None if best_cheaper is None else models[best_cheaper],
            "best_cheaper_accuracy": None if best_cheaper is None else float(test_acc[best_cheaper]),
        },
        "fit_seconds": fit_s, "total_seconds": time.perf_counter() - t0,
    }
    b = out["budget"]
    out["section_markdown"] = "\n".join([
        f"Split 60/10/30 of the {len(ds):,} MMLU-Pro prompts complete for {len(models)} models (seed {args.seed}); "
        f"router fitted on {len(tr):,} prompts, every model added from its {len(va):,} validation labels and costs.",
        "",
        "| setting | test accuracy | mean cost / query | reference |",
        "|---|---|---|---|",
        f"| best single model on validation ({models[best]}) | {test_acc[best]:.4f} | ${test_cost[best]:.3e} | |",
        f"| routed, cost weight 0 | {acc0:.4f} | ${cost0:.3e} | {out['cost_weight_0']['gap_to_best_points']:+.2f} points vs best |",
        f"| routed, budget 50% of best (${budget:.3e}) | {acc_b:.4f} | ${cost_b:.3e} | cost {100 * b['relative_error']:+.1f}% vs budget |",
        f"| best model cheaper than the budget ({b['best_cheaper_model']}) | {b['best_cheaper_accuracy'] or float('nan'):.4f} | | |",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"core_{args.method}.json"
    path.write_text(json.dumps(out, indent=2))
    print(out["section_markdown"])
    print(f"\nwrote {path} ({out['total_seconds']:.1f} s)")


if __name__ == "__main__":
    main()
