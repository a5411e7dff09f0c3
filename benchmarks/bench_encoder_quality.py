"""Routing quality of a faster encoder (issue 20): AUDC with WordLlama against MiniLM, same protocol.

Usage: nice -n 5 python benchmarks/bench_encoder_quality.py [--trials 10] [--datasets ...] [--methods knn kmeans]

The unseen-models protocol (``unirouter.evaluation.protocols.run_protocol``) runs with the same seeds, hence the
same prompt and model splits, once on MiniLM embeddings (the default embedder; read from the on-disk
cache, ``benchmarks/embed_datasets.py`` fills it) and once on ``WordLlamaEmbedder()``; settings are
chosen on the training pool as usual. Reported per dataset and method: mean AUDC ± 2 SE over trials
and the paired difference (WordLlama - MiniLM) ± 2 SE. "Within noise" means that interval holds 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, table, write_result


def mean_pm(v: np.ndarray) -> tuple[float, float]:
    v = np.asarray(v, dtype=float)
    return float(v.mean()), float(2 * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--methods", nargs="+", default=["zero", "knn", "kmeans"])
    args = ap.parse_args()

    from unirouter import SentenceTransformerEmbedder, default_data_dir
    from unirouter.evaluation.protocols import prepare_data, run_protocol
    from unirouter.embedding.embedders import WordLlamaEmbedder, default_cache_dir

    embedders = {"minilm": SentenceTransformerEmbedder(cache=default_cache_dir()), "wordllama": WordLlamaEmbedder()}
    min_cov = {"zeroeval_math_code": 1.0}  # as benchmarks/run_evaluation.py
    raw: dict = {}
    rows = []
    for name in args.datasets:
        audc = {}
        for ename, emb in embedders.items():
            t = time.perf_counter()
            data = prepare_data(default_data_dir() / name, embedder=emb, min_coverage=min_cov.get(name, 0.99))
            embed_s = time.perf_counter() - t
            res = run_protocol(data, trials=args.trials, seed=args.seed, methods=args.methods)
            audc[ename] = {m: np.asarray(res.values(m, "audc")) for m in args.methods}
            raw.setdefault(name, {})[ename] = {"embed_s": embed_s, "audc": {m: v.tolist() for m, v in audc[ename].items()}}
            print(name, ename, f"embed {embed_s:.1f} s", {m: round(float(v.mean()), 4) for m, v in audc[ename].items()}, flush=True)
        for m in args.methods:
            a, b = audc["minilm"][m], audc["wordllama"][m]
            (ma, sa), (mb, sb), (md, sd) = mean_pm(a), mean_pm(b), mean_pm(b - a)
            within = abs(md) <= sd
            raw[name].setdefault("paired", {})[m] = {"diff": md, "pm2se": sd, "within_noise": within, "wins": int((b > a).sum())}
            rows.append([name, m, f"{ma:.4f} ± {sa:.4f}", f"{mb:.4f} ± {sb:.4f}", f"{md:+.4f} ± {sd:.4f}", f"{int((b > a).sum())}/{b.size}", "yes" if within else "no"])
    md = (
        f"Unseen-models protocol, {args.trials} trials (seeds {args.seed}..{args.seed + args.trials - 1}), same splits for both "
        "encoders; AUDC mean ± 2 SE; paired difference WordLlama - MiniLM ± 2 SE.\n\n"
        + table(["dataset", "method", "MiniLM AUDC", "WordLlama AUDC", "WordLlama - MiniLM", "WordLlama wins", "within noise"], rows)
        + "\n"
    )
    print(md)
    write_result("encoder_quality", title="Routing quality of WordLlama against MiniLM (issue 20)", section_markdown=md, results=raw, trials=args.trials, methods=args.methods)


if __name__ == "__main__":
    main()
