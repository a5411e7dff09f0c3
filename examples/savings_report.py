"""Prove the router pays: a savings report against always using the best model.

    python examples/savings_report.py            # offline, ~1 CPU-minute warm (embeddings cached)
    unirouter savings <out>/savings.jsonl --by-session --plot <out>/savings.png

What it does:

1. Fits a UniRoute router on unlabelled MMLU-Pro questions and profiles five replay chat models
   (real recorded answers, real list prices) in a ``UniRouteChatModel``.
2. Attaches a ``SavingsLedger`` to its pool: every call is booked with its realised cost (token
   usage x price), the router's expected cost, and the counterfactual of always using the best
   model (lowest validation error) on the same question, plus the router's own overhead.
3. Answers held-out questions through ``prompt | chat | StrOutputParser()`` at two budgets, one
   ledger session per budget, and prints each session's report next to the measured accuracy.
4. Writes the JSON-lines log and a cumulative-cost plot (the same as the ``unirouter savings`` CLI).

The ledger's quality figures are the router's *predictions*; the measured accuracy printed beside
them comes from grading the answers against the references (which a production ledger cannot do).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mmlu_replay import load_mmlu, replay_chat_models
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from unirouter import SentenceTransformerEmbedder, UniRouter, ValidationSet
from unirouter.embedding.embedders import default_cache_dir
from unirouter.profiling.profiler import TokenPrice
from unirouter.integration.savings import SavingsLedger
from unirouter.profiling.scorers import MultipleChoiceScorer

from unirouter_langchain import UniRouteChatModel

MODELS = (
    "gpt-4o-2024-05-13",
    "gemini-1.5-flash-002",
    "Meta-Llama-3_1-70B-Instruct",
    "Meta-Llama-3_1-8B-Instruct",
    "Phi-3-mini-4k-instruct",
)
SYSTEM = "Answer the multiple-choice question. Think step by step, then finish with 'The answer is (X)'."


def split(mmlu, n_train: int, n_val: int, n_test: int, seed: int):
    """Disjoint train / validation / test questions every model has a record for."""
    ds = mmlu.dataset
    first: dict[str, int] = {}
    for i in ds.complete_rows(list(MODELS)):
        first.setdefault(ds.texts[i], int(i))
    pick = np.random.default_rng(seed).permutation(np.array(sorted(first.values())))[: n_train + n_val + n_test]
    parts = {"train": pick[:n_train], "val": pick[n_train : n_train + n_val], "test": pick[n_train + n_val :]}
    return {k: ([ds.texts[i] for i in v], [ds.answers[i] for i in v]) for k, v in parts.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-val", type=int, default=250)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--budgets", type=float, nargs="+", default=(0.0002, 0.001), help="USD per query, one session each")
    parser.add_argument("--out", default=None, help="folder for savings.jsonl and savings.png (default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="unirouter-savings-"))
    out.mkdir(parents=True, exist_ok=True)
    log, plot = out / "savings.jsonl", out / "savings.png"
    if log.exists() or plot.exists():
        sys.exit(f"{out} already holds a savings log or plot; choose another --out")
    start = time.perf_counter()

    mmlu = load_mmlu()
    data = split(mmlu, args.n_train, args.n_val, args.n_test, args.seed)
    (train, _), (val, val_ref), (test, test_ref) = data["train"], data["val"], data["test"]
    prices = {n: TokenPrice(input_per_mtok=mmlu.price(n)[0], output_per_mtok=mmlu.price(n)[1]) for n in MODELS}

    print(f"[1/3] Fitting UniRoute (K={args.clusters}) on {len(train)} questions; profiling {len(MODELS)} models on {len(val)}")
    router = UniRouter(n_clusters=args.clusters, random_state=args.seed, embedder=SentenceTransformerEmbedder(cache=default_cache_dir()))
    router.fit(train, validation=ValidationSet(val, references=val_ref))
    chat = UniRouteChatModel(
        router, replay_chat_models(mmlu, MODELS), costs=prices, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False}
    )

    ledger = SavingsLedger.for_pool(chat, path=log, name="mmlu-pro demo")
    print(f"[2/3] Baseline: always {ledger.baseline} (lowest validation error); profiling spend ${ledger.profiling_cost:.4f}")
    chain = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")]) | chat | StrOutputParser()
    inputs = [{"question": q} for q in test]

    print(f"[3/3] Answering {len(test)} held-out questions per budget\n")
    chat.pool.savings = None  # not booked: this run only measures the baseline's accuracy
    always = chain.batch(inputs, config={"configurable": {"unirouter": {"force_model": ledger.baseline}}, "max_concurrency": 8})
    base_acc = float(np.mean(MultipleChoiceScorer().score_many(test, always, test_ref)[0]))
    chat.pool.savings = ledger
    for budget in args.budgets:
        ledger.session = f"budget ${budget:g}/query"
        replies = chain.batch(inputs, config={"configurable": {"unirouter": {"budget": budget}}, "max_concurrency": 8})
        acc = float(np.mean(MultipleChoiceScorer().score_many(test, replies, test_ref)[0]))
        print(f"== {ledger.session}")
        print(ledger.summary(ledger.session).to_text())
        print(f"measured accuracy    {100 * acc:.1f}% routed vs {100 * base_acc:.1f}% always {ledger.baseline}\n")
    ledger.plot(plot)
    print(f"log: {log}\nplot: {plot}\nsummarise again with: unirouter savings {log} --by-session")
    print(f"Done in {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
