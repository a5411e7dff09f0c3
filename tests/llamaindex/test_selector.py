"""UniRouteSelector alone and inside RouterQueryEngine / RouterRetriever, on a real fitted router."""

from __future__ import annotations

import pytest


from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RouterQueryEngine  # noqa: E402
from llama_index.core.retrievers import RouterRetriever  # noqa: E402
from llama_index.core.selectors import EmbeddingSingleSelector  # noqa: E402
from llama_index.core.tools import QueryEngineTool, RetrieverTool, ToolMetadata  # noqa: E402
from replay import NO_ANSWER, TEMPLATES  # noqa: E402
from unirouter import InvalidInputError, UnknownModelError  # noqa: E402

from tests.llamaindex.conftest import CHEAP, NAMES, STRONG, WEAK  # noqa: E402
from tests.llamaindex.fakes import MiniLMEmbedding  # noqa: E402
from unirouter_llamaindex import UniRouteLLM, UniRouteSelector  # noqa: E402

DOCS = [
    "Newton's second law: the net force on a body equals its mass times its acceleration (F = m a).",
    "In economics, price elasticity of demand is the percentage change in quantity over the percentage change in price.",
    "A contract needs an offer, an acceptance, consideration and the intention to create legal relations.",
    "Enzymes are proteins that lower the activation energy of chemical reactions in cells.",
]


def choices(names=NAMES) -> list[ToolMetadata]:
    return [ToolMetadata(name=n, description=f"answers with {n}") for n in names]


@pytest.fixture()
def questions(mmlu_small) -> list[str]:
    return list(mmlu_small["test"].texts[20:30])


def possible_answers(llm, question: str) -> set[str]:
    letter = llm._record.find(question)
    return {NO_ANSWER} if not letter else {t.format(L=letter) for t in TEMPLATES}


def test_selects_the_choice_of_the_routers_decision_with_a_reason(router3, questions):
    selector = UniRouteSelector(router3)
    order = [WEAK, STRONG, CHEAP]
    for q in questions[:5]:
        result = selector.select(choices(order), q)
        decision = router3.route(q, models=order)
        assert result.ind == order.index(decision.model)
        i = decision.candidates.index(decision.model)
        assert f"predicted error {decision.predicted_error[i]:.3f}" in result.reason
        assert f"expected cost ${decision.expected_cost[i]:.6f}/query" in result.reason
        assert decision.model in result.reason


async def test_sync_and_async_selection_agree(router3, questions):
    selector = UniRouteSelector(router3)
    for q in questions[:4]:
        sync, async_ = selector.select(choices(), q), await selector.aselect(choices(), q)
        assert (sync.ind, sync.reason) == (async_.ind, async_.reason)


def test_only_the_given_choices_compete(router3, questions):
    selector = UniRouteSelector(router3)
    q = questions[0]
    assert selector.select(choices([WEAK]), q).ind == 0
    pair = [CHEAP, WEAK]
    assert pair[selector.select(choices(pair), q).ind] == router3.route(q, models=pair).model


def test_cost_weight_default_moves_the_selection_to_cheap_models(router3, questions):
    cheap = UniRouteSelector(router3, options={"cost_weight": 1e5})
    picks = {NAMES[cheap.select(choices(), q).ind] for q in questions}
    assert STRONG not in picks
    assert picks == {router3.route(q, models=list(NAMES), cost_weight=1e5).model for q in questions}


def test_model_names_map_choice_names_to_models(router3, questions):
    selector = UniRouteSelector(router3, model_names={"physics": STRONG, "budget": WEAK})
    q = questions[1]
    result = selector.select(choices(["physics", "budget"]), q)
    assert ["physics", "budget"][result.ind] == {STRONG: "physics", WEAK: "budget"}[router3.route(q, models=[STRONG, WEAK]).model]


def test_empty_choices_raise(router3, questions):
    with pytest.raises(InvalidInputError, match="at least one choice"):
        UniRouteSelector(router3).select([], questions[0])


