"""UniRouteLLM with recorded-answer LlamaIndex LLMs over a real fitted router and real embeddings."""

from __future__ import annotations

import numpy as np
import pytest


from llama_index.core import PromptTemplate  # noqa: E402
from llama_index.core.agent.workflow import FunctionAgent  # noqa: E402
from llama_index.core.base.llms.types import ChatMessage  # noqa: E402
from llama_index.core.bridge.pydantic import Field  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.llms.function_calling import FunctionCallingLLM  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402
from replay import answer_text  # noqa: E402
from unirouter import (  # noqa: E402
    AllModelsFailedError,
    InvalidInputError,
    ProfilingError,
    UniRouterWarning,
    UnknownModelError,
)
from unirouter.profiling.profiler import TokenPrice  # noqa: E402
from unirouter.profiling.scorers import MultipleChoiceScorer  # noqa: E402

from tests.llamaindex.conftest import CHEAP, NAMES, STRONG, WEAK  # noqa: E402
from tests.llamaindex.fakes import FlakyLLM, ModelDown, RecordedLLM  # noqa: E402
from unirouter_llamaindex import (  # noqa: E402
    UniRouteDecisionEvent,
    UniRouteFunctionCallingLLM,
    UniRouteLLM,
)

QUIET = {"progress": False}


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content="Answer with the letter."), ChatMessage(role="user", content=text)]


@pytest.fixture()
def llm(router3, llms, costs) -> UniRouteLLM:
    return UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer(), profile_kwargs=QUIET)


@pytest.fixture()
def questions(mmlu_small) -> list[str]:
    return list(mmlu_small["test"].texts[:12])


def expected(router, text: str, **kw) -> str:
    return router.route(text, models=list(NAMES), **kw).model


# -- construction, profiling, metadata ---------------------------------------------------------------
def test_construction_profiles_only_models_without_a_stored_profile(router3, llms, costs, mmlu_small):
    router3.remove_model(WEAK)
    llm = UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer(), profile_kwargs=QUIET)
    assert llms[STRONG].calls == [] and llms[CHEAP].calls == []
    assert len(llms[WEAK].calls) == router3.n_validation_
    # profiling the recorded answers through achat reproduces the dataset's correctness labels
    val = mmlu_small["val"]
    labels = val.correctness[:, val.model_index([WEAK])[0]]
    np.testing.assert_array_equal(router3.get_profile(WEAK).scores, labels)
    assert set(llm.models) == set(NAMES)


def test_token_price_is_applied_to_the_usage_the_llm_reports(router3, llms):
    router3.remove_model(CHEAP)
    price = TokenPrice(input_per_mtok=0.075, output_per_mtok=0.3)
    llm = UniRouteLLM(router3, scorer=MultipleChoiceScorer(), profile_kwargs=QUIET)
    profile = llm.add_model(CHEAP, llms[CHEAP], cost=price)
    prompt = router3.validation_set_.prompts[0]
    text = llms[CHEAP].calls[0]
    assert text == prompt
    reply = llms[CHEAP]._record(prompt)
    assert profile.costs[0] == pytest.approx(price.cost(len(prompt) // 4, len(reply) // 4))


async def test_aadd_model_profiles_on_the_running_loop(router3, llms, costs):
    router3.remove_model(STRONG)
    llm = UniRouteLLM(router3, scorer=MultipleChoiceScorer(), profile_kwargs=QUIET)
    await llm.aadd_model(STRONG, llms[STRONG], cost=costs[STRONG])
    assert len(llms[STRONG].calls) == router3.n_validation_
    assert llm.pool.names == [STRONG]


def test_metadata_is_the_weakest_candidates(llm):
    meta = llm.metadata
    assert meta.context_window == 4_096
    assert meta.is_chat_model is True
    assert meta.is_function_calling_model is False
    assert not isinstance(llm, FunctionCallingLLM)
    assert all(n in meta.model_name for n in NAMES)


def test_rate_limited_calls_are_retried_by_the_core_profiler(router3, records, mmlu_small):
    router3.remove_model(WEAK)
    llm = UniRouteLLM(router3, scorer=MultipleChoiceScorer(), profile_kwargs={**QUIET, "backoff_base": 0.001, "backoff_max": 0.001})
    flaky = FlakyLLM(records[WEAK])
    profile = llm.add_model(WEAK, flaky, cost=0.0001)
    assert profile.stats.calls_failed == 0
    val = mmlu_small["val"]
    np.testing.assert_array_equal(profile.scores, val.correctness[:, val.model_index([WEAK])[0]])


def test_model_that_fails_profiling_is_not_registered(router3, records):
    router3.remove_model(WEAK)
    llm = UniRouteLLM(router3, scorer=MultipleChoiceScorer(), profile_kwargs=QUIET)
    with pytest.raises(ProfilingError, match="ModelDown"):
        llm.add_model(WEAK, RecordedLLM(records[WEAK], down=True), cost=0.0001)
    assert WEAK not in llm.models and WEAK not in router3.models_


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"models": {"x": "not an llm"}}, InvalidInputError, "must be a llama_index"),
        ({"costs": {"nope": 1.0}}, InvalidInputError, "not in models"),
        ({"models": {"new-model": None}}, InvalidInputError, "must be a llama_index"),
        ({"options": {"cost_weight": -1}}, InvalidInputError, "cost_weight"),
        ({"options": {"colour": "red"}}, InvalidInputError, "unknown routing option"),
    ],
)
def test_bad_construction_arguments_raise_clear_errors(router3, kwargs, error, match):
    with pytest.raises(error, match=match):
        UniRouteLLM(router3, **kwargs)


