"""Embed every prompt of the shared routing datasets once, into the on-disk embedding cache.

Usage: python benchmarks/embed_datasets.py [dataset ...]
Reads ``$UNIROUTER_DATA`` (default ../shared/data); the cache is ``$UNIROUTER_CACHE_DIR``
(default ~/.cache/unirouter). Later runs (tests, benchmarks, ``unirouter evaluate``) reuse it.
"""

from __future__ import annotations

import sys
import time

from unirouter import SentenceTransformerEmbedder, default_data_dir, load_dataset
from unirouter.embedding.embedders import default_cache_dir


def main(names: list[str]) -> None:
    root = default_data_dir()
    names = names or sorted(p.name for p in root.iterdir() if (p / "dataset.json").is_file())
    emb = SentenceTransformerEmbedder(cache=default_cache_dir(), show_progress=True)
    for name in names:
        ds = load_dataset(root / name, load_responses=False)
        t = time.perf_counter()
        x = emb.embed(ds.texts)
        print(f"{name}: {x.shape[0]} prompts, dim {x.shape[1]}, {time.perf_counter() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
