"""Route MMLU-Pro questions between real LLMs with unirouter's pre-trained router, in a LangChain chain.

    python examples/langchain_demo.py    # offline, no API key; about 30 s with a cold cache

What it does:

1. Builds chat models that answer exactly as real models did (their recorded MMLU-Pro answer
   letters, ``../shared/data/mmlu_pro``), reporting the token usage of the real generations, at the
   models' real list prices (``models.csv``).
2. Hands them to ``UniRouteChatModel.from_pretrained``: the models the bundle already knows
   (``gpt-4o-2024-05-13``, ...) use their stored profiles; one model the bundle does not know
   (``my-llama-70b``: Llama-3.1-70B-Instruct's recorded answers under a new name) is profiled on
   the bundled validation set (501 prompts; the estimated number of calls and cost is printed
   before any call, with a ``max_profiling_cost`` guard). Nothing is fitted.
3. Routes held-out MMLU-Pro questions (in neither the bundled validation set nor the bundle's
   training prompts) through ``prompt | chat | StrOutputParser()`` at a budget, printing each
   decision (model, predicted quality, expected cost).
4. Prints accuracy (from the replayed answers) and spend against always using the best model.

The only embedding work is the held-out questions (the bundled set ships its embeddings), so a
cold run is mostly loading the embedding model. Everything is seeded (``--seed``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mmlu_replay import ReplayChatModel, bundled_math_code_replies, load_mmlu
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from unirouter import TokenPrice
from unirouter.pretrained import known_models, manifest, validation_set
from unirouter.profiling.scorers import MultipleChoiceScorer

from unirouter_langchain import DECISION_EVENT, UniRouteChatModel

# Models the bundle knows, under the names it knows them by (also their MMLU-Pro record names).
KNOWN = (
    "gpt-4o-2024-05-13",
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "Mixtral-8x7B-Instruct-v0.1",
    "Phi-3-mini-4k-instruct",
)
# A model the bundle does not know by this name: it is profiled. It replays the records of a real
# model (MMLU-Pro and ZeroEval math/code), so its fresh profile can be checked against the stored one.
NEW_NAME, NEW_RECORDS = "my-llama-70b", "Meta-Llama-3.1-70B-Instruct"
SYSTEM = "Answer the multiple-choice question. Think step by step, then finish with 'The answer is (X)'."


class LastDecision(BaseCallbackHandler):
    """Keeps the router's latest ``unirouter_decision`` callback event."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == DECISION_EVENT:
            self.record = data


