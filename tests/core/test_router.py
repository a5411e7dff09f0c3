"""unirouter.routers.uniroute / _base_router: fitting, profiles in the pool, routing decisions, thread safety."""

from __future__ import annotations

import json
import threading
import time
import warnings

import numpy as np
import pytest
from unirouter import (
    CallableEmbedder,
    DuplicateModelError,
    InvalidInputError,
    NotFittedError,
    ProfileMismatchError,
    RoutingDecision,
    UniRouter,
    UniRouterWarning,
    UnknownModelError,
    ValidationSet,
)

SEED = 0
D = 8


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def blobs(counts, *, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """Unit vectors scattered around the first len(counts) axes of R^D (count per axis)."""
    rng = np.random.default_rng(seed)
    eye = np.eye(D)
    return unit(
        np.concatenate(
            [eye[k] + noise * rng.standard_normal((n, D)) for k, n in enumerate(counts)]
        )
    )


def tiny_router(
    val_counts=(3, 1, 0), *, prior_strength: float = 2.0, **kw
) -> UniRouter:
    """K=3 router on three well-separated synthetic clusters; validation prompts per cluster given."""
    x_train = blobs((30, 30, 30), seed=1)
    x_val = blobs(val_counts, seed=2)
    names = [f"val prompt {i}" for i in range(len(x_val))]
    return UniRouter(3, prior_strength=prior_strength, random_state=SEED, **kw).fit(
        embeddings=x_train, validation=names, validation_embeddings=x_val
    )


def cluster_of_axis(router: UniRouter, k: int) -> int:
    return int(router.cluster_of(embeddings=np.eye(D)[k][None])[0])


@pytest.fixture(scope="module")
def learned_router(mmlu_small, mmlu_embeddings, embedder) -> UniRouter:
    r = UniRouter(
        8,
        method="learned",
        random_state=SEED,
        embedder=embedder,
        max_epochs=40,
        patience=2,
        learning_rate=0.1,
    )
    return r.fit_dataset(
        mmlu_small["train"],
        mmlu_small["val"],
        embeddings=mmlu_embeddings["train"],
        validation_embeddings=mmlu_embeddings["val"],
    )


# -- fitting --------------------------------------------------------------------------------------
def test_fit_returns_self_and_sets_fitted_attributes():
    r = UniRouter(3, random_state=SEED)
    x_val = blobs((2, 2, 2), seed=2)
    out = r.fit(
        embeddings=blobs((10, 10, 10)),
        validation=[f"v{i}" for i in range(6)],
        validation_embeddings=x_val,
    )
    assert out is r
    assert r.centroids_.shape == (3, D) and r.centroids_.dtype == np.float32
    assert r.validation_labels_.shape == (6,)
    assert r.theta_ is None and r.models_ == []
    assert isinstance(r.validation_set_, ValidationSet)


def test_kmeans_assignment_is_hard_nearest_centroid(fitted_router, mmlu_embeddings):
    x = mmlu_embeddings["test"]
    d2 = ((x[:, None, :] - fitted_router.centroids_[None]) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    decisions = fitted_router.route_batch(embeddings=x)
    for i, d in enumerate(decisions):
        w = d.cluster_weights
        assert w.sum() == 1.0 and np.count_nonzero(w) == 1
        assert d.cluster == nearest[i]
    xv = mmlu_embeddings["val"]
    d2v = ((xv[:, None, :] - fitted_router.centroids_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(fitted_router.validation_labels_, d2v.argmin(axis=1))


def test_shrinkage_formula_by_hand_and_empty_cluster_warns():
    with pytest.warns(
        UniRouterWarning, match="1 of 3 clusters hold no validation prompt"
    ):
        r = tiny_router((3, 1, 0), prior_strength=2.0)
    # validation prompts 0-2 sit in cluster A, prompt 3 in cluster B, none in cluster C
    p = r.add_model("m", correctness=[1, 0, 1, 0], cost=0.5)
    g = 2 / 4  # global error
    a, b, c = (cluster_of_axis(r, k) for k in range(3))
    assert len({a, b, c}) == 3
    assert p.cluster_error[a] == pytest.approx((1 + 2 * g) / (3 + 2))
    assert p.cluster_error[b] == pytest.approx((1 + 2 * g) / (1 + 2))
    assert p.cluster_error[c] == pytest.approx(g)  # empty: (0 + a*g) / (0 + a)
    assert (
        p.cluster_count[a] == 3 and p.cluster_count[b] == 1 and p.cluster_count[c] == 0
    )
    d = r.route(embedding=np.eye(D)[0])
    assert d.predicted_error[0] == pytest.approx(0.4)


def test_no_warning_when_every_cluster_has_validation_prompts():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UniRouterWarning)
        tiny_router((2, 2, 2))


def test_failed_refit_leaves_the_router_unchanged():
    rng = np.random.default_rng(0)
    x_train, x_val = blobs((30, 30, 30), seed=1), blobs((2, 2, 2), seed=2)
    ytr, yval = (
        rng.integers(0, 2, (90, 2)).astype(float),
        rng.integers(0, 2, (6, 2)).astype(float),
    )
    vs = [f"v{i}" for i in range(6)]
    r = UniRouter(3, method="learned", random_state=SEED, max_epochs=3).fit(
        embeddings=x_train,
        validation=vs,
        validation_embeddings=x_val,
        train_correctness=ytr,
        validation_correctness=yval,
    )
    r.add_model("m", correctness=yval[:, 0], cost=0.1)
    state = (r.centroids_, r.theta_, r.bias_, r.validation_labels_, r._pool)
    before = r.route(embedding=x_val[0])
    with pytest.raises(
        InvalidInputError, match=r"train_correctness must hold scores in \[0, 1\]"
    ):
        r.fit(
            embeddings=x_train,
            validation=vs,
            validation_embeddings=x_val,
            train_correctness=ytr * 2,
            validation_correctness=yval,
        )
    assert all(
        a is b
        for a, b in zip(
            (r.centroids_, r.theta_, r.bias_, r.validation_labels_, r._pool), state
        )
    )
    after = r.route(embedding=x_val[0])
    assert after.model == before.model and np.array_equal(
        after.cluster_weights, before.cluster_weights
    )


def test_fit_clears_registered_models():
    r = tiny_router((2, 2, 2))
    r.add_model("m", correctness=[1, 0, 1, 0, 1, 1], cost=0.1)
    r.fit(
        embeddings=blobs((10, 10, 10)),
        validation=[f"v{i}" for i in range(6)],
        validation_embeddings=blobs((2, 2, 2), seed=2),
    )
    assert r.models_ == []


def test_same_seed_same_centroids():
    a, b = tiny_router((2, 2, 2)), tiny_router((2, 2, 2))
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    np.testing.assert_array_equal(a.validation_labels_, b.validation_labels_)


# -- learned cluster map --------------------------------------------------------------------------
def test_learned_map_trains_with_early_stopping(learned_router):
    rep = learned_router.training_report_
    assert set(rep) == {"epochs", "best_epoch", "best_holdout_bce"}
    assert rep["epochs"] < learned_router.max_epochs  # stopped early
    assert rep["epochs"] == rep["best_epoch"] + learned_router.patience
    assert 0 < rep["best_holdout_bce"] < 0.7
    assert learned_router.theta_.shape == (8, 384) and learned_router.bias_.shape == (
        8,
    )
    w = learned_router.route_batch(embeddings=np.eye(384, dtype=np.float32)[:3])[
        0
    ].cluster_weights
    assert w.sum() == pytest.approx(1.0, abs=1e-5) and (w > 0).all()  # soft weights


def test_learned_map_is_seeded(learned_router, mmlu_small, mmlu_embeddings, embedder):
    again = UniRouter(
        8, **{k: v for k, v in learned_router.get_params().items() if k != "n_clusters"}
    )
    again.fit_dataset(
        mmlu_small["train"],
        mmlu_small["val"],
        embeddings=mmlu_embeddings["train"],
        validation_embeddings=mmlu_embeddings["val"],
    )
    np.testing.assert_array_equal(again.theta_, learned_router.theta_)
    np.testing.assert_array_equal(again.bias_, learned_router.bias_)
    assert again.training_report_ == learned_router.training_report_


def test_learned_map_starts_at_the_kmeans_router(
    fitted_router, mmlu_small, mmlu_embeddings, embedder
):
    r = UniRouter(
        8,
        method="learned",
        random_state=SEED,
        embedder=embedder,
        max_epochs=0,
        init_temperature=1000.0,
    )
    r.fit_dataset(
        mmlu_small["train"],
        mmlu_small["val"],
        embeddings=mmlu_embeddings["train"],
        validation_embeddings=mmlu_embeddings["val"],
    )
    # Same seed, same centroids (up to the float order of sklearn's threaded reductions).
    np.testing.assert_allclose(r.centroids_, fitted_router.centroids_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r.theta_, 1000.0 * r.centroids_, rtol=1e-6)
    x = mmlu_embeddings["test"]
    np.testing.assert_array_equal(
        r.cluster_of(embeddings=x), fitted_router.cluster_of(embeddings=x)
    )
    soft = np.stack([d.cluster_weights for d in r.route_batch(embeddings=x)])
    assert np.median(soft.max(axis=1)) > 0.99  # nearly one-hot at high temperature


def test_learned_needs_training_labels():
    with pytest.raises(InvalidInputError, match="train_correctness"):
        tiny_router((2, 2, 2), method="learned")


# -- the model pool -------------------------------------------------------------------------------
def test_add_model_never_refits(router_copy, learned_router, mmlu_small):
    y = mmlu_small["val"].correctness[:, 0]
    for r in (router_copy, learned_router):
        centroids, labels, theta = r.centroids_, r.validation_labels_, r.theta_
        snapshot = (
            centroids.copy(),
            labels.copy(),
            None if theta is None else theta.copy(),
        )
        before = {n: p.cluster_error.copy() for n, p in r.profiles_.items()}
        r.add_model("newcomer", correctness=1 - y, cost=0.123)
        assert (
            r.centroids_ is centroids
            and r.validation_labels_ is labels
            and r.theta_ is theta
        )
        np.testing.assert_array_equal(r.centroids_, snapshot[0])
        np.testing.assert_array_equal(r.validation_labels_, snapshot[1])
        if theta is not None:
            np.testing.assert_array_equal(r.theta_, snapshot[2])
        for n, psi in before.items():
            np.testing.assert_array_equal(r.get_profile(n).cluster_error, psi)
        r.remove_model("newcomer")
        assert r.centroids_ is centroids and "newcomer" not in r.models_


def test_per_prompt_costs_give_per_cluster_expected_cost(
    router_copy, mmlu_small, mmlu_embeddings
):
    val = mmlu_small["val"]
    rng = np.random.default_rng(1)
    costs = rng.uniform(0.001, 0.01, len(val))
    p = router_copy.add_model("metered", correctness=val.correctness[:, 0], cost=costs)
    labels, a = router_copy.validation_labels_, router_copy.prior_strength
    g = costs.mean()
    expect = [
        (costs[labels == k].sum() + a * g) / ((labels == k).sum() + a) for k in range(8)
    ]
    np.testing.assert_allclose(p.cluster_cost, expect)
    assert p.cost_per_query == pytest.approx(g)
    assert len(set(np.round(p.cluster_cost, 12))) > 1
    d = router_copy.route(embedding=mmlu_embeddings["test"][0], models=["metered"])
    assert d.expected_cost[0] == pytest.approx(p.cluster_cost[d.cluster])


def test_graded_scores_give_fractional_errors(router_copy):
    n = router_copy.n_validation_
    scores = np.tile([0.25, 0.75, 0.5], n // 3 + 1)[:n]
    p = router_copy.add_model("graded", correctness=scores, cost=0.01)
    assert p.global_error == pytest.approx(1 - scores.mean())
    labels = router_copy.validation_labels_
    k = int(labels[0])
    a = router_copy.prior_strength
    assert p.cluster_error[k] == pytest.approx(
        ((1 - scores[labels == k]).sum() + a * p.global_error)
        / ((labels == k).sum() + a)
    )


def test_duplicate_name_needs_replace(router_copy, mmlu_small):
    name = router_copy.models_[0]
    old = router_copy.get_profile(name)
    y = mmlu_small["val"].correctness[:, 1]
    with pytest.raises(DuplicateModelError, match="replace=True") as info:
        router_copy.add_model(name, correctness=y, cost=1.0)
    assert info.value.model == name
    assert router_copy.get_profile(name) is old
    new = router_copy.add_model(name, correctness=y, cost=1.0, replace=True)
    assert router_copy.get_profile(name) is new and new.cost_per_query == 1.0
    assert router_copy.models_.count(name) == 1


def test_remove_model(router_copy, mmlu_embeddings):
    best = router_copy.route(
        embedding=mmlu_embeddings["test"][0], cost_weight=0.0
    ).model
    removed = router_copy.remove_model(best)
    assert removed.name == best and best not in router_copy.models_
    d = router_copy.route(embedding=mmlu_embeddings["test"][0], cost_weight=0.0)
    assert best not in d.candidates and d.model != best
    with pytest.raises(UnknownModelError, match="not registered") as info:
        router_copy.remove_model(best)
    assert info.value.model == best


def test_profiles_from_another_validation_set_are_refused(
    fitted_router, mmlu_small, mmlu_embeddings, embedder
):
    other = UniRouter(8, random_state=SEED, embedder=embedder).fit(
        embeddings=mmlu_embeddings["train"],
        validation=mmlu_small["test"].validation_set(),
        validation_embeddings=mmlu_embeddings["test"],
    )
    profile = fitted_router.get_profile(fitted_router.models_[0])
    with pytest.raises(ProfileMismatchError, match="re-profile"):
        other.add_profile(profile)
    assert other.models_ == []


def test_add_profile_recomputes_clusters_for_this_router(
    fitted_router, mmlu_small, mmlu_embeddings, embedder
):
    """Same validation set and K but another seed: the profile's psi must follow this router's clusters."""
    other = UniRouter(8, random_state=SEED + 1, embedder=embedder).fit(
        embeddings=mmlu_embeddings["train"],
        validation=mmlu_small["val"].validation_set(),
        validation_embeddings=mmlu_embeddings["val"],
    )
    assert other.validation_fingerprint_ == fitted_router.validation_fingerprint_
    assert (other.validation_labels_ != fitted_router.validation_labels_).any()
    name = fitted_router.models_[0]
    src = fitted_router.get_profile(name)
    added = other.add_profile(src)
    direct = other.build_profile(name, src.scores, cost=src.costs)
    np.testing.assert_allclose(added.cluster_error, direct.cluster_error)
    np.testing.assert_allclose(added.cluster_cost, direct.cluster_cost)
    assert added.created_at == src.created_at


def test_fit_dataset_adds_every_model_and_deduplicates_validation(
    fitted_router, mmlu_small, mmlu_embeddings, embedder
):
    val = mmlu_small["val"]
    assert fitted_router.models_ == val.model_names
    j = 2
    p = fitted_router.get_profile(val.model_names[j])
    np.testing.assert_array_equal(p.scores, val.correctness[:, j])
    np.testing.assert_allclose(p.costs, val.cost[:, j])
    rows = [*range(len(val)), 0, 1]  # two repeated prompts
    r = UniRouter(8, random_state=SEED, embedder=embedder).fit_dataset(
        mmlu_small["train"],
        val.subset(rows),
        models=val.model_names[:3],
        embeddings=mmlu_embeddings["train"],
        validation_embeddings=mmlu_embeddings["val"][rows],
    )
    assert r.n_validation_ == len(val) and r.models_ == val.model_names[:3]
    assert r.validation_fingerprint_ == fitted_router.validation_fingerprint_


# -- routing --------------------------------------------------------------------------------------
def test_route_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError, match="Call 'fit'"):
        UniRouter().route("hello")


def test_route_on_real_prompt_returns_full_decision(fitted_router, mmlu_small):
    prompt = mmlu_small["test"].texts[0]
    d = fitted_router.route(prompt, cost_weight=10.0)
    assert isinstance(d, RoutingDecision)
    assert d.candidates == tuple(fitted_router.models_)
    assert d.predicted_error.shape == d.expected_cost.shape == (len(d.candidates),)
    assert d.cluster_weights.shape == (8,) and d.cost_weight == 10.0
    assert d.ranked[0] == d.model and sorted(d.ranked) == sorted(d.candidates)
    ranked_scores = [d.scores[d.candidates.index(n)] for n in d.ranked]
    assert ranked_scores == sorted(ranked_scores)
    assert d.chosen_predicted_error == pytest.approx(
        d.predicted_error[d.candidates.index(d.model)]
    )
    data = json.loads(json.dumps(d.to_dict(include_weights=True)))
    assert (
        data["model"] == d.model
        and data["ranked"] == list(d.ranked)
        and data["cost_weight"] == 10.0
    )
    assert (
        set(data["predicted_error"]) == set(d.candidates)
        and len(data["cluster_weights"]) == 8
    )
    assert data["cluster"] == d.cluster


def test_cost_weight_zero_picks_best_predicted_quality(fitted_router, mmlu_embeddings):
    for d in fitted_router.route_batch(
        embeddings=mmlu_embeddings["test"][:20], cost_weight=0.0
    ):
        i = d.candidates.index(d.model)
        assert d.predicted_error[i] == d.predicted_error.min()
        tied = d.predicted_error == d.predicted_error.min()
        assert (
            d.expected_cost[i] == d.expected_cost[tied].min()
        )  # exact ties go to the cheaper model


def test_huge_cost_weight_picks_cheapest(fitted_router, mmlu_embeddings):
    for d in fitted_router.route_batch(
        embeddings=mmlu_embeddings["test"][:20], cost_weight=1e9
    ):
        assert d.expected_cost[d.candidates.index(d.model)] == d.expected_cost.min()


def test_default_cost_weight_comes_from_the_router(router_copy, mmlu_embeddings):
    router_copy.cost_weight = 1e9
    d = router_copy.route(embedding=mmlu_embeddings["test"][0])
    assert (
        d.cost_weight == 1e9
        and d.expected_cost[d.candidates.index(d.model)] == d.expected_cost.min()
    )


def test_route_models_subset_and_exclude(fitted_router, mmlu_embeddings):
    x = mmlu_embeddings["test"][0]
    subset = fitted_router.models_[3:6]
    d = fitted_router.route(embedding=x, models=subset)
    assert d.candidates == tuple(subset) and d.model in subset
    best = fitted_router.route(embedding=x).model
    d2 = fitted_router.route(embedding=x, exclude=[best])
    assert (
        best not in d2.candidates
        and len(d2.candidates) == len(fitted_router.models_) - 1
    )
    d3 = fitted_router.route(embedding=x, models=subset, exclude=subset[0])
    assert d3.candidates == tuple(subset[1:])
    with pytest.raises(UnknownModelError, match="no candidate"):
        fitted_router.route(embedding=x, models=subset, exclude=subset)
    with pytest.raises(UnknownModelError, match="not registered") as info:
        fitted_router.route(embedding=x, models=["ghost"])
    assert info.value.model == "ghost"


def test_route_batch_equals_route(fitted_router, mmlu_small):
    prompts = mmlu_small["test"].texts[:12]
    batch = fitted_router.route_batch(prompts, cost_weight=5.0)
    assert len(batch) == 12
    for p, b in zip(prompts, batch):
        one = fitted_router.route(p, cost_weight=5.0)
        assert one.model == b.model and one.ranked == b.ranked
        np.testing.assert_allclose(one.predicted_error, b.predicted_error)
        np.testing.assert_allclose(one.expected_cost, b.expected_cost)


def test_choose_matches_route(fitted_router, learned_router, mmlu_embeddings):
    x = mmlu_embeddings["test"]
    for r in (fitted_router, learned_router):
        for lam in (0.0, 30.0):
            picks = r.choose(x, lam)
            names = [r.models_[i] for i in picks]
            assert names == [
                d.model for d in r.route_batch(embeddings=x, cost_weight=lam)
            ]


def test_predict_gives_matrices(fitted_router, mmlu_embeddings):
    gamma, cost, names = fitted_router.predict(
        embeddings=mmlu_embeddings["test"][:5], models=fitted_router.models_[:4]
    )
    assert gamma.shape == cost.shape == (5, 4) and names == fitted_router.models_[:4]
    assert ((gamma >= 0) & (gamma <= 1)).all()


def test_routing_is_thread_safe_while_models_change(
    router_copy, mmlu_small, mmlu_embeddings
):
    x = mmlu_embeddings["test"][:40]
    y = mmlu_small["val"].correctness[:, 0]
    # a profile no other model has: always correct, nearly free -> predicted error = shrunk 0
    probe = router_copy.build_profile("probe", np.ones_like(y), cost=1e-9)
    n_base = len(router_copy.models_)
    errors: list[BaseException] = []
    seen = {"with": 0, "without": 0}
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                for d in router_copy.route_batch(embeddings=x, cost_weight=1.0):
                    if "probe" in d.candidates:
                        assert len(d.candidates) == n_base + 1
                        i = d.candidates.index("probe")
                        assert d.predicted_error[i] == probe.cluster_error[d.cluster]
                        assert d.model == "probe"
                        seen["with"] += 1
                    else:
                        assert len(d.candidates) == n_base
                        seen["without"] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def writer():
        try:
            for i in range(5000):
                if i >= 60 and seen["with"] and seen["without"]:
                    break
                router_copy.add_model("probe", correctness=np.ones_like(y), cost=1e-9)
                time.sleep(0.001)
                router_copy.remove_model("probe")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader) for _ in range(3)] + [
        threading.Thread(target=writer)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert seen["with"] > 0 and seen["without"] > 0
    assert router_copy.models_ == mmlu_small["val"].model_names


# -- embedder identity ----------------------------------------------------------------------------
def test_embedder_identity_is_stored_and_another_embedder_is_refused(
    fitted_router, embedder, tmp_path
):
    ident = fitted_router.embedder_identity_
    assert ident.name == embedder.name and ident.dim == 384
    fitted_router.save(tmp_path / "r")
    other = CallableEmbedder(
        lambda texts: np.ones((len(texts), 384)), name="some-other-embedder", dim=384
    )
    with pytest.raises(ProfileMismatchError, match="same embedder"):
        UniRouter.load(tmp_path / "r", embedder=other)
    same_name = CallableEmbedder(
        lambda texts: np.ones((len(texts), 384)), name=embedder.name, dim=384
    )
    assert (
        UniRouter.load(tmp_path / "r", embedder=same_name).embedder_identity_ == ident
    )


def test_params_stored_unchanged_and_repr():
    r = UniRouter(7, method="learned", prior_strength=0.5, random_state=3)
    assert r.get_params()["n_clusters"] == 7 and r.get_params()["method"] == "learned"
    assert (
        repr(r)
        == "UniRouter(method='learned', n_clusters=7, prior_strength=0.5, random_state=3)"
    )
