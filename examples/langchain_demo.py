"""Route MMLU-Pro questions between real LLMs with a UniRoute router inside a LangChain chain.

    python examples/langchain_demo.py    # offline; ~3 CPU-minutes with a cold embedding cache, ~25 s warm

What it does:

1. Builds six chat models that answer MMLU-Pro questions exactly as six real models did (their
   recorded answers, ``../shared/data/mmlu_pro``), reporting token usage of the real generations,
   priced at the models' real list prices (``models.csv``).
2. Fits a UniRoute K-means router on unlabelled training questions (real MiniLM embeddings).
3. Adds the six models to a ``UniRouteRunnable``: each is profiled on 300 labelled validation
   questions (progress bar), which is all a new model ever needs.
4. Answers 300 held-out questions through ``prompt | router | StrOutputParser()`` at three cost
   budgets, and prints accuracy and cost against always using the best model.
5. Adds a seventh model (cheap and good) and shows how routing changes, without refitting.

With ``--live`` and ``OPENAI_API_KEY`` set (``pip install langchain-openai``), the candidates are
real OpenAI models instead: they are profiled by calling them (one call per validation question
and model) and the held-out questions are answered live; this costs a few US dollars with the
default sizes (mostly gpt-4o), so shrink it with ``--n-val 100 --n-test 100``.

Embedding 2,100 questions with MiniLM dominates a cold run; embeddings are cached on disk
(``~/.cache/unirouter``, or ``$UNIROUTER_CACHE_DIR``), so later runs take seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mmlu_replay import load_mmlu, replay_chat_models
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from unirouter import SentenceTransformerEmbedder, UniRouter, ValidationSet
from unirouter.embedding.embedders import default_cache_dir
from unirouter.profiling.profiler import TokenPrice
from unirouter.profiling.scorers import MultipleChoiceScorer

from unirouter_langchain import DECISION_EVENT, UniRouteRunnable

INITIAL = (
    "gpt-4o-2024-05-13",
    "gemini-1.5-pro-002",
    "Meta-Llama-3_1-70B-Instruct",
    "Mixtral-8x7B-Instruct-v0.1",
    "Meta-Llama-3_1-8B-Instruct",
    "Phi-3-mini-4k-instruct",
)
ADDED = "gemini-1.5-flash-002"
# Live mode: (model, USD per Mtok in, USD per Mtok out); the last one is added at step 5.
LIVE = (("gpt-4o", 2.5, 10.0), ("gpt-4o-mini", 0.15, 0.6), ("gpt-4.1-nano", 0.1, 0.4), ("gpt-4.1-mini", 0.4, 1.6))
SYSTEM = "Answer the multiple-choice question. Think step by step, then finish with 'The answer is (X)'."


class DecisionCounter(BaseCallbackHandler):
    """Counts which model answered, from the router's ``unirouter_decision`` callback events."""

    def __init__(self) -> None:
        self.answered: Counter[str] = Counter()

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == DECISION_EVENT:
            self.answered[data["answered_by"]] += 1


def split(mmlu: Any, names: list[str], n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, Any]:
    """Disjoint train / validation / test questions on which every model has a record."""
    ds = mmlu.dataset
    rows = ds.complete_rows(names)
    first: dict[str, int] = {}
    for i in rows:
        first.setdefault(ds.texts[i], int(i))
    rows = np.array(sorted(first.values()))
    pick = np.random.default_rng(seed).permutation(rows)[: n_train + n_val + n_test]
    parts = {"train": pick[:n_train], "val": pick[n_train : n_train + n_val], "test": pick[n_train + n_val :]}
    return {k: ([ds.texts[i] for i in v], [ds.answers[i] for i in v]) for k, v in parts.items()}


def evaluate(chain: Any, questions: list[str], answers: list[str], prices: dict[str, TokenPrice], routing: dict[str, Any]) -> dict[str, Any]:
    """Answer every question through the chain with these routing options; accuracy and cost."""
    counter = DecisionCounter()
    config = {"configurable": {"unirouter": routing}, "callbacks": [counter], "max_concurrency": 16}
    with get_usage_metadata_callback() as usage:
        replies = chain.batch([{"question": q} for q in questions], config=config)
    scores, _ = MultipleChoiceScorer().score_many(questions, replies, answers)
    cost = sum(prices[m].cost(u["input_tokens"], u["output_tokens"]) for m, u in usage.usage_metadata.items())
    return {"accuracy": float(np.mean(scores)), "cost": cost / len(questions), "answered": counter.answered}


def report(title: str, rows: list[tuple[str, dict[str, Any]]], names: list[str], best: dict[str, Any]) -> None:
    print(f"\n{title}")
    short = {n: n.replace("Meta-Llama-3_1", "Llama-3.1").replace("-Instruct", "-I").replace("-2024-05-13", "") for n in names}
    print(f"  {'policy':<24} {'accuracy':>8} {'$/query':>10} {'cost vs best':>12}   share of questions")
    for label, r in rows:
        total = sum(r["answered"].values())
        shares = ", ".join(f"{short[n]} {100 * c / total:.0f}%" for n, c in r["answered"].most_common())
        rel = r["cost"] / best["cost"]
        print(f"  {label:<24} {100 * r['accuracy']:7.1f}% {r['cost']:10.6f} {100 * rel:11.1f}%   {shares}")


