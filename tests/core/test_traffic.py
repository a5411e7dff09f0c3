"""Issue 17 in the core: pricing the prompt sent, pacing a budget under a traffic shift, honest
quality floors, and the routing text (real router, real MiniLM embeddings, real MMLU-Pro records)."""

from __future__ import annotations

import numpy as np
import pytest

from unirouter import InvalidInputError, calibrate_cost_weight
from unirouter.routers.calibration import _lam_max
from unirouter.integration import CandidatePool
from unirouter.routers.pacing import BudgetPacer
from unirouter.profiling.pricing import CallPricer, count_tokens
from unirouter.profiling.profiler import TokenPrice
from unirouter.integration.routing_text import extract_query, routing_text

LLAMAINDEX_QA = (
    "Context information is below.\n---------------------\n{context}\n---------------------\n"
    "Given the context information and not prior knowledge, answer the query.\nQuery: {query}\nAnswer: "
)
LANGCHAIN_RAG = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to "
    "answer the question. If you don't know the answer, just say that you don't know.\n"
    "Question: {query} \nContext: {context} \nAnswer:"
)


def _prices(ds) -> dict[str, TokenPrice]:
    return {
        m["model"]: TokenPrice(input_per_mtok=float(m["price_in_usd_per_mtok"]), output_per_mtok=float(m["price_out_usd_per_mtok"]))
        for m in ds.models
    }


# -- routing text ------------------------------------------------------------------------------
def test_extract_query_from_rag_templates_and_not_from_plain_questions(mmlu_small):
    q = mmlu_small["test"].texts[0]
    context = "\n\n".join(mmlu_small["train"].texts[:5])
    assert extract_query(LLAMAINDEX_QA.format(context=context, query=q)) == q.strip()
    assert extract_query(LANGCHAIN_RAG.format(context=context, query=q)) == q.strip()
    assert extract_query(q) is None
    assert extract_query("Question: what is 2+2?") is None  # no context: not a template


def test_contextual_routes_a_follow_up_with_its_question_and_a_new_question_alone(mmlu_small):
    q1, q2 = mmlu_small["test"].texts[:2]
    follow = [("user", q1), ("assistant", "The answer is (B)."), ("user", "Why? Explain step by step.")]
    assert routing_text(follow) == f"{q1}\n" + "Why? Explain step by step."
    assert routing_text(follow, "last_user") == "Why? Explain step by step."
    fresh = [("user", q1), ("assistant", "The answer is (B)."), ("user", q2)]
    assert routing_text(fresh) == q2
    assert routing_text(fresh, "user_turns") == f"{q1}\n{q2}"
    assert routing_text([("system", "Be brief."), ("user", q1)], "conversation") == f"system: Be brief.\nuser: {q1}"
    with pytest.raises(InvalidInputError, match="routing_input must be one of"):
        routing_text(follow, "everything")
    with pytest.raises(InvalidInputError, match="no user message"):
        routing_text([("system", "hi")])


# -- pricing -----------------------------------------------------------------------------------
def test_long_prompt_is_priced_for_its_input_tokens(fitted_router, mmlu_small, mmlu_embeddings):
    """A question inside a 40,000-character context costs what its tokens cost, not the profile's
    mean over short validation questions."""
    test = mmlu_small["test"]
    prices = _prices(test)
    names = list(fitted_router.models_)
    pricer = CallPricer(prices)
    x = mmlu_embeddings["test"][:20]
    base = fitted_router.predict(embeddings=x)[1]
    padding = "Background document. " * 1900  # ~40,000 characters
    sent = [padding + q for q in test.texts[:20]]
    priced = pricer.expected_costs(fitted_router, x, [pricer.tokens(s) for s in sent], names, base)
    # the truth: the recorded output of each model, and the long prompt's input tokens
    cols = test.model_index(names)
    for j, name in enumerate(names):
        p = prices[name]
        true_out = (test.cost[:20, cols[j]] * 1e6 - np.array([count_tokens(t) for t in test.texts[:20]]) * p.input_per_mtok)
        true = (np.array([count_tokens(s) for s in sent]) * p.input_per_mtok + true_out) / 1e6
        err_priced = np.abs(priced[:, j] - true).mean() / true.mean()
        err_base = np.abs(base[:, j] - true).mean() / true.mean()
        assert err_priced < 0.35, (name, err_priced)
        if p.input_per_mtok > 0:
            assert err_base > 0.5 and err_priced < err_base
    # on the validation questions themselves the pricer agrees with the profile
    xv = mmlu_embeddings["val"]
    same = pricer.expected_costs(fitted_router, xv, [pricer.tokens(t) for t in mmlu_small["val"].texts], names, fitted_router.predict(embeddings=xv)[1])
    np.testing.assert_allclose(same.mean(axis=0), fitted_router.predict(embeddings=xv)[1].mean(axis=0), rtol=0.05)


