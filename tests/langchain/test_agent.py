"""UniRouteChatModel inside a multi-step ``langchain.agents.create_agent`` agent with two tools.

The agent routes at every model call (per step). With the default ``routing_input="last_user"`` the
routing text at every step is the user's request, so one run stays on one model unless it fails.
"""

from __future__ import annotations

import pytest


from langchain.agents import create_agent
from langchain_core.callbacks import get_usage_metadata_callback

from tests.langchain.fakes import MODELS, Recorder, ToolCallingFake
from unirouter_langchain import DECISION_EVENT, UniRouteChatModel


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


REQUEST = "Use add and then multiply on 6 and 7, and report both results."


@pytest.fixture()
def fakes() -> dict[str, ToolCallingFake]:
    return {n: ToolCallingFake(model_name=n) for n in MODELS}


def _run(agent, **config):
    return agent.invoke({"messages": [("user", REQUEST)]}, config=config or None)


def test_agent_runs_end_to_end_routing_every_step(lc_router, fakes):
    chat = UniRouteChatModel(lc_router, fakes)
    agent = create_agent(chat, tools=[add, multiply], system_prompt="You are a calculator.")
    rec = Recorder()
    state = _run(agent, callbacks=[rec])
    messages = state["messages"]
    types = [m.type for m in messages]
    assert types == ["human", "ai", "tool", "ai", "tool", "ai"]
    assert [m.content for m in messages if m.type == "tool"] == ["13", "42"]
    final = messages[-1]
    assert "add=13" in final.content and "multiply=42" in final.content
    decisions = [d for name, d, _ in rec.events if name == DECISION_EVENT]
    assert len(decisions) == 3  # one decision per model step
    expected = lc_router.route(REQUEST, models=list(MODELS)).model
    assert {d["answered_by"] for d in decisions} == {expected}  # last_user: the run stays on one model
    assert len(fakes[expected].calls) == 3 and fakes[expected].calls[-1] == ["system", *types[:-1]]
    assert final.response_metadata["unirouter"]["answered_by"] == expected


def test_agent_steps_fall_back_when_the_chosen_model_fails(lc_router, fakes):
    ranked = lc_router.route(REQUEST, models=list(MODELS)).ranked
    fakes[ranked[0]] = ToolCallingFake(model_name=ranked[0], fail_always=True)
    agent = create_agent(UniRouteChatModel(lc_router, fakes), tools=[add, multiply])
    final = _run(agent)["messages"][-1]
    meta = final.response_metadata["unirouter"]
    assert meta["answered_by"] == ranked[1] and meta["attempts"][0]["ok"] is False


def test_agent_config_options_reach_every_step(lc_router, fakes):
    agent = create_agent(UniRouteChatModel(lc_router, fakes), tools=[add, multiply])
    state = _run(agent, configurable={"unirouter": {"force_model": "Llama-2-7b-hf"}})
    ai = [m for m in state["messages"] if m.type == "ai"]
    assert {m.response_metadata["unirouter"]["answered_by"] for m in ai} == {"Llama-2-7b-hf"}


def test_agent_tokens_counted_once_per_step(lc_router, fakes):
    agent = create_agent(UniRouteChatModel(lc_router, fakes), tools=[add, multiply])
    with get_usage_metadata_callback() as cb:
        state = _run(agent)
    ((_model, usage),) = cb.usage_metadata.items()
    steps = [m.response_metadata["unirouter"]["usage"] for m in state["messages"] if m.type == "ai"]
    assert usage["total_tokens"] == sum(s["total_tokens"] for s in steps)


async def test_agent_astream_messages_mode_streams_each_step_once(lc_router, fakes):
    agent = create_agent(UniRouteChatModel(lc_router, fakes), tools=[add, multiply])
    seen = []
    async for chunk, meta in agent.astream({"messages": [("user", REQUEST)]}, stream_mode="messages"):
        if chunk.type in ("ai", "AIMessageChunk"):
            seen.append(chunk.content or str(getattr(chunk, "tool_call_chunks", "")))
    final = [s for s in seen if "add=13" in s]
    assert len(final) == 1  # the final answer is not duplicated by the nested run