def test_new_model_without_cost_or_scorer_raises(router3, llms):
    llm = UniRouteLLM(router3, scorer=MultipleChoiceScorer())
    with pytest.raises(InvalidInputError, match="cost"):
        llm.add_model("brand-new", llms[WEAK])
    with pytest.raises(InvalidInputError, match="scorer"):
        UniRouteLLM(router3).add_model("brand-new", llms[WEAK], cost=0.001)


def test_needs_a_router_or_a_pool():
    with pytest.raises(InvalidInputError, match="fitted router"):
        UniRouteLLM()


# -- routing and delegation --------------------------------------------------------------------------
def test_chat_goes_to_the_routers_choice_and_carries_the_decision(llm, llms, questions):
    for q in questions[:6]:
        response = llm.chat(user(q))
        info = response.additional_kwargs["unirouter"]
        chosen = expected(llm.router, q)
        assert info["model"] == info["answered_by"] == chosen
        assert info["attempts"] == [{"model": chosen, "ok": True}]
        assert set(info["predicted_error"]) == set(NAMES)
        assert response.message.content == answer_text(llms[chosen]._record.find(q), q)
        assert llms[chosen].calls[-1] == q


def test_routing_text_is_the_last_user_message(llm, llms, questions):
    q = questions[0]
    history = [*user(q), ChatMessage(role="assistant", content="Let me think."), ChatMessage(role="tool", content="42")]
    assert llm.chat(history).additional_kwargs["unirouter"]["model"] == expected(llm.router, q)


METHODS = ["chat", "achat", "stream_chat", "astream_chat", "complete", "acomplete", "stream_complete", "astream_complete"]


@pytest.mark.parametrize("method", METHODS)
async def test_every_llm_method_is_delegated_and_tagged(llm, llms, questions, method):
    q = questions[1]
    chosen = expected(llm.router, q)
    arg = user(q) if "chat" in method else q
    out = getattr(llm, method)(arg)
    if method.startswith("a"):
        out = await out
    if "stream" in method:
        chunks = [c async for c in out] if method.startswith("a") else list(out)
        assert len(chunks) >= 1
        assert all(c.additional_kwargs["unirouter"]["answered_by"] == chosen for c in chunks)
        last = chunks[-1]
    else:
        last = out
        assert last.additional_kwargs["unirouter"]["answered_by"] == chosen
    text = last.message.content if "chat" in method else last.text
    assert text == answer_text(llms[chosen]._record.find(q), q)
    assert sum(len(m.calls) for m in llms.values()) == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [("force_model", WEAK), ("allowed_models", [WEAK, CHEAP]), ("excluded_models", [STRONG]), ("cost_weight", 1e4)],
)
def test_per_call_options_override_the_defaults(llm, questions, option, value):
    q = questions[2]
    info = llm.chat(user(q), **{option: value}).additional_kwargs["unirouter"]
    if option == "force_model":
        assert info["model"] == WEAK and info["ranked"] == [WEAK]
    elif option == "cost_weight":
        assert info["model"] == expected(llm.router, q, cost_weight=1e4) and info["cost_weight"] == 1e4
    else:
        models = value if option == "allowed_models" else [CHEAP, WEAK]
        assert info["model"] == llm.router.route(q, models=models).model
        assert set(info["ranked"]) == set(models)


