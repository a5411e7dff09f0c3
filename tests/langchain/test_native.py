"""UniRouteChatModel behaving natively in LangChain (issue 18): streaming events, usage, tracing,
capabilities, pickling and the savings ledger, on real LangChain classes with replay chat models."""

from __future__ import annotations

import copy
import pickle

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.base import BaseTracer
from pydantic import BaseModel
from replay import answer_text
from unirouter import InvalidInputError
from unirouter.integration.savings import SavingsLedger

from tests.langchain.fakes import MODELS, GeneralFake, ReplayChatModel, make_models, prices
from unirouter_langchain import UniRouteChatModel, UniRouteRunnable


class Collect(BaseTracer):
    """LangChain's base tracer (the one behind LangSmith), keeping finished root runs in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.roots = []

    def _persist_run(self, run) -> None:
        self.roots.append(run)


def _walk(run):
    yield run
    for child in run.child_runs:
        yield from _walk(child)


class TextOnly(ReplayChatModel):
    """A replay model that cannot call tools (LangChain's default ``bind_tools`` raises)."""

    bind_tools = BaseChatModel.bind_tools


@pytest.fixture()
def chat(lc_router, models) -> UniRouteChatModel:
    return UniRouteChatModel(lc_router, models)


def _chain(chat):
    return ChatPromptTemplate.from_messages([("system", "Answer the question."), ("human", "{q}")]) | chat | StrOutputParser()


async def test_lcel_chain_astream_events_emit_each_token_once(chat, lc_router, recorded, questions):
    q = questions[0]
    name = lc_router.route(q, models=list(MODELS)).model
    expected = answer_text(recorded[name].find(q), q)
    events = [e async for e in _chain(chat).astream_events({"q": q}, version="v2")]
    tokens = [e["data"]["chunk"].text for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(tokens) == expected  # no token is emitted twice
    assert len([e for e in events if e["event"] == "on_chat_model_start"]) == 1
    assert len(tokens) >= len(expected.split())  # it really streams, word by word
    (end,) = [e for e in events if e["event"] == "on_chain_end" and e["name"] == "RunnableSequence"]
    assert end["data"]["output"] == expected


async def test_lcel_chain_over_the_runnable_streams_each_token_once(lc_router, models, questions):
    runnable = UniRouteRunnable(lc_router, models)
    events = [e async for e in _chain(runnable).astream_events({"q": questions[1]}, version="v2")]
    tokens = "".join(e["data"]["chunk"].text for e in events if e["event"] == "on_chat_model_stream")
    (end,) = [e for e in events if e["event"] == "on_chain_end" and e["name"] == "RunnableSequence"]
    assert tokens == end["data"]["output"]


def test_base_tracer_records_the_decision_in_metadata_and_outputs(chat, lc_router, questions):
    tracer = Collect()
    q = questions[2]
    out = _chain(chat).invoke({"q": q}, config={"callbacks": [tracer]})
    (root,) = tracer.roots
    (llm,) = [r for r in _walk(root) if r.run_type == "llm"]
    name = lc_router.route(q, models=list(MODELS)).model
    meta = llm.extra["metadata"]
    assert meta["unirouter_model"] == name and meta["ls_model_name"] == name
    assert meta["unirouter_decision"]["ranked"][0] == name
    assert llm.outputs["llm_output"]["unirouter"]["answered_by"] == name
    assert llm.outputs["generations"][0][0]["message"]["kwargs"]["usage_metadata"]["output_tokens"] > 0
    assert out and f"unirouter:{name}" in llm.tags


def test_base_tracer_records_the_runnables_decision(lc_router, models, questions):
    tracer = Collect()
    UniRouteRunnable(lc_router, models).invoke(questions[3], config={"callbacks": [tracer]})
    (root,) = tracer.roots
    name = lc_router.route(questions[3], models=list(MODELS)).model
    assert root.extra["metadata"]["unirouter_model"] == name
    assert root.extra["metadata"]["unirouter_decision"]["model"] == name


def test_structured_output_include_raw_keeps_the_decision(lc_router, questions):
    class Reply(BaseModel):
        """A reply."""

        text: str

    chat = UniRouteChatModel(lc_router, {n: GeneralFake(model_name=n) for n in MODELS})
    tracer = Collect()
    out = chat.with_structured_output(Reply, include_raw=True).invoke(questions[4], config={"callbacks": [tracer]})
    name = lc_router.route(questions[4], models=list(MODELS)).model
    assert isinstance(out["parsed"], Reply)
    assert out["raw"].response_metadata["unirouter"]["answered_by"] == name
    assert tracer.roots[0].extra["metadata"]["unirouter_model"] == name


def test_a_tool_request_never_goes_to_a_tool_less_model(lc_router, recorded, questions):
    chosen = {lc_router.route(q, models=list(MODELS)).model for q in questions[:20]}
    # every model the router likes for these questions cannot call tools
    models = {n: (TextOnly if n in chosen else ReplayChatModel)(model_name=n, recorded=recorded[n]) for n in MODELS}
    if set(MODELS) <= chosen:
        pytest.skip("the router used every model on these questions")
    chat = UniRouteChatModel(lc_router, models)

    def lookup(code: int) -> str:
        """Look up a code."""
        return str(code)

    with_tools = chat.bind_tools([lookup])
    for q in questions[:20]:
        assert chat.invoke(q).response_metadata["unirouter"]["answered_by"] in chosen
        answered = with_tools.invoke(q).response_metadata["unirouter"]["answered_by"]
        assert answered not in chosen
    for out in with_tools.batch(questions[:5]):
        assert out.response_metadata["unirouter"]["answered_by"] not in chosen
    with pytest.raises(InvalidInputError, match="tool_calling"):
        with_tools.invoke(questions[0], unirouter={"force_model": sorted(chosen)[0]})
    only_text = UniRouteChatModel(lc_router, {n: TextOnly(model_name=n, recorded=recorded[n]) for n in MODELS})
    with pytest.raises(InvalidInputError, match="none of the candidates"):
        only_text.bind_tools([lookup]).invoke(questions[0])


def test_images_and_structured_output_go_to_capable_models(lc_router, recorded, questions):
    q = questions[5]
    name = lc_router.route(q, models=list(MODELS)).model
    models = make_models(recorded)
    models[name] = ReplayChatModel(model_name=name, recorded=recorded[name], profile={"image_inputs": False, "structured_output": False})
    chat = UniRouteChatModel(lc_router, models)
    image = HumanMessage(content=[{"type": "text", "text": q}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    assert chat.invoke([HumanMessage(q)]).response_metadata["unirouter"]["answered_by"] == name
    assert chat.invoke([image]).response_metadata["unirouter"]["answered_by"] != name
    structured = chat.with_structured_output({"title": "R", "type": "object", "properties": {"a": {"type": "string"}}})
    assert name not in structured._options({}, None, q).allowed_models


def test_pickle_and_deep_copy_round_trip(chat, questions):
    expected = chat.invoke(questions[6]).content
    for clone in (pickle.loads(pickle.dumps(chat)), chat.model_copy(deep=True), copy.deepcopy(chat)):
        assert clone.invoke(questions[6]).content == expected
        assert clone.pool is not chat.pool


def test_runnable_pickles(lc_router, models, questions):
    runnable = UniRouteRunnable(lc_router, models)
    clone = pickle.loads(pickle.dumps(runnable))
    assert clone.invoke(questions[7]).content == runnable.invoke(questions[7]).content


def test_savings_ledger_books_every_call(lc_router, recorded, questions, tmp_path):
    chat = UniRouteChatModel(lc_router, make_models(recorded), costs=prices(recorded))
    ledger = SavingsLedger.for_pool(chat, path=tmp_path / "savings.jsonl", session="s1")
    assert ledger.baseline == min(MODELS, key=lambda n: lc_router.get_profile(n).global_error)
    outs = [chat.invoke(q) for q in questions[:6]]
    for out in outs:
        entry = out.response_metadata["unirouter"]["savings"]
        assert entry["realised_from_usage"] and entry["baseline"] == ledger.baseline
    decisions = [chat.pool.decide(q, sent=q) for q in questions[:6]]  # priced for the prompt sent (issue 17)
    summary = ledger.summary()
    base = sum(float(d.expected_cost[d.candidates.index(ledger.baseline)]) for d in decisions)
    assert summary.n_calls == 6 and summary.baseline_cost == pytest.approx(base)
    assert summary.expected_cost == pytest.approx(sum(d.chosen_expected_cost for d in decisions))
    price = {n: prices(recorded)[n] for n in MODELS}
    realised = sum(price[o.response_metadata["unirouter"]["answered_by"]].cost(o.usage_metadata["input_tokens"], o.usage_metadata["output_tokens"]) for o in outs)
    assert summary.realised_cost == pytest.approx(realised)
    assert summary.routing_seconds > 0
    assert len((tmp_path / "savings.jsonl").read_text().splitlines()) == 6
