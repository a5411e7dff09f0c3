"""Memory: resident set size of a loaded 1000-model router, and of the process with the embedder loaded.

Usage: python benchmarks/bench_memory.py [--models 1000] [--embedders torch,onnx,onnx-int8]

A UniRouter (K=20 and K=200) is fitted on cached MMLU-Pro embeddings (9,000 training prompts,
1,000 validation prompts); 1000 models are added from labels (the MMLU-Pro models, then random
labels), and it is saved. Each measurement then runs in a fresh interpreter: RSS after ``import
unirouter``, after ``UniRouter.load(path)`` (the embedder stays unloaded) and after one
``route(embedding=x)``; and, per embedder, RSS after loading it and embedding one prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_embeddings, table, write_result
from unirouter import UniRouter, UniRouterWarning, default_data_dir, load_dataset

HERE = Path(__file__).resolve().parent

ROUTER_SNIPPET = """
import json, sys
sys.path.insert(0, {here!r})
from _common import rss_mib
import numpy as np
base = rss_mib()
import unirouter
after_import = rss_mib()
router = unirouter.UniRouter.load({path!r})
after_load = rss_mib()
x = np.ones((1, 384), dtype=np.float32) / np.sqrt(384)
router.route(embedding=x[0])
after_route = rss_mib()
print(json.dumps({{"python": base, "import": after_import, "load": after_load, "route": after_route,
                  "torch_imported": "torch" in sys.modules, "models": len(router.models_)}}))
"""

EMBEDDER_SNIPPET = """
import json, sys
sys.path.insert(0, {here!r})
from _common import rss_mib, make_embedder
import unirouter
after_import = rss_mib()
emb = make_embedder({spec!r})
emb.embed(["What is the capital of France? Answer with one word."])
after_embed = rss_mib()
emb.embed(["word " * 400] * 64)
after_batch = rss_mib()
print(json.dumps({{"import": after_import, "embed_one": after_embed, "embed_batch": after_batch,
                  "torch_imported": "torch" in sys.modules}}))
"""


def run(code: str) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_router(k: int, n_models: int, x_tr, x_va, val, path: Path) -> int:
    router = UniRouter(k, random_state=0, n_init=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit(embeddings=x_tr, validation_embeddings=x_va)
    rng = np.random.default_rng(0)
    m_real = val.correctness.shape[1]
    for j in range(n_models):
        y = val.correctness[:, j] if j < m_real else rng.integers(0, 2, x_va.shape[0]).astype(float)
        router.add_model(f"m{j:04d}", correctness=y, cost=float(rng.uniform(1e-4, 1e-2)))
    router.save(path)
    return sum(f.stat().st_size for f in path.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--clusters", default="20,200")
    ap.add_argument("--embedders", default="torch,onnx,onnx-int8")
    args = ap.parse_args()

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    models = ds.complete_models(min_coverage=0.99)
    ds = ds.subset(ds.complete_rows(models), models=models)
    perm = np.random.default_rng(0).permutation(len(ds))
    train, val = ds.subset(np.sort(perm[:9000])), ds.subset(np.sort(perm[9000:10000]))
    x_tr, x_va = cached_embeddings(train.texts), cached_embeddings(val.texts)

    router_rows, router_raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(v) for v in args.clusters.split(",")]:
            path = Path(tmp) / f"router-k{k}"
            disk = build_router(k, args.models, x_tr, x_va, val, path)
            r = run(ROUTER_SNIPPET.format(here=str(HERE), path=str(path)))
            r["disk_mib"] = disk / 2**20
            router_raw[f"K={k}"] = r
            router_rows.append(
                [
                    k,
                    r["models"],
                    f"{r['disk_mib']:.1f}",
                    f"{r['import']:.0f}",
                    f"{r['load']:.0f} (+{r['load'] - r['import']:.1f})",
                    f"{r['route']:.0f}",
                    r["torch_imported"],
                ]
            )
            print(router_rows[-1], flush=True)

    emb_rows, emb_raw = [], {}
    for spec in args.embedders.split(","):
        r = run(EMBEDDER_SNIPPET.format(here=str(HERE), spec=spec))
        emb_raw[spec] = r
        emb_rows.append(
            [
                spec,
                f"{r['import']:.0f}",
                f"{r['embed_one']:.0f} (+{r['embed_one'] - r['import']:.0f})",
                f"{r['embed_batch']:.0f}",
                r["torch_imported"],
            ]
        )
        print(emb_rows[-1], flush=True)

    md = (
        f"Resident set size (MiB), each row in a fresh interpreter. Router: fitted on {x_tr.shape[0]} cached MMLU-Pro "
        f"embeddings, {x_va.shape[0]} validation prompts, {args.models} models added from labels, saved, then "
        "`UniRouter.load(path)` (embedder not loaded) and one `route(embedding=x)`.\n\n"
        + table(["K", "models", "on disk MiB", "after import", "after load (delta)", "after route", "torch imported"], router_rows)
        + "\n\nEmbedder: RSS after `import unirouter`, after loading the embedder and embedding one prompt, "
        "and after one batch of 64 prompts of 256 tokens:\n\n"
        + table(["embedder", "after import", "after one embed (delta)", "after a 64 x 256-token batch", "torch imported"], emb_rows)
        + "\n"
    )
    print()
    print(md)
    write_result(
        "memory",
        title="Memory (RSS) of a loaded router and of the embedder",
        section_markdown=md,
        router=router_raw,
        embedder=emb_raw,
        n_models=args.models,
    )


if __name__ == "__main__":
    main()
