"""Write a seeded synthetic graded routing dataset (issue 15) in the shared data's on-disk format.

It mimics the held-out data DifficultyRouter diverged on: graded quality in [0, 1], 805 prompts,
45 models, most of them weak (mean quality around 0.07) and a strong third (around 0.55). The
prompts are real ones (a seeded sample of a shared dataset's prompts, embedded with the default
MiniLM from the on-disk cache); the quality comes from :func:`unirouter.data.synthetic.make_graded_routing`.

Usage:
  python benchmarks/make_synthetic.py [--out benchmarks/data/synthetic_graded] [--source routerbench_subset]
                                      [--prompts 805] [--models 45] [--seed 0] [--overwrite]
  unirouter evaluate --data benchmarks/data/synthetic_graded --protocol strongest-unseen --methods zero_val knn difficulty
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
from unirouter import SentenceTransformerEmbedder, default_data_dir, load_dataset  # noqa: E402
from unirouter.embedding.embedders import default_cache_dir  # noqa: E402
from unirouter.exceptions import UniRouterError  # noqa: E402
from unirouter.data.synthetic import make_graded_routing, write_routing_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data" / "synthetic_graded"


def build(out: Path, *, source: str = "routerbench_subset", n_prompts: int = 805, n_models: int = 45, seed: int = 0, overwrite: bool = False) -> Path:
    """Sample prompts, embed them, draw the labels, write the folder; returns its path."""
    ds = load_dataset(default_data_dir() / source, load_responses=False)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ds), size=min(n_prompts, len(ds)), replace=False))
    texts = [ds.texts[i] for i in rows]
    x = SentenceTransformerEmbedder(cache=default_cache_dir()).embed(texts)
    syn = make_graded_routing(x, n_models, random_state=seed)
    notes = (
        f"Synthetic graded routing data: unirouter.data.synthetic.make_graded_routing(n_models={n_models}, random_state={seed}) "
        f"on {len(rows)} prompts sampled (seed {seed}) from {source}; quality in [0, 1], cost = synthetic USD per query. "
        "Written by benchmarks/make_synthetic.py."
    )
    return write_routing_dataset(
        out,
        name=f"synthetic_graded_s{seed}",
        ids=[f"syn{seed}-{ds.ids[i]}" for i in rows],
        texts=texts,
        quality=syn.quality,
        cost=syn.cost,
        model_names=syn.model_names,
        notes=notes,
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--source", default="routerbench_subset", help="shared dataset whose prompts are sampled")
    ap.add_argument("--prompts", type=int, default=805)
    ap.add_argument("--models", type=int, default=45)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder at --out")
    args = ap.parse_args(argv)
    try:
        path = build(args.out, source=args.source, n_prompts=args.prompts, n_models=args.models, seed=args.seed, overwrite=args.overwrite)
    except UniRouterError as e:
        print(f"make_synthetic: error: {e}", file=sys.stderr)
        return 2
    ds = load_dataset(path, load_responses=False)
    means = np.nanmean(ds.correctness, axis=0)
    print(f"wrote {path}: {len(ds)} prompts, {ds.n_models} models, mean quality {means.min():.3f}-{means.max():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