def test_realised_cost_uses_reported_usage_then_text(fitted_router):
    pricer = CallPricer({"a": TokenPrice(input_per_mtok=1.0, output_per_mtok=2.0), "b": 0.003})
    assert pricer.realised_cost("a", {"input_tokens": 1000, "output_tokens": 500}) == pytest.approx(0.002)
    assert pricer.realised_cost("a", None, prompt="x" * 4000, response="y" * 400) == pytest.approx(0.0012)
    assert pricer.realised_cost("b", None) == 0.003
    assert pricer.realised_cost("c", None) is None
    with pytest.raises(InvalidInputError, match="price of 'bad'"):
        CallPricer({"bad": -1})


def test_pool_decision_prices_the_prompt_sent_and_settles_the_realised_cost(router_copy, mmlu_small):
    test = mmlu_small["test"]
    prices = _prices(test)
    pool = CandidatePool(router_copy)
    for name in router_copy.models_:
        pool.add(name, object(), None, cost=prices[name])
    q = test.texts[0]
    plain = pool.decide(q, {"cost_weight": 50.0})
    long = pool.decide(q, {"cost_weight": 50.0}, sent="Background. " * 3300 + q)
    assert long.predicted_error.tolist() == plain.predicted_error.tolist()
    assert (long.expected_cost > plain.expected_cost).all()
    name = long.model
    assert long.expected_cost[long.candidates.index(name)] <= max(long.expected_cost)
    out = pool.settle(long, [{"model": name, "ok": True}], usage={"input_tokens": 10_000, "output_tokens": 300})
    assert out["cost_source"] == "usage"
    assert out["realised_cost"] == pytest.approx(prices[name].cost(10_000, 300))


# -- pacing ------------------------------------------------------------------------------------
def test_pacer_moves_the_cost_weight_against_the_overspend():
    p = BudgetPacer(0.001, cost_weight=10.0, rate=0.1, min_cost_weight=1e-3, max_cost_weight=1e3)
    p.update(0.003)
    assert p.cost_weight == pytest.approx(10.0 * np.exp(0.2))
    for _ in range(200):
        p.update(0.0)
    assert p.cost_weight == pytest.approx(1e-3)  # clipped at the floor
    assert p.calls_ == 201 and p.mean_spend == pytest.approx(0.003 / 201)
    with pytest.raises(InvalidInputError, match="budget"):
        BudgetPacer(0.0, cost_weight=1.0)
    with pytest.raises(InvalidInputError, match="realised cost"):
        p.update(float("nan"))


def test_paced_budget_holds_under_a_traffic_shift_where_the_static_weight_overspends(fitted_router, mmlu_small, mmlu_embeddings):
    """Calibrate on the validation prompts, then replay only the test categories the router spends
    most on (a shifted stream, like history-only traffic): the static weight overspends, the pacer
    keeps the realised spend within 10% of the budget."""
    router, test = fitted_router, mmlu_small["test"]
    names = router.models_
    cost_true = test.cost[:, test.model_index(names)]
    xv, xt = mmlu_embeddings["val"], mmlu_embeddings["test"]
    gamma, cost, _ = router.predict(embeddings=xv)
    hi = _lam_max(gamma, cost)
    c_lo = cost[np.arange(len(cost)), router.choose(xv, hi)].mean()
    c_hi = cost[np.arange(len(cost)), router.choose(xv, 0.0)].mean()
    budget = float(np.sqrt(c_lo * c_hi))
    lam0 = calibrate_cost_weight(router, embeddings=xv, budget=budget)
    static_pick = router.choose(xt, lam0)
    static_cost = cost_true[np.arange(len(xt)), static_pick]
    groups = np.asarray(test.groups)
    by_group = {g: static_cost[groups == g].mean() for g in set(groups)}
    heavy = sorted(by_group, key=by_group.get, reverse=True)[:3]
    rows = np.flatnonzero(np.isin(groups, heavy))
    stream = np.concatenate([np.random.default_rng(s).permutation(rows) for s in range(40)])[:1500]
    static_ratio = static_cost[stream].mean() / budget
    pacer = BudgetPacer(budget, cost_weight=lam0, min_cost_weight=hi * 1e-12, max_cost_weight=hi)
    spent = []
    for i in stream:
        j = int(router.choose(xt[i : i + 1], pacer.cost_weight)[0])
        spent.append(cost_true[i, j])
        pacer.update(float(cost_true[i, j]))
    paced_ratio = float(np.mean(spent)) / budget
    assert static_ratio > 1.3, static_ratio
    assert abs(paced_ratio - 1.0) < 0.1, paced_ratio


