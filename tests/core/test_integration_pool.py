"""unirouter.integration: RoutingOptions and CandidatePool (decisions, fallbacks, save/load)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import numpy as np
import pytest
from unirouter import (
    AllModelsFailedError,
    InvalidInputError,
    NotFittedError,
    PersistenceError,
    UniRouter,
    UnknownModelError,
    calibrate_cost_weight,
)
from unirouter.integration import CandidatePool, RoutingOptions

CANDIDATES = (
    "gpt-4o-2024-05-13",
    "gemini-1.5-flash-002",
    "Llama-2-7b-hf",
    "Meta-Llama-3_1-70B-Instruct",
)


class FakeLLM:
    """A framework model stand-in: records prompts, can be told to fail."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name, self.fail, self.calls = name, fail, []

    def __call__(self, prompt: str) -> str:
        self.calls.append(prompt)
        if self.fail:
            raise ConnectionError(f"{self.name} is down")
        return f"{self.name}: answer"

    async def acall(self, prompt: str) -> str:
        await asyncio.sleep(0)
        return self(prompt)


@pytest.fixture()
def pool(router_copy) -> CandidatePool:
    """A pool of four candidates whose profiles already exist (added from labels): no profiling."""
    p = CandidatePool(router_copy)
    for name in CANDIDATES:
        p.add(
            name, FakeLLM(name), None, cost=router_copy.get_profile(name).cost_per_query
        )
    return p


@pytest.fixture()
def text(mmlu_small) -> str:
    return mmlu_small["test"].texts[0]


# -- RoutingOptions -------------------------------------------------------------------------------
def test_routing_options_parse_and_merge():
    assert RoutingOptions.parse(None) == RoutingOptions()
    opts = RoutingOptions.parse(
        {"cost_weight": 2, "allowed_models": "a", "max_fallbacks": 1}
    )
    assert (
        opts.cost_weight == 2.0
        and opts.allowed_models == ("a",)
        and opts.max_fallbacks == 1
    )
    assert RoutingOptions.parse(opts) is opts
    merged = opts.merged({"cost_weight": 5.0, "excluded_models": ["b"]})
    assert (
        merged.cost_weight == 5.0
        and merged.allowed_models == ("a",)
        and merged.excluded_models == ("b",)
    )
    assert merged.max_fallbacks == 1  # unset per-call keys keep the defaults
    assert opts.merged(None) is opts


@pytest.mark.parametrize(
    "value, match",
    [
        ({"colour": "red"}, "unknown routing option 'colour'"),
        ({"cost_weight": -1}, "routing option 'cost_weight' is invalid.*Got -1"),
        ({"cost_weight": float("inf")}, "routing option 'cost_weight' is invalid"),
        ({"budget": 0}, "routing option 'budget' is invalid"),
        ({"max_fallbacks": -2}, "routing option 'max_fallbacks' is invalid"),
        ("cheap please", "must be a mapping"),
    ],
)
def test_bad_routing_options_are_refused(value, match):
    with pytest.raises(InvalidInputError, match=match):
        RoutingOptions.parse(value)
    with pytest.raises(InvalidInputError, match=match):
        RoutingOptions().merged(value)


# -- decisions ------------------------------------------------------------------------------------
def test_pool_needs_a_fitted_router():
    with pytest.raises(NotFittedError):
        CandidatePool(UniRouter())


def test_decide_considers_only_the_candidates(pool, text):
    assert len(pool.router.models_) > len(CANDIDATES)
    d = pool.decide(text)
    assert d.candidates == CANDIDATES and d.model in CANDIDATES
    assert d.model == pool.router.route(text, models=list(CANDIDATES)).model


def test_cost_weight_option_and_defaults(router_copy, text):
    p = CandidatePool(router_copy, defaults={"cost_weight": 1e9})
    for name in CANDIDATES:
        p.add(name, FakeLLM(name), None, cost=0.0)
    cheap = p.decide(text)
    assert (
        cheap.cost_weight == 1e9
        and cheap.chosen_expected_cost == cheap.expected_cost.min()
    )
    best = p.decide(text, {"cost_weight": 0.0})  # the per-call value wins
    assert (
        best.cost_weight == 0.0
        and best.chosen_predicted_error == best.predicted_error.min()
    )


