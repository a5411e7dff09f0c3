"""unirouter.routers.calibration: a target (budget, quality floor, top-model share) -> a cost weight."""

from __future__ import annotations

import numpy as np
import pytest
from unirouter import InvalidInputError, UniRouter, calibrate_cost_weight
from unirouter.routers.calibration import routing_summary


@pytest.fixture(scope="module")
def sample(fitted_router, mmlu_embeddings):
    """The validation embeddings and the router's predictions on them."""
    x = mmlu_embeddings["val"]
    gamma, cost, names = fitted_router.predict(embeddings=x)
    return x, gamma, cost, names


def summary(sample, lam):
    _, gamma, cost, _ = sample
    return routing_summary(gamma, cost, lam)


def test_budget_gives_the_smallest_cost_weight_within_budget(fitted_router, sample):
    x = sample[0]
    top_cost = summary(sample, 0.0)["cost"]
    budget = 0.5 * top_cost
    lam = calibrate_cost_weight(fitted_router, embeddings=x, budget=budget)
    assert lam > 0
    assert summary(sample, lam)["cost"] <= budget
    assert (
        summary(sample, lam * 0.999)["cost"] > budget
    )  # a threshold, not just any feasible lambda


def test_budget_is_monotone(fitted_router, sample):
    x = sample[0]
    top_cost = summary(sample, 0.0)["cost"]
    lams = [
        calibrate_cost_weight(fitted_router, embeddings=x, budget=f * top_cost)
        for f in (0.1, 0.3, 0.6, 0.9)
    ]
    costs = [summary(sample, lam)["cost"] for lam in lams]
    errors = [summary(sample, lam)["error"] for lam in lams]
    assert (
        lams == sorted(lams, reverse=True) and len(set(lams)) >= 3
    )  # a step function of the budget
    assert costs == sorted(costs)
    assert errors == sorted(errors, reverse=True)


def test_budget_above_the_best_routing_cost_needs_no_cost_weight(fitted_router, sample):
    assert (
        calibrate_cost_weight(
            fitted_router,
            embeddings=sample[0],
            budget=10 * summary(sample, 0.0)["cost"],
        )
        == 0.0
    )


def test_quality_floor_gives_the_largest_cost_weight_meeting_it(fitted_router, sample):
    best_acc = 1 - summary(sample, 0.0)["error"]
    floor = best_acc - 0.03
    lam = calibrate_cost_weight(
        fitted_router, embeddings=sample[0], quality_floor=floor
    )
    assert 1 - summary(sample, lam)["error"] >= floor - 1e-12
    assert 1 - summary(sample, lam * 1.001)["error"] < floor
    assert summary(sample, lam)["cost"] < summary(sample, 0.0)["cost"]


def test_max_quality_drop_is_relative_to_the_best_single_model(fitted_router, sample):
    _, gamma, _, _ = sample
    best_single = 1 - gamma.mean(axis=0).min()
    lam = calibrate_cost_weight(
        fitted_router, embeddings=sample[0], max_quality_drop=0.01
    )
    assert 1 - summary(sample, lam)["error"] >= best_single - 0.01 - 1e-12
    assert 1 - summary(sample, lam * 1.001)["error"] < best_single - 0.01


def test_max_top_share_caps_calls_to_the_most_expensive_model(fitted_router, sample):
    _, _, cost, _ = sample
    top = int(np.argmax(cost.mean(axis=0)))
    share0 = summary(sample, 0.0)["shares"][top]
    assert share0 > 0.05  # the target below binds
    target = share0 / 2
    lam = calibrate_cost_weight(
        fitted_router, embeddings=sample[0], max_top_share=target
    )
    assert summary(sample, lam)["shares"][top] <= target
    assert summary(sample, lam * 0.999)["shares"][top] > target


def test_router_calibrate_sets_cost_weight_on_validation_prompts(router_copy, sample):
    budget = 0.3 * summary(sample, 0.0)["cost"]
    lam = router_copy.calibrate(
        budget=budget
    )  # default sample: the router's validation prompts
    assert router_copy.cost_weight == lam > 0
    assert lam == calibrate_cost_weight(
        router_copy, embeddings=sample[0], budget=budget
    )
    decisions = router_copy.route_batch(embeddings=sample[0])
    assert all(d.cost_weight == lam for d in decisions)
    assert np.mean([d.chosen_expected_cost for d in decisions]) <= budget


def test_calibration_restricted_to_models(fitted_router, sample):
    models = fitted_router.models_[:5]
    gamma, cost, _ = fitted_router.predict(embeddings=sample[0], models=models)
    budget = 0.5 * routing_summary(gamma, cost, 0.0)["cost"]
    lam = calibrate_cost_weight(
        fitted_router, embeddings=sample[0], budget=budget, models=models
    )
    assert routing_summary(gamma, cost, lam)["cost"] <= budget


def test_unreachable_budget_and_floor_are_refused(fitted_router, sample):
    cheapest = sample[2].min(axis=1).mean()
    with pytest.raises(InvalidInputError, match="below the cheapest routing"):
        calibrate_cost_weight(
            fitted_router, embeddings=sample[0], budget=0.5 * cheapest
        )
    with pytest.raises(InvalidInputError, match="above the best predicted accuracy"):
        calibrate_cost_weight(fitted_router, embeddings=sample[0], quality_floor=0.999)


def test_unreachable_top_share_is_refused():
    """The most expensive model on average is the cheapest one in a cluster: no lambda caps its share."""
    d = 4
    rng = np.random.default_rng(0)
    eye = np.eye(d)

    def pts(n_per):
        x = np.concatenate(
            [eye[k] + 0.05 * rng.standard_normal((n, d)) for k, n in enumerate(n_per)]
        )
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    r = UniRouter(2, prior_strength=0.0, random_state=0).fit(
        embeddings=pts((20, 20)),
        validation=[f"v{i}" for i in range(6)],
        validation_embeddings=pts((3, 3)),
    )
    first = r.validation_labels_ == r.validation_labels_[0]
    r.add_model("A", correctness=[1] * 6, cost=np.where(first, 10.0, 0.1))
    r.add_model("B", correctness=[0] * 6, cost=1.0)
    x = pts((10, 10))
    with pytest.raises(InvalidInputError, match="max_top_share 0.2 cannot be met"):
        calibrate_cost_weight(r, embeddings=x, max_top_share=0.2)
    lam = calibrate_cost_weight(r, embeddings=x, max_top_share=0.6)
    gamma, cost, _ = r.predict(embeddings=x)
    assert routing_summary(gamma, cost, lam)["shares"][0] <= 0.6


@pytest.mark.parametrize(
    "target, match",
    [
        ({}, "exactly one target"),
        ({"budget": 0.001, "quality_floor": 0.5}, "exactly one target"),
        ({"budget": -1.0}, "finite number >= 0"),
        ({"budget": float("nan")}, "finite number >= 0"),
        ({"quality_floor": 1.5}, r"must lie in \[0, 1\]"),
        ({"max_top_share": True}, "finite number >= 0"),
    ],
)
def test_bad_targets_are_refused(fitted_router, sample, target, match):
    with pytest.raises(InvalidInputError, match=match):
        calibrate_cost_weight(fitted_router, embeddings=sample[0], **target)