def test_construction_defaults_apply_and_per_call_values_win(router3, llms, questions):
    llm = UniRouteLLM(router3, llms, options={"cost_weight": 1e4, "max_fallbacks": 0})
    q = questions[3]
    assert llm.complete(q).additional_kwargs["unirouter"]["cost_weight"] == 1e4
    assert llm.complete(q, cost_weight=0.0).additional_kwargs["unirouter"]["model"] == expected(router3, q, cost_weight=0.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cost_weight": -2.0}, InvalidInputError, "cost_weight"),
        ({"force_model": "gpt-9"}, UnknownModelError, "gpt-9"),
        ({"allowed_models": ["gpt-9"]}, UnknownModelError, "gpt-9"),
        ({"max_fallbacks": -1}, InvalidInputError, "max_fallbacks"),
    ],
)
def test_bad_per_call_options_raise_before_any_model_is_called(llm, llms, questions, kwargs, error, match):
    with pytest.raises(error, match=match):
        llm.chat(user(questions[0]), **kwargs)
    assert all(m.calls == [] for m in llms.values())


@pytest.mark.parametrize("empty", ["", "   ", None])
async def test_a_call_with_no_text_raises(llm, empty):
    with pytest.raises(InvalidInputError, match="no text to route on"):
        llm.complete(empty or "")
    with pytest.raises(InvalidInputError, match="no text to route on"):
        await llm.achat([ChatMessage(role="user", content=empty)])


def test_routing_options_do_not_reach_the_model(llm, llms, questions):
    q = questions[0]
    chosen = expected(llm.router, q)
    llm.chat(user(q), cost_weight=0.0, temperature=0.2)
    assert llms[chosen].call_kwargs == [{"temperature": 0.2}]


def test_options_can_be_given_as_one_unirouter_mapping(llm, questions):
    q = questions[2]
    info = llm.chat(user(q), unirouter={"allowed_models": [WEAK, CHEAP]}).additional_kwargs["unirouter"]
    assert set(info["ranked"]) == {WEAK, CHEAP}
    with pytest.raises(InvalidInputError, match="unirouter= must be a mapping"):
        llm.chat(user(q), unirouter="cheap")


def test_routing_input_conversation_or_callable(router3, llms, questions):
    q0, q1 = questions[6], questions[7]
    history = [ChatMessage(role="user", content=q0), ChatMessage(role="assistant", content="B"), ChatMessage(role="user", content=q1)]
    whole = UniRouteLLM(router3, llms, routing_input="conversation").chat(history).additional_kwargs["unirouter"]
    text = f"user: {q0}\nassistant: B\nuser: {q1}"
    assert whole["model"] == expected(router3, text)
    first = UniRouteLLM(router3, llms, routing_input=lambda ms: ms[0].content)
    assert first.chat(history).additional_kwargs["unirouter"]["model"] == expected(router3, q0)
    with pytest.raises(ValueError, match="routing_input"):  # pydantic's ValidationError, at construction
        UniRouteLLM(router3, llms, routing_input="everything")


# -- fallbacks -------------------------------------------------------------------------------------
async def test_a_failing_model_falls_back_to_the_next_best(llm, llms, questions):
    q = questions[4]
    first = llm.route(q)
    llms[first.model].down = True
    for response in (llm.chat(user(q)), await llm.achat(user(q))):
        info = response.additional_kwargs["unirouter"]
        assert info["model"] == first.model
        assert info["answered_by"] == first.ranked[1]
        assert info["attempts"][0]["ok"] is False and "ModelDown" in info["attempts"][0]["error"]
        assert response.message.content == answer_text(llms[first.ranked[1]]._record.find(q), q)