def test_force_allowed_and_excluded(pool, text):
    forced = pool.decide(text, {"force_model": "Llama-2-7b-hf"})
    assert forced.model == "Llama-2-7b-hf" and forced.candidates == ("Llama-2-7b-hf",)
    assert pool.attempt_order(
        forced, {"force_model": "Llama-2-7b-hf", "max_fallbacks": 3}
    ) == ["Llama-2-7b-hf"]
    allowed = pool.decide(
        text, {"allowed_models": ["Llama-2-7b-hf", "gpt-4o-2024-05-13"]}
    )
    assert set(allowed.candidates) == {"Llama-2-7b-hf", "gpt-4o-2024-05-13"}
    excluded = pool.decide(text, {"excluded_models": "gpt-4o-2024-05-13"})
    assert (
        "gpt-4o-2024-05-13" not in excluded.candidates and len(excluded.candidates) == 3
    )
    with pytest.raises(UnknownModelError, match="not a candidate") as info:
        pool.decide(text, {"force_model": "ghost"})
    assert info.value.model == "ghost"
    # Excluding a model that is not (or no longer) a candidate is no error (issue 19.2: churn).
    assert pool.decide(text, {"excluded_models": ["ghost"]}).candidates == pool.decide(text).candidates
    with pytest.raises(InvalidInputError, match="leave no model"):
        pool.decide(
            text,
            {"allowed_models": ["Llama-2-7b-hf"], "excluded_models": ["Llama-2-7b-hf"]},
        )
    with pytest.raises(InvalidInputError, match="routing text"):
        pool.decide("   ")


def test_budget_option_calibrates_on_validation_prompts(pool, text, mmlu_embeddings):
    gamma, cost, _ = pool.router.predict(
        embeddings=mmlu_embeddings["val"], models=list(CANDIDATES)
    )
    budget = 0.4 * cost[np.arange(len(cost)), gamma.argmin(axis=1)].mean()
    d = pool.decide(
        text, {"budget": budget, "cost_weight": 0.0}
    )  # budget wins over cost_weight
    lam = calibrate_cost_weight(
        pool.router,
        pool.router.validation_set_.prompts,
        budget=budget,
        models=list(CANDIDATES),
    )
    assert d.cost_weight == lam > 0
    assert pool._budget_lams == {
        ("budget", budget, CANDIDATES): lam
    }  # cached per budget and candidate set
    chosen = [
        dd.chosen_expected_cost
        for dd in pool.router.route_batch(
            embeddings=mmlu_embeddings["val"], cost_weight=lam, models=list(CANDIDATES)
        )
    ]
    assert np.mean(chosen) <= budget


def test_decide_batch_and_async_match_decide(pool, mmlu_small):
    texts = mmlu_small["test"].texts[:5]
    one = [pool.decide(t, {"cost_weight": 10.0}).model for t in texts]
    assert [d.model for d in pool.decide_batch(texts, {"cost_weight": 10.0})] == one
    assert asyncio.run(pool.adecide(texts[0], {"cost_weight": 10.0})).model == one[0]
    assert [
        d.model for d in asyncio.run(pool.adecide_batch(texts, {"cost_weight": 10.0}))
    ] == one


# -- fallbacks ------------------------------------------------------------------------------------
def test_run_with_fallbacks_walks_the_ranking(pool, text):
    d = pool.decide(text)
    models = {n: pool.get(n).model for n in CANDIDATES}
    models[d.ranked[0]].fail = True
    result, attempts = pool.run_with_fallbacks(d, None, lambda name: models[name](text))
    assert result == f"{d.ranked[1]}: answer"
    assert attempts[0] == {
        "model": d.ranked[0],
        "ok": False,
        "error": f"ConnectionError: {d.ranked[0]} is down",
    }
    assert attempts[1] == {"model": d.ranked[1], "ok": True}
    assert attempts.settled["realised_cost"] >= 0  # the answering model's cost (issue 17)
    assert models[d.ranked[2]].calls == []


def test_run_with_fallbacks_raises_every_error_when_all_fail(pool, text):
    d = pool.decide(text)
    for n in CANDIDATES:
        pool.get(n).model.fail = True
    with pytest.raises(AllModelsFailedError) as info:  # max_fallbacks=2: three attempts
        pool.run_with_fallbacks(d, None, lambda name: pool.get(name).model(text))
    assert [str(e) for e in info.value.exceptions] == [f"{n} is down" for n in d.ranked[:3]]
    assert info.value.models == list(d.ranked[:3])
    assert pool.get(d.ranked[3]).model.calls == []
    with pytest.raises(AllModelsFailedError, match=f"{d.ranked[0]} is down") as info:
        pool.run_with_fallbacks(
            d, {"max_fallbacks": 0}, lambda name: pool.get(name).model(text)
        )
    assert isinstance(info.value.__cause__, ConnectionError)


