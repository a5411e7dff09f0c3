"""Is a batch ever slower per prompt than single calls? Interleaved A/B of batch settings (issue 20).

Usage: nice -n 5 python benchmarks/bench_batching.py [--n 40] [--rounds 8]

One process, one set of mixed prompts (all three shared datasets). Each round runs every mode once,
in a rotated order, so load from other work on the machine hits all modes alike; the figure to read
is the paired time ratio to single calls of the same embedder (median over rounds; < 1 means the
batch is faster per prompt) and in how many rounds the batch won. Modes:

* ONNX Runtime fp32 (the default path), 1 and 2 intra-op threads: single calls, the default
  ``embed(prompts)`` (token budget ``DEFAULT_BATCH_TOKENS``, 16 rows), budgets 128 / 512 / 1024 / 4096;
  int8 (``quantize=True``) single calls, default batching and budget 512; the tokenizer alone (``encode_batch`` against one ``encode`` per
  prompt).
* WordLlama (if installed): single calls, its own ``embed`` (64 per batch in the given order, padded
  to the longest), and ``WordLlamaEmbedder.embed`` (longest first, 8 per batch). WordLlama is ~1000x
  faster than MiniLM, so each of its timings repeats the call 20 times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_mixed_prompts, table, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="mixed prompts")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()

    from unirouter import SentenceTransformerEmbedder
    from unirouter.embedding._onnx import DEFAULT_BATCH_TOKENS as T

    prompts, _ = load_mixed_prompts(args.n, seed=4)
    n = len(prompts)
    e = {t: SentenceTransformerEmbedder(memory_cache=0, num_threads=t) for t in (1, 2)}
    e8 = SentenceTransformerEmbedder(backend="onnx", quantize=True, memory_cache=0, num_threads=1)
    for emb in (*e.values(), e8):
        emb.embed(["warm-up"])
    m1, m2 = e[1].model, e[2].model
    tok = m1.tokenizer
    lengths = [len(tok.encode(p).ids) for p in prompts]

    # (mode, baseline mode, repeats per timing)
    modes = {
        "onnx 1 thr: single calls": (lambda: [e[1].embed([q]) for q in prompts], None, 1),
        f"onnx 1 thr: embed(prompts), default ({T} tokens, 16 rows)": (lambda: e[1].embed(prompts), "onnx 1 thr: single calls", 1),
        "onnx 1 thr: budget 128": (lambda: m1.encode(prompts, batch_size=16, max_batch_tokens=128), "onnx 1 thr: single calls", 1),
        "onnx 1 thr: budget 512 (the default before)": (lambda: m1.encode(prompts, batch_size=16, max_batch_tokens=512), "onnx 1 thr: single calls", 1),
        "onnx 1 thr: budget 1024, 64 rows": (lambda: m1.encode(prompts, batch_size=64, max_batch_tokens=1024), "onnx 1 thr: single calls", 1),
        "onnx 1 thr: budget 4096, 64 rows": (lambda: m1.encode(prompts, batch_size=64, max_batch_tokens=4096), "onnx 1 thr: single calls", 1),
        "onnx 2 thr: single calls": (lambda: [m2.encode([q]) for q in prompts], None, 1),
        f"onnx 2 thr: default batching ({T} tokens)": (lambda: e[2].embed(prompts), "onnx 2 thr: single calls", 1),
        "onnx 2 thr: budget 512 (the default before)": (lambda: m2.encode(prompts, batch_size=16, max_batch_tokens=512), "onnx 2 thr: single calls", 1),
        "onnx int8 1 thr: single calls": (lambda: [e8.embed([q]) for q in prompts], None, 1),
        f"onnx int8 1 thr: embed(prompts), default ({T} tokens)": (lambda: e8.embed(prompts), "onnx int8 1 thr: single calls", 1),
        "onnx int8 1 thr: budget 512 (the default before)": (lambda: e8.model.encode(prompts, batch_size=16, max_batch_tokens=512), "onnx int8 1 thr: single calls", 1),
        "tokenizer: one encode per prompt": (lambda: [tok.encode(q) for q in prompts], None, 20),
        "tokenizer: encode_batch": (lambda: tok.encode_batch(prompts), "tokenizer: one encode per prompt", 20),
    }
    try:
        from unirouter.embedding.embedders import WordLlamaEmbedder

        w = WordLlamaEmbedder(memory_cache=0)
        w.embed(["warm-up"])
        wm = w.model
        modes.update(
            {
                "wordllama: single calls": (lambda: [w.embed([q]) for q in prompts], None, 20),
                "wordllama: its own embed (64 per batch, given order)": (lambda: wm.embed(prompts, norm=True), "wordllama: single calls", 20),
                "wordllama: WordLlamaEmbedder.embed (longest first, 8 per batch)": (lambda: w.embed(prompts), "wordllama: single calls", 20),
            }
        )
    except ImportError:
        pass

    names = list(modes)
    secs = {k: [] for k in names}
    for r in range(args.rounds):
        shift = r % len(names)
        for k in names[shift:] + names[:shift]:
            fn, _, reps = modes[k]
            s = time.perf_counter()
            for _ in range(reps):
                fn()
            secs[k].append((time.perf_counter() - s) / reps)
        print("round", r, flush=True)

    rows, raw = [], {}
    for k in names:
        v = np.array(secs[k])
        base = modes[k][1]
        if base is None:
            rows.append([k, f"{n / np.median(v):.0f}", "1 (baseline)", ""])
            raw[k] = {"prompts_per_s": n / float(np.median(v))}
            continue
        ratio = v / np.array(secs[base])
        rows.append([k, f"{n / np.median(v):.0f}", f"{np.median(ratio):.2f} [{ratio.min():.2f}, {ratio.max():.2f}]", f"{int((ratio < 1).sum())}/{args.rounds}"])
        raw[k] = {"prompts_per_s": n / float(np.median(v)), "paired_ratio_median": float(np.median(ratio)), "rounds_faster": int((ratio < 1).sum())}
    md = (
        f"{n} mixed prompts (median {int(np.median(lengths))} MiniLM tokens, max {max(lengths)}), {args.rounds} interleaved rounds in one process; "
        "ratio = time of the mode / time of single calls of the same embedder in the same round (median [min, max]; < 1: the batch is faster per prompt).\n\n"
        + table(["mode", "prompts/s (median)", "time ratio to single calls", "rounds faster"], rows)
        + "\n"
    )
    print(md)
    write_result("batching", title="Batching against single calls, per embedder (issue 20)", section_markdown=md, modes=raw, n=n, rounds=args.rounds)


if __name__ == "__main__":
    main()