# -- quality floors ----------------------------------------------------------------------------
def test_honest_quality_floor_is_more_cautious_and_holds_on_held_out_prompts(fitted_router, mmlu_small, mmlu_embeddings):
    router, test = fitted_router, mmlu_small["test"]
    corr = test.correctness[:, test.model_index(router.models_)]
    xt = mmlu_embeddings["test"]
    val = mmlu_small["val"]
    best_val = float(np.nanmean(val.correctness[:, val.model_index(router.models_)], axis=0).max())
    floor = best_val - 0.10  # set from validation data only
    lam_pred = calibrate_cost_weight(router, embeddings=mmlu_embeddings["val"], quality_floor=floor)
    lam_honest = calibrate_cost_weight(router, quality_floor=floor, honest=True)
    assert lam_honest <= lam_pred
    realised = {lam: float(corr[np.arange(len(xt)), router.choose(xt, lam)].mean()) for lam in (lam_pred, lam_honest)}
    assert realised[lam_honest] >= floor  # the floor holds on held-out prompts
    with pytest.raises(InvalidInputError, match="out of fold"):
        calibrate_cost_weight(router, quality_floor=0.999, honest=True)


# -- sticky sessions ---------------------------------------------------------------------------
def test_sticky_session_stays_on_the_previous_model_unless_the_gain_beats_the_switch_cost(router_copy, mmlu_small):
    pool = CandidatePool(router_copy)
    for name in router_copy.models_:
        pool.add(name, object(), None, cost=0.001)
    texts = mmlu_small["test"].texts
    free = [pool.decide(t, {"cost_weight": 0.0}) for t in texts[:40]]
    # two consecutive questions the router sends to different models
    k = next(i for i in range(39) if free[i].model != free[i + 1].model)
    first, second = free[k], free[k + 1]
    opts = {"cost_weight": 0.0, "session": "thread-1"}
    d1 = pool.decide(texts[k], {**opts, "switch_cost": 1.0})
    pool.settle(d1, [{"model": d1.model, "ok": True}], {**opts, "switch_cost": 1.0})
    stay = pool.decide(texts[k + 1], {**opts, "switch_cost": 1.0})
    assert stay.model == first.model and stay.ranked[0] == first.model
    assert pool.decide(texts[k + 1], {**opts, "switch_cost": 0.0}).model == second.model  # any gain switches
    assert pool.decide(texts[k + 1], {"cost_weight": 0.0, "session": "other", "switch_cost": 1.0}).model == second.model
    with pytest.raises(InvalidInputError, match="switch_cost"):
        pool.decide(texts[0], {"switch_cost": -1})


# -- batches decide like the same calls one by one ----------------------------------------------
def _priced_pool(router, prices) -> CandidatePool:
    pool = CandidatePool(router)
    for name in router.models_:
        pool.add(name, object(), None, cost=prices[name])
    return pool


def _mid_budget(router) -> float:
    """A budget between the cheapest and the quality-only routing on the validation prompts."""
    gamma, cost, _ = router.predict(router.validation_set_.prompts)
    xv = router._embed(router.validation_set_.prompts)
    rows = np.arange(len(cost))
    c_lo = cost[rows, router.choose(xv, _lam_max(gamma, cost))].mean()
    c_hi = cost[rows, router.choose(xv, 0.0)].mean()
    return float(np.sqrt(c_lo * c_hi))


def test_decide_batch_equals_one_by_one_with_sticky_sessions_and_a_paced_budget(router_copy, mmlu_small):
    """Two interleaved threads under one paced budget: the batch chooses what the same calls made one
    by one (each settled before the next, at its expected cost) choose, and leaves the pacer there
    once its calls are settled."""
    test = mmlu_small["test"]
    prices = _prices(test)
    budget = _mid_budget(router_copy)
    texts = test.texts[:40]
    opts = [{"budget": budget, "session": f"thread-{i % 2}", "switch_cost": 0.05} for i in range(len(texts))]
    one = _priced_pool(router_copy, prices)
    seq = []
    for t, o in zip(texts, opts):
        d = one.decide(t, o)
        one.settle(d, [{"model": d.model, "ok": True}], o)  # no usage: the expected cost is charged
        seq.append(d)
    batch_pool = _priced_pool(router_copy, prices)
    batch = batch_pool.decide_batch(texts, opts)
    assert [d.model for d in batch] == [d.model for d in seq]
    np.testing.assert_allclose([d.cost_weight for d in batch], [d.cost_weight for d in seq], rtol=1e-9)
    assert len({d.cost_weight for d in batch}) > 1  # the weight moved inside the batch
    for d, o in zip(batch, opts):
        batch_pool.settle(d, [{"model": d.model, "ok": True}], o)
    p_one, p_batch = one.pacer(budget), batch_pool.pacer(budget)
    assert p_batch.calls_ == p_one.calls_ == len(texts)
    assert p_batch.cost_weight == pytest.approx(p_one.cost_weight, rel=1e-9)
    # and the next batch starts where the pacer stands now
    nxt = batch_pool.decide_batch(test.texts[40:42], {"budget": budget})
    assert nxt[0].cost_weight == pytest.approx(p_batch.cost_weight, rel=1e-12)