def build_models(args: argparse.Namespace, mmlu: Any) -> tuple[dict[str, Any], dict[str, TokenPrice], str]:
    """(initial chat models, prices of all models, the name of the model added later)."""
    if args.live:
        try:
            from langchain_openai import ChatOpenAI
        except ImportError:
            sys.exit("--live needs langchain-openai: pip install langchain-openai")
        if not os.environ.get("OPENAI_API_KEY"):
            sys.exit("--live needs OPENAI_API_KEY in the environment")
        prices = {n: TokenPrice(input_per_mtok=pi, output_per_mtok=po) for n, pi, po in LIVE}
        models = {n: ChatOpenAI(model=n, temperature=0, max_retries=0) for n, _, _ in LIVE}
        return models, prices, LIVE[-1][0]
    names = [*INITIAL, ADDED]
    prices = {n: TokenPrice(input_per_mtok=mmlu.price(n)[0], output_per_mtok=mmlu.price(n)[1]) for n in names}
    return replay_chat_models(mmlu, names), prices, ADDED


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=1500, help="unlabelled training questions (K-means)")
    parser.add_argument("--n-val", type=int, default=300, help="labelled validation questions (profiling)")
    parser.add_argument("--n-test", type=int, default=300, help="held-out questions answered per policy")
    parser.add_argument("--clusters", type=int, default=12)
    parser.add_argument("--budgets", type=float, nargs=3, default=(0.0001, 0.0003, 0.001), help="USD per query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--live", action="store_true", help="use real OpenAI models (needs OPENAI_API_KEY)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    print("Loading MMLU-Pro (12,032 questions, 31 real models) ...")
    mmlu = load_mmlu()
    all_models, prices, added = build_models(args, mmlu)
    initial = {n: m for n, m in all_models.items() if n != added}
    record_names = [*INITIAL, ADDED]  # questions every replayed model has answered
    data = split(mmlu, record_names, args.n_train, args.n_val, args.n_test, args.seed)
    (train, _), (val, val_ref), (test, test_ref) = data["train"], data["val"], data["test"]

    print(f"\n[1/4] Fitting the router: K-means (K={args.clusters}) on {len(train)} unlabelled questions")
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir(), show_progress=True)
    router = UniRouter(n_clusters=args.clusters, random_state=args.seed, embedder=embedder)
    router.fit(train, validation=ValidationSet(val, references=val_ref))

    print(f"\n[2/4] Adding {len(initial)} models to a UniRouteRunnable: each is profiled on {len(val)} validation questions")
    uniroute = UniRouteRunnable(
        router,
        initial,
        costs={n: prices[n] for n in initial},
        scorer=MultipleChoiceScorer(),
        profile_kwargs={"progress": True, "max_concurrency": 16},
    )
    for name in uniroute.models:
        p = router.get_profile(name)
        print(f"  {name:<30} validation accuracy {100 * p.accuracy:5.1f}%   ${p.cost_per_query:.6f}/query")

    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
    chain = prompt | uniroute | StrOutputParser()
    best_name = max(uniroute.models, key=lambda n: router.get_profile(n).accuracy)

    def policies(names: list[str], title: str) -> dict[str, Any]:
        rows = [(f"always {best_name[:17]}", evaluate(chain, test, test_ref, prices, {"force_model": best_name}))]
        for b in args.budgets:
            rows.append((f"UniRoute budget ${b:g}", evaluate(chain, test, test_ref, prices, {"budget": b})))
        report(title, rows, names, rows[0][1])
        return dict(rows)

    print(f"\n[3/4] Answering {len(test)} held-out questions through prompt | router | StrOutputParser()")
    before = policies(list(initial), f"{len(initial)} models, {len(test)} held-out questions:")

    print(f"\n[4/4] Adding {added} (profiled on the same {len(val)} questions; nothing is refitted)")
    uniroute.add_model(added, all_models[added], cost=prices[added])
    p = router.get_profile(added)
    print(f"  {added:<30} validation accuracy {100 * p.accuracy:5.1f}%   ${p.cost_per_query:.6f}/query")
    after = policies(list(all_models), f"{len(all_models)} models, same questions:")

    print("\nHow routing changed at each budget:")
    for b in args.budgets:
        key = f"UniRoute budget ${b:g}"
        r0, r1 = before[key], after[key]
        moved = r1["answered"].get(added, 0)
        print(
            f"  ${b:g}/query: accuracy {100 * r0['accuracy']:.1f}% -> {100 * r1['accuracy']:.1f}%, "
            f"cost ${r0['cost']:.6f} -> ${r1['cost']:.6f}, {moved} of {len(test)} questions now go to {added}"
        )
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
