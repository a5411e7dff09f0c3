"""UniRoute in ``create_agent`` through middleware: the ``ModelRouterMiddleware`` adapter and the
per-call ``UniRouteMiddleware``, composed with ``ModelFallbackMiddleware`` and ``ModelRetryMiddleware``."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware, ModelRetryMiddleware, ModelRouterMiddleware
from langchain_core.decisions import Choice
from langchain_core.language_models import BaseChatModel

from tests.langchain.fakes import MODELS, Recorder, ToolCallingFake
from unirouter_langchain import DECISION_EVENT, UniRouteChatModel
from unirouter_langchain.middleware import UniRouteDecisionModel, UniRouteMiddleware, model_router_middleware


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


REQUEST = "Use add and then multiply on 6 and 7, and report both results."


class NoTools(ToolCallingFake):
    """Cannot call tools."""

    bind_tools = BaseChatModel.bind_tools


@pytest.fixture()
def fakes() -> dict[str, ToolCallingFake]:
    return {n: ToolCallingFake(model_name=n) for n in MODELS}


def _final(state):
    return state["messages"][-1]


def test_decision_model_answers_model_router_choice(lc_router, fakes):
    chat = UniRouteChatModel(lc_router, fakes)
    classifier = UniRouteDecisionModel.of(chat)
    question = Choice(instructions="pick", criteria={n: "" for n in MODELS[:3]})
    response = classifier.invoke({"state": REQUEST, "questions": {"q": question}})
    answer = response.choices["q"]
    assert answer.choice == lc_router.route(REQUEST, models=list(MODELS[:3])).model
    assert answer.probabilities[answer.choice] == 1.0 and sum(answer.probabilities.values()) == 1.0


def test_model_router_middleware_routes_the_agent(lc_router, fakes):
    chat = UniRouteChatModel(lc_router, fakes)
    middleware = model_router_middleware(chat)
    assert isinstance(middleware, ModelRouterMiddleware)
    rec = Recorder()
    agent = create_agent(fakes[MODELS[0]], tools=[add, multiply], middleware=[middleware])
    state = agent.invoke({"messages": [("user", REQUEST)]}, config={"callbacks": [rec]})
    expected = lc_router.route(REQUEST, models=list(MODELS)).model
    assert state["model_route"].choice == expected
    assert "add=13" in _final(state).content and "multiply=42" in _final(state).content
    assert len(fakes[expected].calls) == 3  # every step of the run went to the routed model
    assert [name for name, _, _ in rec.events].count(DECISION_EVENT) == 1


def test_composes_with_fallback_and_retry_middleware(lc_router, fakes):
    expected = lc_router.route(REQUEST, models=list(MODELS)).model
    fakes[expected] = ToolCallingFake(model_name=expected, fail_always=True)
    backup = ToolCallingFake(model_name="backup")
    retry = ModelRetryMiddleware(max_retries=1, initial_delay=0.0, jitter=False, on_failure="error")
    agent = create_agent(
        fakes[MODELS[0]],
        tools=[add, multiply],
        middleware=[model_router_middleware(UniRouteChatModel(lc_router, fakes)), ModelFallbackMiddleware(backup), retry],
    )
    state = agent.invoke({"messages": [("user", REQUEST)]})
    assert state["model_route"].choice == expected
    assert len(fakes[expected].calls) >= 2  # retried, then fell back
    assert _final(state).content.startswith("[backup]") and "multiply=42" in _final(state).content


def test_per_call_middleware_routes_tool_calls_only_to_tool_callers(lc_router, fakes):
    expected = lc_router.route(REQUEST, models=list(MODELS)).model
    fakes[expected] = NoTools(model_name=expected)
    agent = create_agent(fakes[MODELS[0]], tools=[add, multiply], middleware=[UniRouteMiddleware(UniRouteChatModel(lc_router, fakes))])
    state = agent.invoke({"messages": [("user", REQUEST)]})
    assert "multiply=42" in _final(state).content
    assert not fakes[expected].calls
    capable = [n for n in MODELS if n != expected]
    second = lc_router.route(REQUEST, models=capable).model
    assert len(fakes[second].calls) == 3


async def test_per_call_middleware_async_composes_with_fallback(lc_router, fakes):
    expected = lc_router.route(REQUEST, models=list(MODELS)).model
    fakes[expected] = ToolCallingFake(model_name=expected, fail_always=True)
    backup = ToolCallingFake(model_name="backup")
    agent = create_agent(
        fakes[MODELS[0]],
        tools=[add, multiply],
        middleware=[UniRouteMiddleware(UniRouteChatModel(lc_router, fakes)), ModelFallbackMiddleware(backup)],
    )
    state = await agent.ainvoke({"messages": [("user", REQUEST)]})
    assert _final(state).content.startswith("[backup]")
    assert len(fakes[expected].calls) == 3  # tried at every step, each time falling back


def test_per_call_middleware_books_savings(lc_router, fakes):
    from unirouter.integration.savings import SavingsLedger

    chat = UniRouteChatModel(lc_router, fakes)
    ledger = SavingsLedger.for_pool(chat)
    agent = create_agent(fakes[MODELS[0]], tools=[add, multiply], middleware=[UniRouteMiddleware(chat)])
    agent.invoke({"messages": [("user", REQUEST)]})
    summary = ledger.summary()
    assert summary.n_calls == 3 and summary.routing_seconds > 0  # one entry per model step
    assert set(summary.calls_by_model) == {lc_router.route(REQUEST, models=list(MODELS)).model}
