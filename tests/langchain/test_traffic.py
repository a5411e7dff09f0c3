"""Issue 17 with real LangChain objects: a RAG prompt template routes on its question, follow-ups with
their question, per-call quality floors and paced budgets through ``configurable``, realised cost in
the response metadata."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from unirouter import InvalidInputError, calibrate_cost_weight
from unirouter.profiling.scorers import MultipleChoiceScorer

from tests.langchain.fakes import MODELS, prices
from unirouter_langchain import UniRouteChatModel, UniRouteRunnable

RAG = ChatPromptTemplate.from_messages(
    [
        (
            "human",
            "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to "
            "answer the question. If you don't know the answer, just say that you don't know.\n"
            "Question: {question} \nContext: {context} \nAnswer:",
        )
    ]
)


@pytest.fixture()
def chat(lc_router, models, recorded) -> UniRouteChatModel:
    return UniRouteChatModel(lc_router, models, costs=prices(recorded), scorer=MultipleChoiceScorer(), options={"cost_weight": 20.0})


def test_rag_chain_routes_on_the_question_and_prices_the_context(chat, lc_router, questions, mmlu_small):
    context = "\n\n".join(mmlu_small["train"].texts[:30])
    for q in questions[:6]:
        out = (RAG | chat).invoke({"question": q, "context": context})
        record = out.response_metadata["unirouter"]
        bare = chat.pool.decide(q, {"cost_weight": 20.0})
        assert record["predicted_error"] == bare.to_dict()["predicted_error"]  # routed on the question
        assert all(record["expected_cost"][n] > bare.to_dict()["expected_cost"][n] for n in MODELS if prices_in(chat, n) > 0)
        assert record["cost_source"] == "usage" and record["realised_cost"] > 0


def prices_in(chat, name) -> float:
    return chat.pool.get(name).cost.input_per_mtok


def test_follow_up_routes_with_its_question(chat, lc_router, questions):
    q = questions[5]
    msgs = [HumanMessage(q), AIMessage("The answer is (C)."), HumanMessage("Are you sure? Please double-check.")]
    record = chat.invoke(msgs).response_metadata["unirouter"]
    assert record["predicted_error"] == chat.pool.decide(q + "\nAre you sure? Please double-check.", {"cost_weight": 20.0}).to_dict()["predicted_error"]


def test_quality_floor_and_paced_budget_per_call_through_configurable(chat, lc_router, questions):
    q = questions[0]
    floor = chat.invoke(q, config={"configurable": {"unirouter": {"quality_floor": 0.4}}}).response_metadata["unirouter"]
    lam = calibrate_cost_weight(lc_router, lc_router.validation_set_.prompts, quality_floor=0.4, honest=True, models=list(MODELS))
    assert floor["cost_weight"] == pytest.approx(lam)
    budget = 0.0005
    spent = [
        chat.invoke(x, config={"configurable": {"unirouter_budget": budget}}).response_metadata["unirouter"]
        for x in questions[:4]
    ]
    assert [s["budget"]["calls"] for s in spent] == [1, 2, 3, 4]
    assert spent[-1]["budget"]["mean_spend"] == pytest.approx(sum(s["realised_cost"] for s in spent) / 4)
    with pytest.raises(InvalidInputError, match="at most one routing target"):
        chat.invoke(q, config={"configurable": {"unirouter": {"budget": budget, "quality_floor": 0.4}}})


def test_langgraph_thread_id_is_a_sticky_session(chat, questions):
    opts = {"cost_weight": 0.0}
    free = [chat.pool.decide(q, opts).model for q in questions[:40]]
    k = next(i for i in range(39) if free[i] != free[i + 1])
    config = {"configurable": {"thread_id": "t-1", "unirouter": {"cost_weight": 0.0, "switch_cost": 1.0}}}
    first = chat.invoke(questions[k], config=config).response_metadata["unirouter"]
    second = chat.invoke(questions[k + 1], config=config).response_metadata["unirouter"]
    assert first["model"] == free[k] and second["model"] == free[k]  # stayed on the thread's model
    other = chat.invoke(questions[k + 1], config={"configurable": {"thread_id": "t-2", "unirouter": {"cost_weight": 0.0, "switch_cost": 1.0}}})
    assert other.response_metadata["unirouter"]["model"] == free[k + 1]


# -- batch: the decisions the same calls would get one by one ----------------------------------
def test_batch_keeps_a_thread_on_its_model_like_invoke_does(chat, questions):
    free = [m.response_metadata["unirouter"]["model"] for m in chat.batch(questions[:12], config={"configurable": {"unirouter": {"cost_weight": 0.0}}})]
    assert len(set(free)) > 1
    config = {"configurable": {"thread_id": "t-batch", "unirouter": {"cost_weight": 0.0, "switch_cost": 1.0}}}
    sticky = [m.response_metadata["unirouter"] for m in chat.batch(questions[:12], config=config)]
    assert {r["model"] for r in sticky} == {free[0]}  # the thread's first choice holds, as with invoke
    later = asyncio.run(chat.abatch(questions[12:16], config=config))
    assert {m.response_metadata["unirouter"]["model"] for m in later} == {free[0]}  # settled: the thread remembers


def test_batch_steps_the_paced_budget_per_input_and_the_pacer_learns_the_realised_costs(chat, questions):
    budget = 0.0005
    config = {"configurable": {"unirouter_budget": budget}}
    records = [m.response_metadata["unirouter"] for m in chat.batch(questions[:10], config=config)]
    pacer = chat.pool.pacer(budget)
    weights = [r["cost_weight"] for r in records]
    assert len(set(weights)) > 1  # not one weight for the whole batch
    for r, nxt in zip(records, weights[1:]):
        expected = r["expected_cost"][r["model"]]  # stepped on the chosen model's expected cost
        step = np.exp(pacer.rate * (expected - budget) / budget)
        lam = min(max(r["cost_weight"] * step, pacer.min_cost_weight), pacer.max_cost_weight)
        assert nxt == pytest.approx(lam, rel=1e-9)
    assert all(r["cost_source"] == "usage" for r in records)
    assert pacer.calls_ == 10 and pacer.spent_ == pytest.approx(sum(r["realised_cost"] for r in records))
    now = pacer.cost_weight
    nxt = chat.batch(questions[10:11], config=config)[0].response_metadata["unirouter"]
    assert nxt["cost_weight"] == pytest.approx(now, rel=1e-12)  # the next batch starts where the pacer stands


# -- streams: realised cost from the usage on the chunks ------------------------------------------
def test_stream_settles_the_realised_cost_from_the_chunks_usage(chat, questions, recorded):
    budget = 0.0005
    config = {"configurable": {"unirouter_budget": budget}}
    whole = _merged(chat.stream(questions[0], config=config))
    record = whole.response_metadata["unirouter"]
    usage = whole.usage_metadata  # the replay model reports it on its last chunk, like providers
    assert usage and record["cost_source"] == "usage"
    price = prices(recorded)[record["answered_by"]]
    assert record["realised_cost"] == pytest.approx(price.cost(usage["input_tokens"], usage["output_tokens"]))
    assert record["budget"]["calls"] == 1 and record["budget"]["mean_spend"] == pytest.approx(record["realised_cost"])

    async def astream() -> list:
        return [c async for c in chat.astream(questions[1], config=config)]

    last = _merged(asyncio.run(astream()))
    arecord = last.response_metadata["unirouter"]
    aprice = prices(recorded)[arecord["answered_by"]]
    assert arecord["realised_cost"] == pytest.approx(aprice.cost(last.usage_metadata["input_tokens"], last.usage_metadata["output_tokens"]))
    assert arecord["budget"]["calls"] == 2


def test_runnable_stream_settles_the_realised_cost_and_an_abandoned_stream_still_counts(lc_router, models, recorded, questions):
    runnable = UniRouteRunnable(lc_router, models, costs=prices(recorded), scorer=MultipleChoiceScorer(), options={"budget": 0.0005})
    whole = _merged(runnable.stream(questions[0]))
    record, usage = whole.response_metadata["unirouter"], whole.usage_metadata
    assert record["cost_source"] == "usage"
    assert record["realised_cost"] == pytest.approx(prices(recorded)[record["answered_by"]].cost(usage["input_tokens"], usage["output_tokens"]))
    assert len(_prefix(runnable.stream(questions[1]), 2)) == 2
    assert runnable.pool.pacer(0.0005).calls_ == 2  # the abandoned stream was settled for what it streamed


def _merged(chunks):
    """The streamed message, as LangChain adds chunks up (usage and metadata merged)."""
    chunks = list(chunks)
    whole = chunks[0]
    for c in chunks[1:]:
        whole = whole + c
    return whole


def _prefix(iterator, n: int) -> list:
    out = []
    for chunk in iterator:
        out.append(chunk)
        if len(out) == n:
            break
    iterator.close()
    return out