def test_stream_falls_back_when_the_first_chunk_fails(llm, llms, questions):
    q = questions[4]
    first = llm.route(q)
    llms[first.model].down = True
    chunks = list(llm.stream_complete(q))
    assert chunks[-1].additional_kwargs["unirouter"]["answered_by"] == first.ranked[1]


def test_no_fallback_when_forced_or_disabled(llm, llms, questions):
    q = questions[4]
    llms[WEAK].down = True
    with pytest.raises(AllModelsFailedError) as info:  # issue 19.4: typed, the cause kept
        llm.chat(user(q), force_model=WEAK)
    assert [type(e) for e in info.value.exceptions] == [ModelDown]
    chosen = llm.route(q).model
    llms[chosen].down = True
    with pytest.raises(AllModelsFailedError) as info:
        llm.chat(user(q), max_fallbacks=0)
    assert [type(e) for e in info.value.exceptions] == [ModelDown]


# -- instrumentation, Settings, query engines, save/load ------------------------------------------------
class Collect(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Collect"

    def handle(self, event, **kwargs):
        if isinstance(event, UniRouteDecisionEvent):
            self.events.append(event)


def test_each_decision_is_emitted_as_an_instrumentation_event(llm, questions):
    handler = Collect(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        llm.complete(questions[0])
        llm.chat(user(questions[1]))
    finally:
        root.event_handlers.remove(handler)
    assert [e.source for e in handler.events] == ["llm.complete", "llm.chat"]
    assert handler.events[0].record["model"] == expected(llm.router, questions[0])


def test_callback_handlers_of_the_router_see_each_llm_call(llm, questions):
    from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler

    debug = LlamaDebugHandler()
    llm.callback_manager = CallbackManager([debug])
    llm.chat(user(questions[0]))
    llm.complete(questions[1])
    pairs = debug.get_llm_inputs_outputs()
    assert len(pairs) == 2
    assert pairs[0][1].payload["response"].additional_kwargs["unirouter"]["model"] == expected(llm.router, questions[0])


def test_usable_as_settings_llm_in_a_prompt_pipeline(llm, llms, questions):
    from llama_index.core import Settings

    q = questions[5]
    old = Settings._llm
    try:
        Settings.llm = llm
        answer = Settings.llm.predict(PromptTemplate("{question}"), question=q)
    finally:
        Settings._llm = old
    chosen = expected(llm.router, q)
    assert answer == answer_text(llms[chosen]._record.find(q), q)


def test_save_and_load_keep_profiles_costs_and_defaults_without_calls(router3, llms, costs, questions, tmp_path, records):
    router3.remove_model(WEAK)
    llm = UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer(), profile_kwargs=QUIET,
                      options={"cost_weight": 3.0})  # fmt: skip
    llm.save(tmp_path / "r")
    fresh = {n: RecordedLLM(records[n]) for n in NAMES}
    loaded = UniRouteLLM.load(tmp_path / "r", models=fresh, embedder=router3.embedder_)
    assert all(m.calls == [] for m in fresh.values())  # nothing re-profiled
    assert loaded.pool.defaults.cost_weight == 3.0
    np.testing.assert_array_equal(loaded.router.get_profile(WEAK).scores, router3.get_profile(WEAK).scores)
    for q in questions[:5]:
        assert loaded.route(q).model == llm.route(q).model
    with pytest.raises(InvalidInputError, match="not in the saved pool"):
        UniRouteLLM.load(tmp_path / "r", models={**fresh, "extra": fresh[WEAK]}, embedder=router3.embedder_)
    with pytest.raises(InvalidInputError, match="not given"):
        UniRouteLLM.load(tmp_path / "r", models={STRONG: fresh[STRONG]}, embedder=router3.embedder_)


# -- function calling and FunctionAgent -------------------------------------------------------------------
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.fixture()
def tool_llm(router3, tool_llms) -> UniRouteLLM:
    return UniRouteLLM(router3, tool_llms)


def test_is_function_calling_while_any_candidate_is_and_says_so_at_add_time(tool_llm, llms):
    assert isinstance(tool_llm, UniRouteFunctionCallingLLM) and isinstance(tool_llm, FunctionCallingLLM)
    assert tool_llm.metadata.is_function_calling_model is True
    assert tool_llm.metadata.context_window == 128_000
    with pytest.warns(UniRouterWarning, match=r"\['Llama-2-7b-hf'\] are not function-calling"):
        tool_llm.add_model(WEAK, llms[WEAK])
    assert isinstance(tool_llm, FunctionCallingLLM)  # tool calls are routed among the capable ones
    assert tool_llm.metadata.is_function_calling_model is True
    tool_llm.remove_model(STRONG)
    tool_llm.remove_model(CHEAP)
    assert not isinstance(tool_llm, FunctionCallingLLM)
    assert tool_llm.metadata.is_function_calling_model is False


@pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")  # FunctionAgent inspects its pydantic self
@pytest.mark.parametrize("streaming", [True, False], ids=["astream_chat_with_tools", "achat_with_tools"])
async def test_function_agent_tool_call_runs_through_the_router(tool_llm, tool_llms, streaming):
    tools = [FunctionTool.from_defaults(multiply)]
    agent = FunctionAgent(tools=tools, llm=tool_llm, system_prompt="Use tools.", streaming=streaming)
    question = "What is 6 times 7? Use the multiply tool."
    handler = agent.run(question)
    tool_calls = []
    from llama_index.core.agent.workflow import ToolCallResult

    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            tool_calls.append(event)
    result = await handler
    assert [(c.tool_name, c.tool_kwargs, c.tool_output.content) for c in tool_calls] == [("multiply", {"a": 6, "b": 7}, "42")]
    assert str(result) == "The result is 42."
    chosen = tool_llm.route(question).model
    assert len(tool_llms[chosen].calls) == 2  # the tool call, then the answer: both steps on one model
    other = next(n for n in tool_llms if n != chosen)
    assert tool_llms[other].calls == []


async def test_chat_with_tools_routes_and_tool_calls_are_parsed_by_the_answering_model(tool_llm, tool_llms):
    tool = FunctionTool.from_defaults(multiply)
    question = "Multiply 3 and 5."
    response = await tool_llm.achat_with_tools([tool], user_msg=question)
    info = response.additional_kwargs["unirouter"]
    assert info["answered_by"] == tool_llm.route(question).model
    calls = tool_llm.get_tool_calls_from_response(response)
    assert [(c.tool_name, c.tool_kwargs) for c in calls] == [("multiply", {"a": 3, "b": 5})]
    out = tool_llm.predict_and_call([tool], user_msg=question)
    assert out.response == "15"


def test_prepared_tool_call_is_pinned_to_the_model_that_formatted_the_tools(tool_llm):
    tool = FunctionTool.from_defaults(multiply)
    question = "Multiply 4 and 8."
    kwargs = tool_llm._prepare_chat_with_tools([tool], user_msg=question)
    chosen = tool_llm.route(question).model
    assert kwargs["force_model"] == chosen
    response = tool_llm.chat(**kwargs)
    assert response.additional_kwargs["unirouter"]["ranked"] == [chosen]
    assert [c.tool_kwargs for c in tool_llm.get_tool_calls_from_response(response)] == [{"a": 4, "b": 8}]


@pytest.mark.filterwarnings("ignore::unirouter.UniRouterWarning")
def test_tool_calls_only_go_to_function_calling_candidates(tool_llm, llms):
    tool_llm.add_model(WEAK, llms[WEAK])
    tool = FunctionTool.from_defaults(multiply)
    response = tool_llm.chat_with_tools([tool], user_msg="Multiply 2 and 9.", force_model=None)
    assert response.additional_kwargs["unirouter"]["answered_by"] in (STRONG, CHEAP)
    assert WEAK not in response.additional_kwargs["unirouter"]["ranked"]
    with pytest.raises(InvalidInputError, match="cannot call tools"):
        tool_llm.chat_with_tools([tool], user_msg="Multiply 2 and 9.", force_model=WEAK)