def held_out(mmlu: Any, record_names: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` MMLU-Pro questions every replayed model answered, seen neither in the bundled
    validation set nor among the bundle's training prompts (the build's own seeded selection)."""
    from unirouter.data.datasets import default_data_dir
    from unirouter.pretrained.build import load_families, select_training, select_validation

    ds = mmlu.dataset
    fam = load_families(default_data_dir())
    groups = manifest()["validation"]["groups"]  # prompts per group, as the build chose them
    per_category = max(n for g, n in groups.items() if g.startswith("mmlu_pro/"))
    per_task = max(n for g, n in groups.items() if not g.startswith("mmlu_pro/"))
    val = select_validation(fam, per_category=per_category, per_task=per_task, seed=manifest()["seed"])
    if {fam["items"][i].text for i in val} != set(validation_set().prompts):
        sys.exit("cannot reproduce the bundle's prompt selection from ../shared/data (another data version?)")
    train = select_training(fam, val, max_per_source=manifest()["training"]["max_per_source"], seed=manifest()["seed"])
    seen = {fam["items"][i].text for i in (*val, *train)}
    counts: dict[str, int] = {}
    for t in ds.texts:
        counts[t] = counts.get(t, 0) + 1
    rows = [int(i) for i in ds.complete_rows(record_names) if counts[ds.texts[i]] == 1 and ds.texts[i] not in seen]
    pick = np.random.default_rng(seed).permutation(rows)[:n]
    return [ds.texts[i] for i in pick], [ds.answers[i] for i in pick]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-test", type=int, default=30, help="held-out questions routed")
    parser.add_argument("--budget-share", type=float, default=0.3, help="budget, as a share of the best model's cost per query")
    parser.add_argument("--method", default="difficulty", choices=("difficulty", "kmeans", "learned"))
    parser.add_argument("--max-profiling-cost", type=float, default=1.0, help="USD; refuse to profile above this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    print("Loading the recorded answers of real models (MMLU-Pro, ZeroEval math/code) ...")
    mmlu = load_mmlu()
    stored = {m["name"]: m for m in known_models(args.method)}
    sources = stored[NEW_RECORDS]["source_names"]
    chats: dict[str, ReplayChatModel] = {}
    prices: dict[str, TokenPrice] = {}
    for name, record in [(n, n) for n in KNOWN] + [(NEW_NAME, sources["mmlu_pro"])]:
        book = mmlu.book(record)
        book.name = name
        if name == NEW_NAME:
            book.replies = bundled_math_code_replies(sources["zeroeval_math_code"])
        chats[name] = ReplayChatModel(book=book)
        prices[name] = TokenPrice(input_per_mtok=book.price_in, output_per_mtok=book.price_out)

    print(f"\n[1/3] UniRouteChatModel.from_pretrained: {len(KNOWN)} models the bundle knows, 1 it does not ({NEW_NAME})")
    t0 = time.perf_counter()
    chat = UniRouteChatModel.from_pretrained(
        chats,
        costs={NEW_NAME: prices[NEW_NAME]},  # known models keep their stored list prices
        method=args.method,
        max_profiling_cost=args.max_profiling_cost,
        response_cache=None,  # replayed answers do not belong in your real profiling cache
        profile_kwargs={"progress": True, "max_concurrency": 16},
    )
    router = chat.pool.router
    print(f"  ready in {time.perf_counter() - t0:.1f} s; validation accuracy on the bundled set and cost per query:")
    for name in chat.pool.names:
        p = router.get_profile(name)
        note = "profiled now" if name == NEW_NAME else "stored profile"
        print(f"  {name:<28} {100 * p.accuracy:5.1f}%   ${p.cost_per_query:.6f}/query   ({note})")
    print(f"  check: {NEW_RECORDS}'s stored profile (same records) says {100 * stored[NEW_RECORDS]['validation_accuracy']:.1f}%")

    best = max(chat.pool.names, key=lambda n: router.get_profile(n).accuracy)
    budget = args.budget_share * router.get_profile(best).cost_per_query
    questions, refs = held_out(mmlu, [sources["mmlu_pro"] if n == NEW_NAME else n for n in chats], args.n_test, args.seed)
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
    chain = prompt | chat | StrOutputParser()

    print(
        f"\n[2/3] Routing {len(questions)} held-out MMLU-Pro questions through prompt | chat | StrOutputParser()\n"
        f"  budget ${budget:.6f}/query = {100 * args.budget_share:.0f}% of always-{best}'s cost on the bundled set "
        f"(the cost weight is calibrated to it there)"
    )
    router.embedder_.embed(questions)  # one batch now; each routed call then finds its vector cached
    print(f"  {'#':>3}  {'routed to':<28} {'pred. quality':>13} {'exp. cost':>10}  {'right?':>6}")
    scorer = MultipleChoiceScorer()
    replies, right = [], []
    with get_usage_metadata_callback() as usage:
        for k, (q, ref) in enumerate(zip(questions, refs), 1):
            seen = LastDecision()
            reply = chain.invoke({"question": q}, config={"configurable": {"unirouter_budget": budget}, "callbacks": [seen]})
            d = seen.record
            ok = scorer.score(q, reply, ref) == 1.0
            replies.append(reply)
            right.append(ok)
            quality = 1.0 - d["predicted_error"][d["model"]]
            print(f"  {k:>3}  {d['answered_by']:<28} {100 * quality:12.1f}% {d['expected_cost'][d['model']]:10.6f}  {'yes' if ok else 'no':>6}")
    spend = sum(prices[m].cost(u["input_tokens"], u["output_tokens"]) for m, u in usage.usage_metadata.items())

    with get_usage_metadata_callback() as usage_best:
        best_replies = chain.batch([{"question": q} for q in questions], config={"configurable": {"unirouter": {"force_model": best}}})
    best_spend = sum(prices[m].cost(u["input_tokens"], u["output_tokens"]) for m, u in usage_best.usage_metadata.items())
    best_right = [scorer.score(q, r, ref) == 1.0 for q, r, ref in zip(questions, best_replies, refs)]

    n = len(questions)
    print(f"\n[3/3] Summary over {n} held-out questions (accuracy from the replayed answers):")
    print(f"  UniRoute (budget ${budget:.6f})   accuracy {100 * np.mean(right):5.1f}%   spend ${spend:.5f} (${spend / n:.6f}/query)")
    print(f"  always {best:<22} accuracy {100 * np.mean(best_right):5.1f}%   spend ${best_spend:.5f} (${best_spend / n:.6f}/query)")
    print(f"  UniRoute spent {100 * spend / best_spend:.0f}% of what always-{best} cost.")
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
