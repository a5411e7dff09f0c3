"""ZeroRouter and KNNRouter: the BaseRouter contract and their predicted errors."""

from __future__ import annotations

import numpy as np
import pytest
from unirouter.routers.baselines import KNNRouter, ZeroRouter
from unirouter.exceptions import InvalidInputError, NotFittedError

RNG = np.random.default_rng(0)


def _unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


XV = _unit(40, seed=1)
XT = _unit(25, seed=2)
SCORES = {
    "cheap": (np.random.default_rng(3).uniform(size=40) < 0.4).astype(float),
    "mid": (np.random.default_rng(4).uniform(size=40) < 0.6).astype(float),
    "big": (np.random.default_rng(5).uniform(size=40) < 0.8).astype(float),
}
COSTS = {"cheap": 0.1, "mid": 0.5, "big": 2.0}


def _fitted(router):
    router.fit(validation_embeddings=XV)
    for name, s in SCORES.items():
        router.add_model(name, correctness=s, cost=COSTS[name])
    return router


@pytest.mark.parametrize("make", [ZeroRouter, lambda: KNNRouter(n_neighbors=5)])
def test_contract_fit_returns_self_and_not_fitted_errors(make):
    router = make()
    with pytest.raises(NotFittedError):
        router.add_model("m", correctness=SCORES["mid"], cost=1.0)
    with pytest.raises(NotFittedError):
        router.predict(embeddings=XT)
    assert router.fit(validation_embeddings=XV) is router
    params = router.get_params()
    assert router.set_params(**params) is router
    assert type(router).__name__ in repr(router)


@pytest.mark.parametrize("make", [ZeroRouter, lambda: KNNRouter(n_neighbors=5)])
def test_decisions_span_best_to_cheapest(make):
    router = _fitted(make())
    gamma, cost, names = router.predict(embeddings=XT)
    assert gamma.shape == cost.shape == (25, 3) and names == ["cheap", "mid", "big"]
    assert np.all(router.choose(XT, 1e9) == 0)  # everything to the cheapest
    np.testing.assert_array_equal(router.choose(XT, 0.0), np.argmin(gamma + 1e-12 * cost, axis=1))
    d = router.route(embedding=XT[0], cost_weight=0.0)
    assert d.model in names and d.cluster_weights is None and d.ranked[0] == d.model


def test_zero_router_gamma_is_the_global_validation_error():
    router = _fitted(ZeroRouter())
    gamma, cost, _ = router.predict(embeddings=XT)
    for j, name in enumerate(["cheap", "mid", "big"]):
        np.testing.assert_allclose(gamma[:, j], 1 - SCORES[name].mean())
        np.testing.assert_allclose(cost[:, j], COSTS[name])
    # never needs an embedding of the prompt
    assert router.route("any prompt at all", cost_weight=0.0).model == ["cheap", "mid", "big"][int(np.argmin(gamma[0]))]


def test_knn_gamma_is_the_mean_error_of_the_nearest_validation_prompts():
    k = 7
    router = _fitted(KNNRouter(n_neighbors=k))
    gamma, _, _ = router.predict(embeddings=XT)
    sims = XT @ XV.T
    for i in range(XT.shape[0]):
        nn = np.argsort(-sims[i])[:k]
        for j, name in enumerate(["cheap", "mid", "big"]):
            assert gamma[i, j] == pytest.approx(1 - SCORES[name][nn].mean())
    assert np.array_equal(np.sort(router.neighbors(XT[:1])[0]), np.sort(np.argsort(-sims[0])[:k]))


def test_knn_missing_labels_average_only_observed_neighbours():
    s = SCORES["mid"].copy()
    s[::2] = np.nan
    router = KNNRouter(n_neighbors=6).fit(validation_embeddings=XV)
    router.add_model("m", correctness=s, cost=1.0)
    gamma, _, _ = router.predict(embeddings=XT)
    sims = XT @ XV.T
    for i in range(XT.shape[0]):
        nn = np.argsort(-sims[i])[:6]
        obs = nn[~np.isnan(s[nn])]
        want = 1 - s[obs].mean() if obs.size else 1 - np.nanmean(s)
        assert gamma[i, 0] == pytest.approx(want)
    # no neighbour labelled at all: the model's global validation error
    only = np.full(40, np.nan)
    only[0] = 1.0
    router.add_model("sparse", correctness=only, cost=1.0)
    far = -XV[0:1]  # the point farthest from validation prompt 0
    g, _, _ = router.predict(embeddings=far, models=["sparse"])
    assert g[0, 0] == pytest.approx(0.0)


def test_knn_k_larger_than_validation_set_is_capped():
    router = _fitted(KNNRouter(n_neighbors=1000))
    gamma, _, _ = router.predict(embeddings=XT)
    np.testing.assert_allclose(gamma[:, 2], 1 - SCORES["big"].mean())


def test_knn_per_prompt_costs_are_averaged_over_neighbours():
    costs = np.linspace(1.0, 2.0, 40)
    router = KNNRouter(n_neighbors=4).fit(validation_embeddings=XV)
    router.add_model("m", correctness=SCORES["mid"], cost=costs)
    _, cost, _ = router.predict(embeddings=XT)
    nn = np.argsort(-(XT @ XV.T), axis=1)[:, :4]
    np.testing.assert_allclose(cost[:, 0], costs[nn].mean(axis=1))


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_knn_bad_n_neighbors(k):
    with pytest.raises(InvalidInputError, match="n_neighbors"):
        KNNRouter(n_neighbors=k).fit(validation_embeddings=XV)


def test_zero_router_needs_a_validation_set():
    with pytest.raises(InvalidInputError, match="validation"):
        ZeroRouter().fit()


def test_zero_router_refuses_a_single_string_as_validation_set():
    # It would otherwise become one validation prompt per character.
    with pytest.raises(InvalidInputError, match="not a single str"):
        ZeroRouter().fit(validation="What is 2 + 2?")


@pytest.mark.parametrize("make", [ZeroRouter, lambda: KNNRouter(n_neighbors=5)])
def test_save_load_keeps_decisions(make, tmp_path):
    pytest.importorskip("unirouter.persistence")
    router = _fitted(make())
    router.save(tmp_path / "r")
    loaded = type(router).load(tmp_path / "r")
    for lam in (0.0, 0.1, 1.0, 100.0):
        np.testing.assert_array_equal(router.choose(XT, lam), loaded.choose(XT, lam))
    np.testing.assert_allclose(router.predict(embeddings=XT)[0], loaded.predict(embeddings=XT)[0])
