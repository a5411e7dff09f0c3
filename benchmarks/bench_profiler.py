"""Profiler throughput: a simulated model with 200 ms latency, 500 prompts, concurrency 32.

The ideal wall time is 500 x 0.2 s / 32 = 3.125 s (a semaphore runs ceil(500/32) = 16 waves, so
3.2 s is the practical floor); the target is within 20% of the ideal. No embedding model is needed:
the router is fitted on random unit embeddings with a ValidationSet of 500 synthetic prompts.

Scenarios: an async model; the same with a ResponseCache (every response written and flushed as it
arrives); a sync model (run in threads); and re-adding the model from the cache (zero calls).

Run:  python benchmarks/bench_profiler.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import command, machine  # noqa: E402

from unirouter import CallableEmbedder, UniRouter, ValidationSet  # noqa: E402
from unirouter.profiling.profiler import ResponseCache, TokenPrice  # noqa: E402

N_PROMPTS, LATENCY, CONCURRENCY = 500, 0.2, 32
IDEAL = N_PROMPTS * LATENCY / CONCURRENCY
LETTERS = "ABCDEFGHIJ"


def make_router(seed: int = 0) -> UniRouter:
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        x = rng.normal(size=(n, 16)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    prompts = [f"Synthetic question {i}: which option is right?" for i in range(N_PROMPTS)]
    refs = [LETTERS[i % 10] for i in range(N_PROMPTS)]
    vs = ValidationSet(prompts, references=refs)
    emb = CallableEmbedder(lambda t: unit(len(t)), name="bench-random-16", dim=16)
    router = UniRouter(n_clusters=10, random_state=seed, embedder=emb)
    return router.fit(embeddings=unit(2000), validation=vs, validation_embeddings=unit(N_PROMPTS))


def answer(prompt: str) -> tuple[str, dict[str, int]]:
    i = int(prompt.split()[2].rstrip(":"))
    letter = LETTERS[i % 10] if i % 3 else LETTERS[(i + 1) % 10]  # two thirds right
    return f"The answer is ({letter}).", {"input_tokens": 12, "output_tokens": 6}


class AsyncModel:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, prompt: str):
        self.calls += 1
        await asyncio.sleep(LATENCY)
        return answer(prompt)


class SyncModel:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompt: str):
        self.calls += 1
        time.sleep(LATENCY)
        return answer(prompt)


def timed_add(router: UniRouter, name: str, model, **kw):
    t0 = time.perf_counter()
    profile = router.add_model(
        name, model=model, scorer="multiple_choice", cost=TokenPrice(input_per_mtok=1, output_per_mtok=4),
        max_concurrency=CONCURRENCY, progress=False, replace=True, **kw,
    )  # fmt: skip
    return time.perf_counter() - t0, profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "profiler.json"))
    args = ap.parse_args()
    started_on = machine()  # records the machine load before the run

    router = make_router()
    rows = []
    for scenario in ("async model", "async model + ResponseCache", "sync model (threads)", "re-add from cache"):
        times, calls = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                kw = {}
                if "cache" in scenario.lower():
                    kw["cache"] = ResponseCache(tmp)
                if scenario == "re-add from cache":
                    timed_add(router, "sim", AsyncModel(), **kw)  # fill the cache, not timed
                model = SyncModel() if scenario.startswith("sync") else AsyncModel()
                wall, profile = timed_add(router, "sim", model, **kw)
                assert profile.stats.calls_failed == 0 and abs(profile.accuracy - 2 / 3) < 0.01
                times.append(wall)
                calls.append(model.calls)
        med = statistics.median(times)
        ideal = 0.0 if scenario == "re-add from cache" else IDEAL
        rows.append({
            "scenario": scenario, "calls": calls[0], "wall_s_median": round(med, 3),
            "wall_s_all": [round(t, 3) for t in times], "ideal_s": ideal,
            "ratio_to_ideal": round(med / ideal, 3) if ideal else None,
        })  # fmt: skip
        print(f"{scenario:30s} calls={calls[0]:4d} wall={med:6.3f}s" + (f" ratio={med / ideal:.3f}" if ideal else ""), flush=True)

    head = "| scenario | calls | wall time (median) | ideal | wall / ideal |\n|---|---:|---:|---:|---:|\n"
    body = "".join(
        f"| {r['scenario']} | {r['calls']} | {r['wall_s_median']:.3f} s | "
        + (f"{r['ideal_s']:.3f} s | {r['ratio_to_ideal']:.3f} |\n" if r["ideal_s"] else "- | - |\n")
        for r in rows
    )
    main_ratio = rows[0]["ratio_to_ideal"]
    verdict = "within" if main_ratio <= 1.2 else "NOT within"
    section = (
        f"Simulated model with {LATENCY * 1000:.0f} ms latency, {N_PROMPTS} validation prompts, "
        f"max_concurrency={CONCURRENCY}; ideal = {N_PROMPTS} x {LATENCY} s / {CONCURRENCY} = {IDEAL:.3f} s "
        f"(16 semaphore waves make 3.2 s the practical floor). Median of {args.repeats} runs.\n\n"
        + head + body
        + f"\nThe async model takes {main_ratio:.3f}x the ideal: {verdict} the 20% target. "
        "Re-adding with the cache makes zero calls.\n"
    )  # fmt: skip
    print()
    print(head + body)
    result = {
        "title": "Profiler throughput (simulated 200 ms model, 500 prompts, concurrency 32)",
        "command": command(),
        "date": date.today().isoformat(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": started_on,
        "section_markdown": section,
        "n_prompts": N_PROMPTS,
        "latency_s": LATENCY,
        "max_concurrency": CONCURRENCY,
        "ideal_s": IDEAL,
        "target_ratio": 1.2,
        "meets_target": bool(main_ratio <= 1.2),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
