"""A ``RouterQueryEngine`` whose query engines use different LLMs, routed by ``UniRouteSelector``.

    python examples/llamaindex_router_query_engine.py      # offline, about 1-3 minutes on a laptop CPU

What it does:

1. Builds a small local document index offline: a ``VectorStoreIndex`` of solved MMLU-Pro questions
   ("worked examples"), embedded with the local MiniLM model (no download, no API key).
2. Makes one query engine per LLM over that index. The LLMs answer MMLU-Pro questions exactly as
   three real models did (recorded answers, ``../shared/data/mmlu_pro``): GPT-4o, Gemini 1.5 Flash
   and Llama-3.1-8B-Instruct, at very different prices.
3. Fits a UniRoute router on unlabelled questions and profiles the three LLMs on labelled validation
   questions (``UniRouteLLM(...)`` profiles them; the selector reads the same profiles).
4. Puts the engines behind ``RouterQueryEngine(selector=UniRouteSelector(...))``: for each question
   the selector picks the engine whose LLM has the lowest predicted error + cost_weight * cost, and
   says why. No LLM is called to select.
5. Compares selectors with three cost weights on held-out questions (``aquery``, concurrently).

With real providers, replace the replay LLMs by e.g. ``OpenAI(model=...)`` and ``Anthropic(...)``
(``pip install llama-index-llms-openai``, keys in the environment); nothing else changes.
"""

from __future__ import annotations

import argparse
import asyncio
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

from _llamaindex_replay import MODELS, LocalEmbedding, ReplayLLM, split  # noqa: E402
from _mmlu_replay import load_mmlu  # noqa: E402
from llama_index.core import Document, PromptTemplate, VectorStoreIndex  # noqa: E402
from llama_index.core.query_engine import RouterQueryEngine  # noqa: E402
from llama_index.core.tools import QueryEngineTool  # noqa: E402
from unirouter import SentenceTransformerEmbedder, UniRouter, ValidationSet  # noqa: E402
from unirouter.embedding.embedders import default_cache_dir  # noqa: E402
from unirouter.profiling.profiler import TokenPrice  # noqa: E402
from unirouter.profiling.scorers import MultipleChoiceScorer  # noqa: E402

from unirouter_llamaindex import UniRouteLLM, UniRouteSelector  # noqa: E402

ENGINES = ("gpt-4o-2024-05-13", "gemini-1.5-flash-002", "Meta-Llama-3_1-8B-Instruct")
QA = PromptTemplate(
    "Solved examples from the course notes:\n{context_str}\n\n"
    "Answer the question below. Think step by step, then finish with 'The answer is (X)'.\n\n{query_str}"
)


def build_index(questions: list[str], answers: list[str], embedder: Any) -> VectorStoreIndex:
    docs = [Document(text=f"Worked example.\n{q}\nCorrect answer: ({a})") for q, a in zip(questions, answers)]
    return VectorStoreIndex.from_documents(docs, embed_model=LocalEmbedding(embedder))


def run(engine: RouterQueryEngine, questions: list[str]) -> list[Any]:
    async def go() -> list[Any]:
        return await asyncio.gather(*(engine.aquery(q) for q in questions))

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=600, help="unlabelled training questions (K-means)")
    parser.add_argument("--n-val", type=int, default=250, help="labelled validation questions (profiling)")
    parser.add_argument("--n-test", type=int, default=150, help="held-out questions")
    parser.add_argument("--n-docs", type=int, default=40, help="solved examples in the document index")
    parser.add_argument("--cost-weight", type=float, default=100.0, help="lambda of the cost-aware selector")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    print("Loading MMLU-Pro (12,032 questions, 31 real models) ...")
    mmlu = load_mmlu()
    ds = mmlu.dataset
    data = split(ds, MODELS, (args.n_train, args.n_val, args.n_test), args.seed)
    (train, _, _), (val, val_ref, _), (test, test_ref, test_rows) = data["train"], data["val"], data["test"]

    print(f"\n[1/4] Fitting the router on {len(train)} unlabelled questions; indexing {args.n_docs} solved examples")
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir(), show_progress=True)
    router = UniRouter(n_clusters=10, random_state=args.seed, embedder=embedder)
    router.fit(train, validation=ValidationSet(val, references=val_ref))
    embedder.embed(test)  # warm the cache in one batch (the selector and the retriever embed each query)
    index = build_index(val[: args.n_docs], val_ref[: args.n_docs], embedder)

    print(f"\n[2/4] Profiling the engines' LLMs on {len(val)} validation questions")
    llms = {n: ReplayLLM(mmlu.book(n)) for n in ENGINES}
    prices = {n: TokenPrice(input_per_mtok=mmlu.price(n)[0], output_per_mtok=mmlu.price(n)[1]) for n in ENGINES}
    UniRouteLLM(router, llms, costs=prices, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False})
    for name in ENGINES:
        p = router.get_profile(name)
        print(f"  {name:<28} validation accuracy {100 * p.accuracy:5.1f}%   ${p.cost_per_query:.6f}/query")

    tools = [
        QueryEngineTool.from_defaults(
            index.as_query_engine(llm=llms[n], similarity_top_k=2, text_qa_template=QA),
            name=n,  # the tool's name is the profiled model's name
            description=f"Course notes, answered by {n}.",
        )
        for n in ENGINES
    ]

    def engine(cost_weight: float) -> RouterQueryEngine:
        selector = UniRouteSelector(router, options={"cost_weight": cost_weight})
        return RouterQueryEngine(selector=selector, query_engine_tools=tools, llm=llms[ENGINES[1]])

    print("\n[3/4] Three questions through the cost-aware RouterQueryEngine")
    cost_aware = engine(args.cost_weight)
    for q, ref in list(zip(test, test_ref))[:3]:
        response = cost_aware.query(q)
        print(f"  Q: {' '.join(q.split())[:90]} ...")
        print(f"     selector: {response.metadata['selector_result'].reason}")
        print(f"     answer: {str(response)!r}  (reference {ref}); sources: {len(response.source_nodes)} solved examples")

    print(f"\n[4/4] {len(test)} held-out questions through RouterQueryEngine.aquery, three cost weights")
    print(f"  {'selector':<24} {'accuracy':>8} {'$/query':>10}   engines used")
    scorer = MultipleChoiceScorer()
    lams = (0.0, args.cost_weight / 10, args.cost_weight)
    for policy, lam in zip(("quality first", "balanced", "cost-aware"), lams):
        label = f"{policy} ({lam:g})"
        responses = run(engine(lam), test)
        picked = [ENGINES[r.metadata["selector_result"].ind] for r in responses]
        scores, _ = scorer.score_many(test, [str(r) for r in responses], test_ref)
        cost = np.mean([ds.cost[row, ds.model_index([m])[0]] for row, m in zip(test_rows, picked)])
        shares = ", ".join(f"{m} {100 * c / len(test):.0f}%" for m, c in Counter(picked).most_common())
        print(f"  {label:<24} {100 * np.mean(scores):7.1f}% {cost:10.6f}   {shares}")
    print("  ($/query: the recorded cost of each question for the model that answered it.)")
    print(f"\nDone in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