def test_arun_with_fallbacks_walks_the_ranking(pool, text):
    d = pool.decide(text)
    pool.get(d.ranked[0]).model.fail = True
    result, attempts = asyncio.run(
        pool.arun_with_fallbacks(d, None, lambda name: pool.get(name).model.acall(text))
    )
    assert result == f"{d.ranked[1]}: answer"
    assert [a["ok"] for a in attempts] == [False, True]
    for n in CANDIDATES:
        pool.get(n).model.fail = True
    with pytest.raises(AllModelsFailedError) as info:
        asyncio.run(
            pool.arun_with_fallbacks(
                d, None, lambda name: pool.get(name).model.acall(text)
            )
        )
    assert all(isinstance(e, ConnectionError) for e in info.value.exceptions)


# -- candidates -----------------------------------------------------------------------------------
def test_add_without_profile_or_call_is_refused(router_copy):
    router_copy.remove_model("gemma-7b")
    p = CandidatePool(router_copy)
    with pytest.raises(InvalidInputError, match="needs a call"):
        p.add("gemma-7b", FakeLLM("gemma-7b"), None, cost=0.001)
    assert p.names == []


def test_remove_forgets_candidate_and_profile(pool):
    pool.remove("Llama-2-7b-hf")
    assert (
        "Llama-2-7b-hf" not in pool.names and "Llama-2-7b-hf" not in pool.router.models_
    )
    with pytest.raises(UnknownModelError):
        pool.remove("Llama-2-7b-hf")


def test_empty_pool_cannot_route(router_copy, text):
    with pytest.raises(UnknownModelError, match="no models to route to"):
        CandidatePool(router_copy).decide(text)


# -- save / load ----------------------------------------------------------------------------------
def test_save_load_reattaches_models_without_profiling(
    pool, embedder, tmp_path, mmlu_small
):
    pool.defaults = RoutingOptions.parse(
        {"cost_weight": 3.0, "excluded_models": ["Llama-2-7b-hf"]}
    )
    pool.save(tmp_path / "pool")
    table = json.loads((tmp_path / "pool" / "candidates.json").read_text())
    assert [c["name"] for c in table["candidates"]] == list(CANDIDATES)
    fresh = {n: FakeLLM(n) for n in CANDIDATES}
    back = CandidatePool.load(
        tmp_path / "pool", models=fresh, embedder=embedder
    )  # calls=None: nothing to profile
    assert (
        back.names == list(CANDIDATES)
        and back.get("gpt-4o-2024-05-13").model is fresh["gpt-4o-2024-05-13"]
    )
    assert back.defaults == pool.defaults
    for t in mmlu_small["test"].texts[:5]:
        a, b = pool.decide(t), back.decide(t)
        assert (
            a.model == b.model
            and a.ranked == b.ranked
            and "Llama-2-7b-hf" not in b.candidates
        )
    with pytest.raises(InvalidInputError, match="not given in models="):
        CandidatePool.load(
            tmp_path / "pool", models={CANDIDATES[0]: FakeLLM("x")}, embedder=embedder
        )
    (tmp_path / "pool" / "candidates.json").unlink()
    with pytest.raises(PersistenceError, match="candidates.json is missing"):
        CandidatePool.load(tmp_path / "pool", models=fresh, embedder=embedder)


@pytest.mark.skipif(
    importlib.util.find_spec("unirouter.profiling.profiler") is None,
    reason="unirouter.profiling.profiler not present yet",
)
def test_add_profiles_a_new_model_through_sync_and_async_calls(router_copy, mmlu_small):
    from replay import RecordedModel
    from unirouter.profiling.scorers import MultipleChoiceScorer

    val = mmlu_small["val"]
    names = ["gemma-7b", "Yi-6B"]
    for n in names:
        router_copy.remove_model(n)
    p = CandidatePool(
        router_copy, scorer=MultipleChoiceScorer(), profile_kwargs={"progress": False}
    )
    sync_model = RecordedModel.from_dataset(val, names[0])
    prof = p.add(names[0], FakeLLM(names[0]), sync_model, cost=0.001)
    np.testing.assert_array_equal(
        prof.scores, val.correctness[:, val.model_names.index(names[0])]
    )
    assert len(sync_model.calls) == len(val)

    recorded = RecordedModel.from_dataset(val, names[1])

    async def acall(prompt: str) -> str:
        await asyncio.sleep(0)
        return recorded(prompt)

    prof2 = asyncio.run(p.aadd(names[1], FakeLLM(names[1]), acall, cost=0.002))
    np.testing.assert_array_equal(
        prof2.scores, val.correctness[:, val.model_names.index(names[1])]
    )
    assert p.names == names and set(names) <= set(router_copy.models_)
