"""Run the evaluation protocol on the shared datasets and write benchmarks/results/eval_<dataset>_<kind>.json.

Kinds (``--kind``):
  main      all methods, the unseen-models protocol (default 50 trials)       -> eval_<ds>_main.json
  fixed     all methods, the fixed-pool protocol                              -> eval_<ds>_fixed.json
  valsize   zero/knn/kmeans/learned at S_val = 100, 200, 400, 800 prompts      -> eval_<ds>_valsize<N>.json
  ksens     knn/kmeans/learned with every grid value also scored on the test pool -> eval_<ds>_ksens.json
  explore   variants within the faithful method (shrinkage strength, learned-map training, own K
            selection for the learned map)                                       -> eval_<ds>_explore.json
  explore-light  the cheaper variants only (shrinkage strength; for the large dataset) -> eval_<ds>_explore.json
  explore-select K and the shrinkage strength a chosen together on the training pool   -> eval_<ds>_select.json

Usage:
  nice -n 10 python benchmarks/run_evaluation.py --datasets routerbench_subset zeroeval_math_code --kind main --trials 50
Embeddings come from the on-disk cache (benchmarks/embed_datasets.py fills it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from unirouter import SentenceTransformerEmbedder, default_data_dir
from unirouter.cli.evaluate import _clean, format_paired, format_table, plot_curves
from unirouter.evaluation.protocols import (
    _kmeans,
    _learned,
    prepare_data,
    register_method,
    run_protocol,
)
from unirouter.embedding.embedders import default_cache_dir

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ["mmlu_pro", "zeroeval_math_code", "routerbench_subset"]
MAIN = ["zero", "zero_val", "knn", "kmeans", "learned", "oracle", "clairvoyant_knn", "best_single"]
# method.md section 5: zeroeval_math_code uses its 29 fully complete models.
MIN_COVERAGE = {"zeroeval_math_code": 1.0}


def _variants() -> list[str]:
    """Variants tried to improve UniRoute within the faithful method (all K chosen on the training pool)."""
    register_method("kmeans_a0", lambda d, **p: _kmeans(d, prior_strength=0.0, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="K-Means, no shrinkage (a=0)", replace=True)
    register_method("kmeans_a5", lambda d, **p: _kmeans(d, prior_strength=5.0, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="K-Means, a=5", replace=True)
    register_method("kmeans_a20", lambda d, **p: _kmeans(d, prior_strength=20.0, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="K-Means, a=20", replace=True)
    register_method("kmeans_a50", lambda d, **p: _kmeans(d, prior_strength=50.0, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="K-Means, a=50", replace=True)
    register_method("learned_a20", lambda d, **p: _learned(d, prior_strength=20.0, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="LearnedMap, a=20", replace=True)
    register_method(
        "kmeans_sel_a", _kmeans, grid={"n_clusters": [5, 10, 20, 40, 80], "prior_strength": [1.0, 5.0, 20.0, 50.0]}, label="K-Means, K and a chosen on the training pool", replace=True
    )
    register_method("learned_sel_a", _learned, grid={"n_clusters": [5, 10, 20, 40, 80], "prior_strength": [1.0, 5.0, 20.0, 50.0]}, label="LearnedMap, K and a from K-Means' choice", replace=True)
    register_method("kmeans_n3", lambda d, **p: _kmeans(d, n_init=3, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="K-Means, n_init=3", replace=True)
    register_method(
        "learned_long", lambda d, **p: _learned(d, max_epochs=300, patience=20, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="LearnedMap, 300 epochs/patience 20", replace=True
    )
    register_method("learned_own", _learned, grid={"n_clusters": [5, 10, 20, 40, 80]}, label="LearnedMap, own K search", replace=True)
    register_method("learned_a5", lambda d, **p: _learned(d, prior_strength=5.0, **p), grid={"n_clusters": [5, 10, 20, 40, 80]}, label="LearnedMap, a=5", replace=True)
    return ["zero", "knn", "kmeans", "kmeans_a0", "kmeans_a5", "kmeans_a20", "kmeans_a50", "kmeans_n3", "learned", "learned_long", "learned_own", "learned_a5", "learned_a20"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=ALL)
    ap.add_argument("--kind", choices=["main", "fixed", "valsize", "ksens", "explore", "explore-light", "explore-select"], default="main")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-sizes", type=int, nargs="+", default=[100, 200, 400, 800])
    ap.add_argument("--tag", default="", help="suffix of the output file name")
    ap.add_argument("--results-dir", default=str(RESULTS), help="where to write (default benchmarks/results)")
    args = ap.parse_args(argv)
    results = Path(args.results_dir)
    command = "python benchmarks/run_evaluation.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results.mkdir(parents=True, exist_ok=True)
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir())
    for name in args.datasets:
        data = prepare_data(default_data_dir() / name, embedder=embedder, min_coverage=MIN_COVERAGE.get(name, 0.99))
        jobs: list[tuple[str, dict]] = []
        if args.kind == "main":
            jobs.append(("main", {"methods": MAIN}))
        elif args.kind == "fixed":
            jobs.append(("fixed", {"methods": MAIN, "protocol": "fixed-pool"}))
        elif args.kind == "valsize":
            for v in args.val_sizes:
                jobs.append((f"valsize{v}", {"methods": ["zero", "knn", "kmeans", "learned"], "val_size": v}))
        elif args.kind == "ksens":
            jobs.append(("ksens", {"methods": ["zero", "knn", "kmeans", "learned"], "record_grid": ["knn", "kmeans", "learned"]}))
        elif args.kind == "explore-select":
            _variants()
            sel = ["zero", "knn", "kmeans", "kmeans_sel_a", "learned", "learned_sel_a"]
            jobs.append(("select", {"methods": sel, "shared_selection": {"learned": "kmeans", "learned_sel_a": "kmeans_sel_a"}}))
        elif args.kind == "explore-light":
            light = [m for m in _variants() if m not in ("kmeans_n3", "learned_long", "learned_own")]
            jobs.append(("explore", {"methods": light, "shared_selection": {"learned": "kmeans", "learned_a5": "kmeans", "learned_a20": "kmeans"}}))
        else:
            jobs.append(("explore", {"methods": _variants(), "shared_selection": {m: "kmeans" for m in ["learned", "learned_long", "learned_a5", "learned_a20"]}}))
        for kind, kw in jobs:
            t0 = time.perf_counter()
            kind = f"{kind}{args.tag}"
            stem = f"eval_{name}_{kind}"
            out = results / f"{stem}.json"

            def checkpoint(res, kind=kind, out=out, t0=t0):
                # Written after every trial, so an interrupted run still leaves its finished trials.
                doc = res.to_json(kind=kind, command=command, wall_seconds=round(time.perf_counter() - t0, 1), partial=True, trials_planned=args.trials)
                out.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")

            res = run_protocol(data, trials=args.trials, seed=args.seed, progress=True, callback=checkpoint, **kw)
            doc = res.to_json(kind=kind, command=command, wall_seconds=round(time.perf_counter() - t0, 1), partial=False, trials_planned=args.trials)
            out.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
            print(f"\n{name} [{kind}] {doc['trials']} trials, {doc['wall_seconds']:.0f} s -> {out}")
            print(format_table(doc))
            print(format_paired(doc))
            if kind in ("main", "fixed"):
                plot_curves(doc, results / f"{stem}.png")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