def test_unknown_choice_raises_and_names_it(router3, questions):
    with pytest.raises(UnknownModelError, match="'mystery-model'.*fallback_selector"):
        UniRouteSelector(router3).select(choices([STRONG, "mystery-model"]), questions[0])
    with pytest.raises(UnknownModelError, match="not profiled"):
        UniRouteSelector(router3).select(["a description without a name"], questions[0])


def test_unknown_choice_goes_to_the_explicit_fallback_selector(router3, embedder, questions):
    fallback = EmbeddingSingleSelector.from_defaults(embed_model=MiniLMEmbedding(embedder))
    selector = UniRouteSelector(router3, fallback_selector=fallback)
    tools = [ToolMetadata(name="physics", description=DOCS[0]), ToolMetadata(name="law", description=DOCS[2])]
    result = selector.select(tools, "What does Newton's second law say about force and mass?")
    assert result.ind == 0 and result.reason.startswith("Top similarity match")


@pytest.mark.parametrize("query", ["", "   "])
async def test_a_query_with_no_text_raises(router3, query):
    selector = UniRouteSelector(router3)
    with pytest.raises(InvalidInputError, match="no text to route on"):
        selector.select(choices(), query)
    with pytest.raises(InvalidInputError, match="no text to route on"):
        await selector.aselect(choices(), query)


def test_a_candidate_pool_restricts_choices_to_its_candidates(router3, llms, questions):
    pool = UniRouteLLM(router3, {STRONG: llms[STRONG], WEAK: llms[WEAK]}).pool
    selector = UniRouteSelector(pool)
    q = questions[2]
    assert [STRONG, WEAK][selector.select(choices([STRONG, WEAK]), q).ind] == router3.route(q, models=[STRONG, WEAK]).model
    with pytest.raises(UnknownModelError, match=CHEAP):
        selector.select(choices(), q)


# -- inside LlamaIndex's routers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def index(embedder):
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCS], embed_model=MiniLMEmbedding(embedder))


@pytest.fixture()
def engine_tools(index, llms):
    return [
        QueryEngineTool.from_defaults(index.as_query_engine(llm=llms[n], similarity_top_k=1), name=n, description=f"notes answered by {n}")
        for n in NAMES
    ]


def test_router_query_engine_answers_with_the_routed_engines_llm(router3, engine_tools, llms, questions):
    engine = RouterQueryEngine(selector=UniRouteSelector(router3), query_engine_tools=engine_tools, llm=MockLLM())
    for q in questions[:3]:
        for m in llms.values():
            m.calls.clear()
        response = engine.query(q)
        chosen = router3.route(q, models=list(NAMES)).model
        assert str(response) in possible_answers(llms[chosen], q)
        assert len(llms[chosen].calls) == 1 and q in llms[chosen].calls[0]  # the QA prompt holds the question
        assert all(m.calls == [] for n, m in llms.items() if n != chosen)
        assert response.metadata["selector_result"].ind == NAMES.index(chosen)
        assert "predicted error" in response.metadata["selector_result"].reason


async def test_router_query_engine_async_query(router3, engine_tools, llms, questions):
    engine = RouterQueryEngine(selector=UniRouteSelector(router3), query_engine_tools=engine_tools, llm=MockLLM())
    q = questions[3]
    response = await engine.aquery(q)
    chosen = router3.route(q, models=list(NAMES)).model
    assert str(response) in possible_answers(llms[chosen], q)


def test_router_retriever_selects_the_retriever_of_the_routed_model(router3, index, questions):
    retrievers = {n: index.as_retriever(similarity_top_k=i + 1) for i, n in enumerate(NAMES)}
    tools = [RetrieverTool.from_defaults(r, name=n, description=f"retriever for {n}") for n, r in retrievers.items()]
    router_retriever = RouterRetriever(selector=UniRouteSelector(router3), retriever_tools=tools, llm=MockLLM())
    q = questions[4]
    nodes = router_retriever.retrieve(q)
    chosen = router3.route(q, models=list(NAMES)).model
    assert len(nodes) == NAMES.index(chosen) + 1  # the chosen retriever's top-k
