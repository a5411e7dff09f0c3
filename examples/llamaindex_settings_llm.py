"""``Settings.llm = UniRouteLLM(...)``: every LlamaIndex LLM call goes to the best model for it.

    python examples/llamaindex_settings_llm.py          # offline, about 1-3 minutes on a laptop CPU
    python examples/llamaindex_settings_llm.py --live   # real OpenAI models (see below)

What it does:

1. Builds five LlamaIndex LLMs that answer MMLU-Pro questions exactly as five real models did (their
   recorded answers, ``../shared/data/mmlu_pro``), reporting the token usage of the real
   generations, priced at the models' real list prices.
2. Fits a UniRoute K-means router on unlabelled training questions (real MiniLM embeddings).
3. Sets ``Settings.llm = UniRouteLLM(router, models, costs=..., scorer=...)``: construction profiles
   each model on the labelled validation questions (one ``achat`` per question, through the core
   profiler), which is all a new model ever needs.
4. Answers held-out questions with ``Settings.llm.achat(...)`` under three policies (always the best
   model, best predicted quality, and a cost budget) and prints accuracy and cost.
5. Shows the decision attached to a response, the instrumentation events, and save/load.

With ``--live``, ``OPENAI_API_KEY`` set and ``pip install llama-index-llms-openai``, the candidates
are real OpenAI models: each is profiled by calling it on the validation questions (a few US cents
with the defaults) and the held-out questions are answered live.

Embeddings are cached on disk (``~/.cache/unirouter``), so a second run is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _llamaindex_replay import MODELS, ReplayLLM, split  # noqa: E402
from _mmlu_replay import load_mmlu  # noqa: E402
from llama_index.core import ChatPromptTemplate, Settings  # noqa: E402
from llama_index.core.bridge.pydantic import Field  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from unirouter import SentenceTransformerEmbedder, UniRouter, ValidationSet  # noqa: E402
from unirouter.embedding.embedders import default_cache_dir  # noqa: E402
from unirouter.profiling.profiler import TokenPrice  # noqa: E402
from unirouter.profiling.scorers import MultipleChoiceScorer  # noqa: E402

from unirouter_llamaindex import UniRouteDecisionEvent, UniRouteLLM  # noqa: E402

# Live mode: (OpenAI model, USD per Mtok in, USD per Mtok out).
LIVE = (("gpt-4o", 2.5, 10.0), ("gpt-4o-mini", 0.15, 0.6), ("gpt-4.1-nano", 0.1, 0.4))
SYSTEM = "Answer the multiple-choice question. Think step by step, then finish with 'The answer is (X)'."
PROMPT = ChatPromptTemplate.from_messages([("system", SYSTEM), ("user", "{question}")])


class Decisions(BaseEventHandler):
    """Counts the UniRouteDecisionEvents that LlamaIndex instrumentation delivers."""

    answered: Counter = Field(default_factory=Counter)

    @classmethod
    def class_name(cls) -> str:
        return "Decisions"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, UniRouteDecisionEvent):
            self.answered[event.record["answered_by"]] += 1


def build_models(live: bool, mmlu: Any) -> tuple[dict[str, Any], dict[str, TokenPrice]]:
    if live:
        try:
            from llama_index.llms.openai import OpenAI
        except ImportError:
            sys.exit("--live needs llama-index-llms-openai: pip install llama-index-llms-openai")
        if not os.environ.get("OPENAI_API_KEY"):
            sys.exit("--live needs OPENAI_API_KEY in the environment")
        prices = {n: TokenPrice(input_per_mtok=pi, output_per_mtok=po) for n, pi, po in LIVE}
        return {n: OpenAI(model=n, temperature=0.0, max_retries=0) for n, _, _ in LIVE}, prices
    prices = {n: TokenPrice(input_per_mtok=mmlu.price(n)[0], output_per_mtok=mmlu.price(n)[1]) for n in MODELS}
    return {n: ReplayLLM(mmlu.book(n)) for n in MODELS}, prices


async def answer_all(questions: list[str], answers: list[str], prices: dict[str, TokenPrice], **options: Any) -> dict[str, Any]:
    """Answer every question through ``Settings.llm`` with these per-call routing options."""
    llm = Settings.llm
    responses = await asyncio.gather(*(llm.achat(PROMPT.format_messages(question=q), **options) for q in questions))
    replies = [r.message.content or "" for r in responses]
    scores, _ = MultipleChoiceScorer().score_many(questions, replies, answers)
    cost, answered = 0.0, Counter()
    for r in responses:
        model = r.additional_kwargs["unirouter"]["answered_by"]
        answered[model] += 1
        cost += prices[model].cost(r.additional_kwargs.get("prompt_tokens", 0), r.additional_kwargs.get("completion_tokens", 0))
    return {"accuracy": float(np.mean(scores)), "cost": cost / len(questions), "answered": answered}


def report(rows: list[tuple[str, dict[str, Any]]]) -> None:
    best = rows[0][1]
    print(f"  {'policy':<26} {'accuracy':>8} {'$/query':>10} {'cost vs best':>12}   share of questions")
    for label, r in rows:
        total = sum(r["answered"].values())
        shares = ", ".join(f"{n.replace('Meta-Llama-3_1', 'Llama-3.1')} {100 * c / total:.0f}%" for n, c in r["answered"].most_common())
        print(f"  {label:<26} {100 * r['accuracy']:7.1f}% {r['cost']:10.6f} {100 * r['cost'] / best['cost']:11.1f}%   {shares}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=600, help="unlabelled training questions (K-means)")
    parser.add_argument("--n-val", type=int, default=250, help="labelled validation questions (profiling)")
    parser.add_argument("--n-test", type=int, default=150, help="held-out questions answered per policy")
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--budget", type=float, default=0.0002, help="USD per query for the budget policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--live", action="store_true", help="use real OpenAI models (needs OPENAI_API_KEY)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    print("Loading MMLU-Pro (12,032 questions, 31 real models) ...")
    mmlu = load_mmlu()
    models, prices = build_models(args.live, mmlu)
    data = split(mmlu.dataset, list(MODELS), (args.n_train, args.n_val, args.n_test), args.seed)
    (train, _, _), (val, val_ref, _), (test, test_ref, _) = data["train"], data["val"], data["test"]

    print(f"\n[1/4] Fitting the router: K-means (K={args.clusters}) on {len(train)} unlabelled questions")
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir(), show_progress=True)
    router = UniRouter(n_clusters=args.clusters, random_state=args.seed, embedder=embedder)
    router.fit(train, validation=ValidationSet(val, references=val_ref))
    embedder.embed(test)  # warm the cache in one batch; each routed call then embeds from the cache

    print(f"\n[2/4] Settings.llm = UniRouteLLM(...): profiling {len(models)} models on {len(val)} validation questions")
    Settings.llm = UniRouteLLM(
        router,
        models,
        costs=prices,
        scorer=MultipleChoiceScorer(),
        profile_kwargs={"progress": True, "max_concurrency": 16},
    )
    for name in Settings.llm.models:
        p = router.get_profile(name)
        print(f"  {name:<30} validation accuracy {100 * p.accuracy:5.1f}%   ${p.cost_per_query:.6f}/query")
    meta = Settings.llm.metadata
    print(f"  metadata: context_window={meta.context_window}, is_function_calling_model={meta.is_function_calling_model}")

    print(f"\n[3/4] Answering {len(test)} held-out questions with Settings.llm.achat(...)")
    handler = Decisions()
    get_dispatcher().add_event_handler(handler)
    best = max(Settings.llm.models, key=lambda n: router.get_profile(n).accuracy)
    rows = [
        (f"always {best[:19]}", asyncio.run(answer_all(test, test_ref, prices, force_model=best))),
        ("UniRoute, quality only", asyncio.run(answer_all(test, test_ref, prices, cost_weight=0.0))),
        (f"UniRoute, budget ${args.budget:g}", asyncio.run(answer_all(test, test_ref, prices, budget=args.budget))),
    ]
    report(rows)
    print(f"  instrumentation: {sum(handler.answered.values())} UniRouteDecisionEvents received")

    print("\n[4/4] One response, its decision, and save/load")
    question = test[0]
    response = Settings.llm.chat(PROMPT.format_messages(question=question), budget=args.budget)
    record = response.additional_kwargs["unirouter"]
    print(f"  Q: {' '.join(question.split())[:100]} ...")
    print(f"  A: {response.message.content!r}  (reference {test_ref[0]})")
    print(f"  answered_by={record['answered_by']}  cost_weight={record['cost_weight']:.1f}  fallbacks={record['ranked'][1:3]}")
    print("  predicted error: " + ", ".join(f"{n} {e:.2f}" for n, e in record["predicted_error"].items()))
    with tempfile.TemporaryDirectory() as tmp:
        Settings.llm.save(Path(tmp) / "router")
        fresh = build_models(args.live, mmlu)[0]
        loaded = UniRouteLLM.load(Path(tmp) / "router", models=fresh, embedder=embedder)
        same = all(loaded.route(q).model == Settings.llm.route(q).model for q in test[:50])
        calls = sum(len(m._book.calls) for m in fresh.values()) if not args.live else "n/a"
        print(f"  saved and reloaded: same decisions on 50 questions: {same}; profiling calls on reload: {calls}")
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
