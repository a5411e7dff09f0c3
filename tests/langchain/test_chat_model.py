"""UniRouteChatModel on the real fitted router with replay chat models."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel
from replay import answer_text
from unirouter import InvalidInputError, UnknownModelError

from tests.langchain.fakes import (
    MODELS,
    Recorder,
    ReplayChatModel,
    ToolCallingFake,
    make_models,
)
from unirouter_langchain import DECISION_EVENT, UniRouteChatModel, UniRouteRunnable


@pytest.fixture()
def chat(lc_router, models) -> UniRouteChatModel:
    return UniRouteChatModel(lc_router, models)


def _expected(lc_router, q):
    return lc_router.route(q, models=list(MODELS)).model


def test_invoke_returns_the_chosen_models_answer(chat, lc_router, recorded, questions):
    q = questions[0]
    out = chat.invoke(q)
    name = _expected(lc_router, q)
    assert isinstance(out, AIMessage) and out.content == answer_text(recorded[name].find(q), q)
    meta = out.response_metadata["unirouter"]
    assert meta["answered_by"] == name and meta["usage"]["output_tokens"] > 0
    assert out.response_metadata["model_name"] == name


async def test_ainvoke_matches_invoke(chat, questions):
    a, b = chat.invoke(questions[1]), await chat.ainvoke(questions[1])
    assert a.content == b.content and a.response_metadata["unirouter"]["model"] == b.response_metadata["unirouter"]["model"]


def test_tokens_are_counted_once_and_shown_on_the_message(chat, lc_router, questions):
    q = questions[2]
    with get_usage_metadata_callback() as cb:
        out = chat.invoke(q)
    assert list(cb.usage_metadata) == [_expected(lc_router, q)]  # attributed to the real model
    assert cb.usage_metadata[_expected(lc_router, q)]["total_tokens"] == out.usage_metadata["total_tokens"]
    assert out.usage_metadata["output_tokens"] > 0
    assert out.response_metadata["unirouter"]["usage"] == out.usage_metadata


def test_one_chat_model_run_per_call_with_the_decision_in_its_metadata(chat, questions):
    rec = Recorder()
    out = chat.invoke(questions[3], config={"callbacks": [rec]})
    name = out.response_metadata["unirouter"]["model"]
    ((run_id, run),) = rec.runs.items()  # the chosen model runs inside the router's own run
    assert run["tags"] == [f"unirouter:{name}"]
    assert run["metadata"]["unirouter_model"] == name and run["metadata"]["ls_model_name"] == name
    assert run["metadata"]["unirouter_decision"]["ranked"][0] == name
    ((event, data, event_run),) = rec.events
    assert event == DECISION_EVENT and data["answered_by"] == name and event_run == run_id


@pytest.mark.parametrize("method", ["stream", "astream"])
async def test_streams_the_chosen_model_in_one_run(chat, recorded, lc_router, questions, method):
    q = questions[4]
    rec = Recorder()
    config = {"callbacks": [rec]}
    if method == "stream":
        chunks = list(chat.stream(q, config=config))
    else:
        chunks = [c async for c in chat.astream(q, config=config)]
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    name = _expected(lc_router, q)
    assert full.content == answer_text(recorded[name].find(q), q)
    assert chunks[-1].chunk_position == "last" and full.response_metadata["unirouter"]["answered_by"] == name
    assert full.usage_metadata["output_tokens"] > 0 and full.response_metadata["unirouter"]["usage"] == full.usage_metadata
    ((run_id, run),) = rec.runs.items()
    assert run["tags"] == [f"unirouter:{name}"]
    assert [e[0] for e in rec.events] == [DECISION_EVENT] and rec.events[0][2] == run_id


async def test_astream_events_show_the_decision_and_each_token_once(chat, questions):
    events = [e async for e in chat.astream_events(questions[5], version="v2")]
    assert [e["name"] for e in events if e["event"] == "on_custom_event"] == [DECISION_EVENT]
    starts = [e for e in events if e["event"] == "on_chat_model_start"]
    assert len(starts) == 1 and any(t.startswith("unirouter:") for t in starts[0]["tags"])
    streamed = "".join(e["data"]["chunk"].text for e in events if e["event"] == "on_chat_model_stream")
    (end,) = [e for e in events if e["event"] == "on_chat_model_end"]
    assert streamed == end["data"]["output"].text


def test_stream_falls_back_before_the_first_chunk(lc_router, recorded, questions):
    q = questions[6]
    ranked = lc_router.route(q, models=list(MODELS)).ranked
    models = make_models(recorded)
    models[ranked[0]] = ReplayChatModel(model_name=ranked[0], recorded=recorded[ranked[0]], fail_always=True)
    chat = UniRouteChatModel(lc_router, models)
    full = None
    for c in chat.stream(q):
        full = c if full is None else full + c
    assert full.response_metadata["unirouter"]["answered_by"] == ranked[1]
    out = chat.invoke(q)
    assert [a["ok"] for a in out.response_metadata["unirouter"]["attempts"]] == [False, True]


def test_per_call_options_from_config_kwargs_and_bind(chat, questions):
    q = questions[7]
    via_config = chat.invoke(q, config={"configurable": {"unirouter": {"force_model": "Llama-2-7b-hf"}}})
    via_flat = chat.invoke(q, config={"configurable": {"unirouter_force_model": "Llama-2-7b-hf"}})
    via_kwarg = chat.invoke(q, unirouter={"force_model": "Llama-2-7b-hf"})
    via_bind = chat.bind(unirouter={"force_model": "Llama-2-7b-hf"}).invoke(q)
    for out in (via_config, via_flat, via_kwarg, via_bind):
        assert out.response_metadata["unirouter"]["answered_by"] == "Llama-2-7b-hf"
    # the call argument wins over the config
    both = chat.invoke(q, config={"configurable": {"unirouter_force_model": "Llama-2-7b-hf"}}, unirouter={"force_model": "Phi-3-mini-4k-instruct"})
    assert both.response_metadata["unirouter"]["answered_by"] == "Phi-3-mini-4k-instruct"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"config": {"configurable": {"unirouter": {"budget": -1}}}}, InvalidInputError, "budget"),
        ({"unirouter": {"allowed_models": 3}}, InvalidInputError, "allowed_models"),
        ({"unirouter": {"force_model": "nope"}}, UnknownModelError, "nope"),
    ],
)
def test_bad_options_are_typed_errors(chat, questions, kwargs, error, match):
    with pytest.raises(error, match=match):
        chat.invoke(questions[0], **kwargs)


def test_no_text_is_a_clear_error(chat):
    with pytest.raises(InvalidInputError, match="no text to route on"):
        chat.invoke([AIMessage("hi")])


def test_batch_embeds_all_inputs_once(chat, lc_router, questions, monkeypatch):
    calls = []
    embedder = lc_router.embedder_
    original = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda texts: calls.append(len(texts)) or original(texts))
    outs = chat.batch(questions[:6])
    assert calls == [6]
    assert [o.response_metadata["unirouter"]["model"] for o in outs] == [d.model for d in lc_router.route_batch(questions[:6], models=list(MODELS))]


def test_bind_tools_is_replayed_on_the_chosen_model(lc_router, questions):
    fakes = {n: ToolCallingFake(model_name=n) for n in MODELS}
    chat = UniRouteChatModel(lc_router, fakes)

    def lookup(code: int) -> str:
        """Look up a code."""
        return str(code)

    out = chat.bind_tools([lookup], tool_choice="any").invoke("please call lookup on 42")
    assert out.tool_calls[0]["name"] == "lookup" and out.tool_calls[0]["args"] == {"code": 42}
    assert fakes[out.response_metadata["unirouter"]["answered_by"]].calls


def test_with_structured_output_uses_the_chosen_models_own_implementation(lc_router, recorded, questions):
    class Answer(BaseModel):
        letter: str
        model: str

    class Structured(ReplayChatModel):
        def with_structured_output(self, schema, *, include_raw=False, **kwargs):
            assert kwargs == {"method": "json_schema"}
            return RunnableLambda(lambda _: schema(letter="C", model=self.model_name))

    models = {n: Structured(model_name=n, recorded=recorded[n]) for n in MODELS}
    chat = UniRouteChatModel(lc_router, models)
    structured = chat.with_structured_output(Answer, method="json_schema")
    assert isinstance(structured, UniRouteRunnable)
    out = structured.invoke(questions[8])
    assert isinstance(out, Answer) and out.model == lc_router.route(questions[8], models=list(MODELS)).model


def test_standard_params_are_passed_to_the_chosen_model(lc_router, models, questions):
    chat = UniRouteChatModel(lc_router, models, temperature=0.0, max_tokens=64, stop=["\n\n"])
    out = chat.invoke(questions[9])
    seen = models[out.response_metadata["unirouter"]["answered_by"]].kwargs_seen[-1]
    assert seen.get("temperature") == 0.0 and seen.get("max_tokens") == 64
    assert chat._get_ls_params()["ls_provider"] == "unirouter"  # before a decision is known


def test_save_load_keeps_decisions_without_reprofiling(chat, lc_router, recorded, questions, tmp_path):
    chat.save(tmp_path / "chat")
    fresh = make_models(recorded)
    loaded = UniRouteChatModel.load(tmp_path / "chat", models=fresh, embedder=lc_router.embedder_, routing_input="last_user")
    assert not any(m.calls for m in fresh.values())
    for q in questions[:4]:
        assert loaded.invoke(q).content == chat.invoke(q).content
    assert isinstance(loaded, UniRouteChatModel) and loaded.models.keys() == chat.models.keys()


def test_usable_inside_a_chain_with_messages(chat, questions):
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    chain = ChatPromptTemplate.from_messages([("system", "Answer."), ("human", "{q}")]) | chat | StrOutputParser()
    assert chain.invoke({"q": questions[0]}) == chat.invoke([HumanMessage(questions[0])]).content
