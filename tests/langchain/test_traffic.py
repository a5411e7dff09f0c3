"""Issue 17 with real LangChain objects: a RAG prompt template routes on its question, follow-ups with
their question, per-call quality floors and paced budgets through ``configurable``, realised cost in
the response metadata."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from unirouter import InvalidInputError, calibrate_cost_weight
from unirouter.profiling.scorers import MultipleChoiceScorer

from tests.langchain.fakes import MODELS, prices
from unirouter_langchain import UniRouteChatModel

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
