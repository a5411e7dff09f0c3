"""UniRouteLLM / UniRouteSelector behaving natively in LlamaIndex (issue 18): the decision where
instrumentation keeps it, a mixed pool in a FunctionAgent, pickling, savings, unnamed choices."""

from __future__ import annotations

import copy
import pickle

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.core.tools import FunctionTool, ToolMetadata
from unirouter import InvalidInputError, UniRouterWarning
from unirouter.integration.savings import SavingsLedger

from tests.llamaindex.conftest import CHEAP, NAMES, STRONG, WEAK
from unirouter_llamaindex import UniRouteLLM, UniRouteSelector


class Ends(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Ends"

    def handle(self, event, **kwargs):
        if isinstance(event, LLMChatEndEvent):
            self.events.append(event)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture()
def questions(mmlu_small) -> list[str]:
    return list(mmlu_small["test"].texts[40:60])


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_the_llm_end_event_carries_the_decision(router3, llms, questions):
    llm = UniRouteLLM(router3, llms)
    handler = Ends()
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        llm.chat(user(questions[0]))
    finally:
        root.event_handlers.remove(handler)
    routed = [e for e in handler.events if "unirouter" in e.response.additional_kwargs]
    assert routed and routed[-1].response.additional_kwargs["unirouter"]["model"] == router3.route(questions[0], models=list(NAMES)).model


@pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")
async def test_a_mixed_pool_runs_a_function_agent_on_the_capable_models(router3, llms, tool_llms):
    llm = UniRouteLLM(router3, tool_llms)
    with pytest.warns(UniRouterWarning, match="not function-calling"):
        llm.add_model(WEAK, llms[WEAK])
    question = "What is 6 times 7? Use the multiply tool."
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(multiply)], llm=llm, system_prompt="Use tools.")
    handler = agent.run(question)
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    assert str(await handler) == "The result is 42."
    assert [r.tool_output.content for r in results] == ["42"]
    assert llms[WEAK].calls == []  # never given a tool call


def test_pickle_and_deep_copy_round_trip(router3, llms, questions):
    llm = UniRouteLLM(router3, llms)
    expected = llm.chat(user(questions[1])).message.content
    for clone in (pickle.loads(pickle.dumps(llm)), copy.deepcopy(llm)):
        assert clone.chat(user(questions[1])).message.content == expected
        assert clone.pool is not llm.pool


def test_savings_ledger_books_llamaindex_calls(router3, llms, costs, questions):
    llm = UniRouteLLM(router3, llms)
    ledger = SavingsLedger.for_pool(llm, baseline=STRONG, session="li")
    responses = [llm.chat(user(q)) for q in questions[:5]]
    assert all(r.additional_kwargs["unirouter"]["savings"]["baseline"] == STRONG for r in responses)
    summary = ledger.summary("li")
    decisions = [router3.route(q, models=list(NAMES)) for q in questions[:5]]
    assert summary.n_calls == 5
    assert summary.baseline_cost == pytest.approx(sum(float(d.expected_cost[d.candidates.index(STRONG)]) for d in decisions))
    assert summary.saved_expected == pytest.approx(summary.baseline_cost - sum(d.chosen_expected_cost for d in decisions))


def test_selector_with_choices_not_named_like_models(router3, questions):
    order = [CHEAP, WEAK, STRONG]
    selector = UniRouteSelector(router3, choice_models=order)
    choices = [ToolMetadata(name=f"engine_{i}", description=f"engine {i}") for i in range(3)]
    for q in questions[:3]:
        assert selector.select(choices, q).ind == order.index(router3.route(q, models=order).model)
    with pytest.raises(InvalidInputError, match="one per choice"):
        selector.select(choices[:2], questions[0])
    with pytest.raises(InvalidInputError, match="list of model names"):
        UniRouteSelector(router3, choice_models="gpt-4o")
