"""UniRouteRunnable on the real fitted router (MiniLM, MMLU-Pro) with replay chat models."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from replay import answer_text
from unirouter import AllModelsFailedError, InvalidInputError, ProfilingError, UniRouter, UnknownModelError
from unirouter.profiling.scorers import MultipleChoiceScorer

from tests.langchain.fakes import (
    MODELS,
    ModelDown,
    Recorder,
    ReplayChatModel,
    make_models,
    prices,
)
from unirouter_langchain import DECISION_EVENT, PROFILING_TAG, UniRouteRunnable


@pytest.fixture()
def runnable(lc_router, models) -> UniRouteRunnable:
    return UniRouteRunnable(lc_router, models)


def test_invoke_answers_with_the_model_the_core_router_picks(runnable, lc_router, recorded, questions):
    q = questions[0]
    out = runnable.invoke(q)
    expected = lc_router.route(q, models=list(MODELS)).model
    assert isinstance(out, AIMessage)
    meta = out.response_metadata["unirouter"]
    assert meta["model"] == meta["answered_by"] == expected
    assert out.content == answer_text(recorded[expected].find(q), q)
    assert set(meta["predicted_error"]) == set(MODELS) and meta["cluster"] is not None
    assert out.usage_metadata["output_tokens"] > 0  # a chain run: the message keeps its usage


def test_lcel_prompt_router_parser_chain(runnable, lc_router, recorded, questions):
    chain = ChatPromptTemplate.from_messages([("system", "Answer."), ("human", "{q}")]) | runnable | StrOutputParser()
    q = questions[1]
    expected = lc_router.route(q, models=list(MODELS)).model
    assert chain.invoke({"q": q}) == answer_text(recorded[expected].find(q), q)


@pytest.mark.parametrize(
    "make_input",
    [
        lambda q: q,
        lambda q: [("system", "Be brief."), ("human", q)],
        lambda q: [SystemMessage("Be brief."), HumanMessage(q)],
        lambda q: ChatPromptTemplate.from_messages([("human", "{q}")]).invoke({"q": q}),
        lambda q: [HumanMessage(content=[{"type": "text", "text": q}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}])],
        lambda q: [HumanMessage(q), AIMessage("", tool_calls=[{"name": "t", "args": {}, "id": "1"}]), ToolMessage("42", tool_call_id="1")],
    ],
    ids=["str", "tuples", "messages", "prompt_value", "image_part", "tool_result_after"],
)
def test_routes_on_the_latest_user_text_whatever_the_input_type(runnable, lc_router, questions, make_input):
    q = questions[2]
    out = runnable.invoke(make_input(q))
    assert out.response_metadata["unirouter"]["model"] == lc_router.route(q, models=list(MODELS)).model


def test_routing_input_conversation_and_callable(lc_router, models, questions):
    msgs = [HumanMessage(questions[3]), AIMessage("Let me think."), HumanMessage(questions[4])]
    conv = UniRouteRunnable(lc_router, models, routing_input="conversation").invoke(msgs)
    text = "\n".join(f"{m.type}: {m.text}" for m in msgs)
    assert conv.response_metadata["unirouter"]["model"] == lc_router.route(text, models=list(MODELS)).model
    first = UniRouteRunnable(lc_router, models, routing_input=lambda ms: ms[0].text).invoke(msgs)
    assert first.response_metadata["unirouter"]["model"] == lc_router.route(questions[3], models=list(MODELS)).model


@pytest.mark.parametrize(
    "bad_input",
    [[AIMessage("only the assistant spoke")], [HumanMessage(content=[{"type": "image_url", "image_url": {"url": "https://x"}}])], "   "],
    ids=["no_user_message", "image_only", "blank"],
)
def test_input_without_text_is_a_clear_error(runnable, bad_input):
    with pytest.raises(InvalidInputError, match="no text to route on"):
        runnable.invoke(bad_input)


def test_per_call_options_nested_and_flat(runnable, questions):
    q = questions[5]
    forced = runnable.invoke(q, config={"configurable": {"unirouter": {"force_model": "Llama-2-7b-hf"}}})
    assert forced.response_metadata["unirouter"]["answered_by"] == "Llama-2-7b-hf"
    flat = runnable.invoke(q, config={"configurable": {"unirouter_allowed_models": ["Phi-3-mini-4k-instruct"]}})
    assert flat.response_metadata["unirouter"]["answered_by"] == "Phi-3-mini-4k-instruct"
    # a huge cost weight sends every question to the cheapest model in expectation
    cheap = runnable.batch(questions[:6], config={"configurable": {"unirouter": {"cost_weight": 1e6}}})
    chosen = {m.response_metadata["unirouter"]["model"] for m in cheap}
    assert chosen == {"Phi-3-mini-4k-instruct"}


def test_budget_option_lowers_cost(runnable, questions):
    qs = questions[:40]
    free = runnable.batch(qs)
    tight = runnable.batch(qs, config={"configurable": {"unirouter": {"budget": 3e-5}}})

    def spend(outs):
        return sum(o.response_metadata["unirouter"]["expected_cost"][o.response_metadata["unirouter"]["model"]] for o in outs)

    assert spend(tight) < spend(free)
    assert tight[0].response_metadata["unirouter"]["cost_weight"] > 0


def test_defaults_set_on_construction_and_overridden_per_call(lc_router, models, questions):
    r = UniRouteRunnable(lc_router, models, options={"force_model": "gpt-4o-2024-05-13"})
    assert r.invoke(questions[0]).response_metadata["unirouter"]["model"] == "gpt-4o-2024-05-13"
    out = r.invoke(questions[0], config={"configurable": {"unirouter": {"force_model": "Llama-2-7b-hf"}}})
    assert out.response_metadata["unirouter"]["model"] == "Llama-2-7b-hf"


@pytest.mark.parametrize(
    ("configurable", "error", "match"),
    [
        ({"unirouter": {"cost_weight": "high"}}, InvalidInputError, "cost_weight"),
        ({"unirouter": {"max_fallbacks": -1}}, InvalidInputError, "max_fallbacks"),
        ({"unirouter": {"costweight": 1.0}}, InvalidInputError, "costweight"),
        ({"unirouter_budgett": 0.1}, InvalidInputError, "unirouter_budgett"),
        ({"unirouter": "cheap"}, InvalidInputError, "mapping"),
        ({"unirouter": {"force_model": "claude-9"}}, UnknownModelError, "claude-9"),
        ({"unirouter": {"allowed_models": ["gpt-4o-2024-05-13", "nope"]}}, UnknownModelError, "nope"),
    ],
)
def test_bad_config_is_a_typed_error_naming_the_key(runnable, questions, configurable, error, match):
    with pytest.raises(error, match=match):
        runnable.invoke(questions[0], config={"configurable": configurable})


def test_no_models_is_a_clear_error(lc_router, questions):
    with pytest.raises(UnknownModelError, match="no models"):
        UniRouteRunnable(lc_router, {}).invoke(questions[0])


def test_needs_a_router_and_chat_models(lc_router, models):
    with pytest.raises(InvalidInputError, match="fitted router"):
        UniRouteRunnable(None, models)
    with pytest.raises(InvalidInputError, match="chat model"):
        UniRouteRunnable(lc_router, {"gpt-4o-2024-05-13": lambda p: "A"})


def test_fallback_to_next_best_is_recorded(lc_router, recorded, questions):
    q = questions[6]
    ranked = list(lc_router.route(q, models=list(MODELS)).ranked)
    models = make_models(recorded)
    models[ranked[0]] = ReplayChatModel(model_name=ranked[0], recorded=recorded[ranked[0]], fail_always=True)
    out = UniRouteRunnable(lc_router, models).invoke(q)
    meta = out.response_metadata["unirouter"]
    assert meta["model"] == ranked[0] and meta["answered_by"] == ranked[1]
    assert meta["attempts"][0]["ok"] is False and "ModelDown" in meta["attempts"][0]["error"]
    assert meta["attempts"][1] == {"model": ranked[1], "ok": True}


def test_fallbacks_are_bounded_and_every_error_is_raised(lc_router, recorded, questions):
    models = make_models(recorded, fail_always=True)
    r = UniRouteRunnable(lc_router, models, options={"max_fallbacks": 1})
    with pytest.raises(AllModelsFailedError) as info:  # issue 19.4: every attempt's error kept
        r.invoke(questions[0])
    assert [type(e) for e in info.value.exceptions] == [ModelDown, ModelDown]
    assert sum(len(m.calls) for m in models.values()) == 2
    with pytest.raises(AllModelsFailedError) as info:
        r.invoke(questions[0], config={"configurable": {"unirouter": {"max_fallbacks": 0}}})
    assert [type(e) for e in info.value.exceptions] == [ModelDown]


def test_chosen_model_is_a_tagged_child_run_and_the_decision_an_event(runnable, questions):
    rec = Recorder()
    out = runnable.invoke(questions[7], config={"callbacks": [rec]})
    name = out.response_metadata["unirouter"]["model"]
    (chain_id,) = [i for i, r in rec.runs.items() if r["name"] == "UniRouteRunnable"]
    (child,) = rec.tagged("unirouter:")
    assert child["tags"] == [f"unirouter:{name}"] and child["parent"] == chain_id and child["kind"] == "llm"
    ((event, data, run_id),) = rec.events
    assert event == DECISION_EVENT and data["model"] == name and run_id == chain_id


async def test_astream_events_carry_the_decision(runnable, questions):
    events = [e async for e in runnable.astream_events(questions[8], version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["name"] for e in custom] == [DECISION_EVENT]
    model_starts = [e for e in events if e["event"] == "on_chat_model_start"]
    assert model_starts[0]["tags"] == [f"unirouter:{custom[0]['data']['model']}"]


async def test_ainvoke_matches_invoke(runnable, questions):
    sync = runnable.invoke(questions[9])
    asyn = await runnable.ainvoke(questions[9])
    assert asyn.content == sync.content
    assert asyn.response_metadata["unirouter"]["model"] == sync.response_metadata["unirouter"]["model"]


def test_tokens_are_counted_once(runnable, questions):
    with get_usage_metadata_callback() as cb:
        out = runnable.invoke(questions[10])
    (usage,) = cb.usage_metadata.values()
    assert usage["total_tokens"] == out.usage_metadata["total_tokens"]


def _count_embeds(monkeypatch, router):
    calls = []
    embedder = router.embedder_
    original = embedder.embed

    def embed(texts):
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(embedder, "embed", embed)
    return calls


def test_batch_embeds_all_inputs_in_one_call(runnable, lc_router, questions, monkeypatch):
    calls = _count_embeds(monkeypatch, lc_router)
    outs = runnable.batch(questions[:8])
    assert calls == [8]
    expected = [d.model for d in lc_router.route_batch(questions[:8], models=list(MODELS))]
    assert [o.response_metadata["unirouter"]["model"] for o in outs] == expected


async def test_abatch_embeds_all_inputs_in_one_call(runnable, lc_router, questions, monkeypatch):
    calls = _count_embeds(monkeypatch, lc_router)
    outs = await runnable.abatch(questions[:5])
    assert calls == [5] and len(outs) == 5


def test_batch_return_exceptions_keeps_other_inputs(runnable, questions):
    outs = runnable.batch([questions[0], [AIMessage("no user")], questions[1]], return_exceptions=True)
    assert isinstance(outs[0], AIMessage) and isinstance(outs[2], AIMessage)
    assert isinstance(outs[1], InvalidInputError)


def test_add_model_profiles_through_the_core_profiler(lc_router, recorded, mmlu_small, models):
    name = "gemini-1.5-flash-002"
    lc_router.remove_model(name)
    del models[name]
    r = UniRouteRunnable(lc_router, models, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False})
    rec = Recorder()
    new = ReplayChatModel(model_name=name, recorded=recorded[name], callbacks=[rec])
    profile = r.add_model(name, new, cost=prices(recorded)[name])
    val = mmlu_small["val"]
    truth = val.correctness[:, val.model_index([name])[0]]
    np.testing.assert_array_equal(profile.scores, truth)  # replayed answers graded like the records
    assert len(new.calls) == len(val)
    assert all(r["tags"] == [PROFILING_TAG] and r["name"] == "unirouter-profile" for r in rec.runs.values())
    assert name in r.models and profile.cost_per_query > 0


async def test_aadd_model_and_remove_model(lc_router, recorded, models, questions):
    name = "Phi-3-mini-4k-instruct"
    lc_router.remove_model(name)
    del models[name]
    r = UniRouteRunnable(lc_router, models, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False})
    await r.aadd_model(name, ReplayChatModel(model_name=name, recorded=recorded[name]), cost=2.6e-5)
    assert name in lc_router.models_
    forced = r.invoke(questions[0], config={"configurable": {"unirouter": {"force_model": name}}})
    assert forced.response_metadata["unirouter"]["answered_by"] == name
    r.remove_model(name)
    assert name not in r.models and name not in lc_router.models_
    with pytest.raises(UnknownModelError):
        r.invoke(questions[0], config={"configurable": {"unirouter": {"force_model": name}}})


def test_construction_profiles_models_without_a_profile(lc_router, recorded, models):
    name = "Llama-2-7b-hf"
    lc_router.remove_model(name)
    with pytest.raises(InvalidInputError, match="scorer"):
        UniRouteRunnable(lc_router, models)
    r = UniRouteRunnable(
        lc_router, models, costs={name: 5e-5}, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False}
    )
    assert models[name].calls and lc_router.get_profile(name).cost_per_query == pytest.approx(5e-5)
    assert r.models[name] is models[name]


def test_profiling_failure_registers_nothing(lc_router, recorded, models):
    name = "Llama-2-7b-hf"
    lc_router.remove_model(name)
    del models[name]
    r = UniRouteRunnable(lc_router, models, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False})
    broken = ReplayChatModel(model_name=name, recorded=recorded[name], fail_always=True)
    with pytest.raises(ProfilingError):
        r.add_model(name, broken, cost=1e-4)
    assert name not in r.models and name not in lc_router.models_


def test_save_load_reattaches_models_without_reprofiling(runnable, lc_router, recorded, questions, tmp_path):
    runnable.save(tmp_path / "r")
    fresh = make_models(recorded)
    loaded = UniRouteRunnable.load(tmp_path / "r", models=fresh, embedder=lc_router.embedder_)
    assert all(not m.calls for m in fresh.values())  # no profiling calls
    assert loaded.pool.router is not lc_router and isinstance(loaded.pool.router, UniRouter)
    for q in questions[:5]:
        a, b = runnable.invoke(q), loaded.invoke(q)
        assert a.content == b.content
        assert a.response_metadata["unirouter"]["model"] == b.response_metadata["unirouter"]["model"]
    with pytest.raises(InvalidInputError, match="gpt-4o"):
        UniRouteRunnable.load(tmp_path / "r", models={"Llama-2-7b-hf": fresh["Llama-2-7b-hf"]}, embedder=lc_router.embedder_)


@pytest.mark.parametrize("method", ["stream", "astream"])
async def test_lcel_chain_streams_the_chosen_models_tokens(runnable, lc_router, recorded, questions, method):
    q = questions[11]
    rec = Recorder()
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | runnable
    config = {"callbacks": [rec]}
    if method == "stream":
        chunks = list(chain.stream({"q": q}, config=config))
    else:
        chunks = [c async for c in chain.astream({"q": q}, config=config)]
    name = lc_router.route(q, models=list(MODELS)).model
    assert len(chunks) > 2
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.content == answer_text(recorded[name].find(q), q)
    assert full.response_metadata["unirouter"]["answered_by"] == name
    (child,) = rec.tagged("unirouter:")
    assert child["tags"] == [f"unirouter:{name}"]
    assert [e[0] for e in rec.events] == [DECISION_EVENT]


def test_stream_falls_back_before_the_first_chunk(lc_router, recorded, questions):
    q = questions[12]
    ranked = lc_router.route(q, models=list(MODELS)).ranked
    models = make_models(recorded)
    models[ranked[0]] = ReplayChatModel(model_name=ranked[0], recorded=recorded[ranked[0]], fail_always=True)
    chunks = list((UniRouteRunnable(lc_router, models) | StrOutputParser()).stream(q))
    assert "".join(chunks) == answer_text(recorded[ranked[1]].find(q), q)
