"""Issue 17 with real LlamaIndex objects: a VectorStoreIndex query engine routes on its query (not the
template with the retrieved context), follow-ups route with their question, the call is priced for the
prompt sent, and the realised cost and budget state are reported."""

from __future__ import annotations

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from unirouter import calibrate_cost_weight
from unirouter.profiling.profiler import TokenPrice
from unirouter.profiling.scorers import MultipleChoiceScorer

from tests.llamaindex.conftest import NAMES
from tests.llamaindex.fakes import MiniLMEmbedding
from unirouter_llamaindex import UniRouteDecisionEvent, UniRouteLLM

QUIET = {"progress": False}


class Collect(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "CollectTraffic"

    def handle(self, event, **kwargs):
        if isinstance(event, UniRouteDecisionEvent):
            self.events.append(event)


def _prices(records) -> dict[str, TokenPrice]:
    return {n: TokenPrice(input_per_mtok=records[n].price_in, output_per_mtok=records[n].price_out) for n in NAMES}


def test_query_engine_routes_on_the_query_not_the_template(router3, llms, records, mmlu_small, embedder):
    llm = UniRouteLLM(router3, llms, costs=_prices(records), scorer=MultipleChoiceScorer(), options={"cost_weight": 20.0})
    docs = [Document(text=t) for t in mmlu_small["train"].texts[:60]]
    index = VectorStoreIndex.from_documents(docs, embed_model=MiniLMEmbedding(embedder))
    engine = index.as_query_engine(llm=llm, similarity_top_k=3)
    handler = Collect(events=[])
    get_dispatcher().add_event_handler(handler)
    questions = mmlu_small["test"].texts[:8]
    try:
        for q in questions:
            engine.query(q)
    finally:
        get_dispatcher().event_handlers.remove(handler)
    assert len(handler.events) == len(questions)
    for q, event in zip(questions, handler.events):
        record = event.record
        assert record["model"] == llm.pool.decide(q, {"cost_weight": 20.0}).model == llm.route(q).model
        # the call was priced for the templated prompt actually sent (context included), which is
        # longer than the question, and its realised cost is reported from the usage the LLM gave
        bare = llm.route(q)
        assert all(record["expected_cost"][n] > float(bare.expected_cost[bare.candidates.index(n)]) for n in NAMES)
        assert record["cost_source"] == "usage" and record["realised_cost"] > 0
    # the prompt the chosen model received is the template with the retrieved context
    sent = [c for m in llms.values() for c in m.calls if "Context information" in c]
    assert len(sent) == len(questions)


def test_follow_up_is_routed_with_the_question_it_follows(router3, llms, costs, mmlu_small):
    llm = UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer())
    last = UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer(), routing_input="last_user")
    q = mmlu_small["test"].texts[3]
    chat = [
        ChatMessage(role="user", content=q),
        ChatMessage(role="assistant", content="The answer is (B)."),
        ChatMessage(role="user", content="Why? Explain step by step."),
    ]
    info = llm.chat(chat).additional_kwargs["unirouter"]
    assert info["model"] == router3.route(q + "\nWhy? Explain step by step.", models=list(NAMES)).model
    info_last = last.chat(chat).additional_kwargs["unirouter"]
    assert info_last["model"] == router3.route("Why? Explain step by step.", models=list(NAMES)).model


def test_paced_budget_and_quality_floor_per_call(router3, llms, costs, mmlu_small):
    llm = UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer())
    budget = sorted(costs.values())[1]
    states = [llm.complete(q, budget=budget).additional_kwargs["unirouter"]["budget"] for q in mmlu_small["test"].texts[:5]]
    assert [s["calls"] for s in states] == [1, 2, 3, 4, 5]
    assert all(s["budget"] == budget for s in states)
    floor = llm.complete(mmlu_small["test"].texts[0], quality_floor=0.3).additional_kwargs["unirouter"]
    assert floor["cost_weight"] > 0


def test_top_share_is_paced_per_call_on_who_answered(router3, llms, costs, mmlu_small):
    """``max_top_share`` as a keyword argument: each call reports the top-share pacer's state, which
    counts the calls the most expensive model answered; ``top_share_pacing=False`` keeps the
    calibrated weight."""
    llm = UniRouteLLM(router3, llms, costs=costs, scorer=MultipleChoiceScorer())
    texts = mmlu_small["test"].texts[:6]
    records = [llm.complete(q, max_top_share=0.2).additional_kwargs["unirouter"] for q in texts]
    states = [r["top_share"] for r in records]
    top = states[0]["top_model"]
    assert top in NAMES and [s["calls"] for s in states] == list(range(1, 7))
    answered_top = [r["answered_by"] == top for r in records]
    assert states[-1]["share"] == sum(answered_top) / len(texts)
    # the weight moved after every call: up when the top model answered, down otherwise
    for r, nxt, hit in zip(records, records[1:], answered_top):
        assert (nxt["cost_weight"] > r["cost_weight"]) == hit or nxt["cost_weight"] in (llm.pool.top_share_pacer(0.2).min_cost_weight, llm.pool.top_share_pacer(0.2).max_cost_weight)
    static = llm.complete(texts[0], max_top_share=0.2, top_share_pacing=False).additional_kwargs["unirouter"]
    assert "top_share" not in static
    assert static["cost_weight"] == calibrate_cost_weight(router3, router3.validation_set_.prompts, max_top_share=0.2, models=list(NAMES))