def test_decide_batch_keeps_a_session_on_its_previous_model(router_copy, mmlu_small):
    pool = CandidatePool(router_copy)
    for name in router_copy.models_:
        pool.add(name, object(), None, cost=0.001)
    texts = mmlu_small["test"].texts[:40]
    free = [d.model for d in pool.decide_batch(texts, {"cost_weight": 0.0})]
    assert len(set(free)) > 1
    sticky = {"cost_weight": 0.0, "session": "t-1", "switch_cost": 1.0}
    assert {d.model for d in pool.decide_batch(texts, sticky)} == {free[0]}  # the first choice holds
    # a session that already answered elsewhere stays there
    other = next(n for n in router_copy.models_ if n != free[0])
    d = pool.decide(texts[0], {**sticky, "session": "t-2"})
    pool.settle(replace_model(d, other), [{"model": other, "ok": True}], {**sticky, "session": "t-2"})
    assert {d.model for d in pool.decide_batch(texts[:5], {**sticky, "session": "t-2"})} == {other}
    with pytest.raises(InvalidInputError, match="one per text"):
        pool.decide_batch(texts[:3], [sticky, sticky])


def replace_model(decision, model):
    from dataclasses import replace

    return replace(decision, model=model)


# -- top share paced online ---------------------------------------------------------------------
def test_paced_top_share_converges_to_the_cap_where_the_calibrated_weight_misses_it(router_copy, mmlu_small):
    """The share of calls answered by the most expensive model is fed back like a budget: on held-out
    traffic restricted to the categories where the calibrated weight sends the top model the most,
    the static weight overshoots the cap and the paced one ends within a few points of it."""
    test = mmlu_small["test"]
    pool = _priced_pool(router_copy, _prices(test))
    cap = 0.2
    pacer = pool.top_share_pacer(cap)
    top = pacer.top_model
    lam0 = pacer.cost_weight
    groups = np.asarray(test.groups)
    static = np.array([d.model == top for d in pool.decide_batch(test.texts, {"max_top_share": cap, "top_share_pacing": False})])
    lam_static = calibrate_cost_weight(router_copy, router_copy.validation_set_.prompts, max_top_share=cap)
    assert {d.cost_weight for d in pool.decide_batch(test.texts[:3], {"max_top_share": cap, "top_share_pacing": False})} == {lam_static}
    assert lam0 == pytest.approx(max(lam_static, pacer.min_cost_weight))
    by_group = {g: static[groups == g].mean() for g in set(groups)}
    heavy = sorted(by_group, key=lambda g: (-by_group[g], g))[:3]
    rows = np.flatnonzero(np.isin(groups, heavy))
    stream = np.concatenate([np.random.default_rng(s).permutation(rows) for s in range(10)])[:600]
    static_share = static[stream].mean()
    answered = []
    opts = {"max_top_share": cap}
    for i in stream:
        d = pool.decide(test.texts[i], opts)
        out = pool.settle(d, [{"model": d.model, "ok": True}], opts)
        answered.append(d.model == top)
    assert out["top_share"]["top_model"] == top and out["top_share"]["calls"] == len(stream)
    paced_share = float(np.mean(answered))
    assert static_share > cap + 0.1, static_share
    assert abs(paced_share - cap) < 0.05, paced_share
    assert abs(float(np.mean(answered[len(answered) // 2 :])) - cap) < 0.05
    # a cap of 0 is not paced (no pacer can target a zero share): the calibrated weight stands
    zero = pool.decide_batch(test.texts[:3], {"max_top_share": 0.0})
    assert {d.cost_weight for d in zero} == {calibrate_cost_weight(router_copy, router_copy.validation_set_.prompts, max_top_share=0.0)}
    assert "top_share" not in pool.settle(zero[0], [{"model": zero[0].model, "ok": True}], {"max_top_share": 0.0})
