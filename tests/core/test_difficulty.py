"""DifficultyRouter (unirouter.routers.difficulty): contract, no refit on add_model, persistence, real data."""

from __future__ import annotations

import time

import numpy as np
import pytest
from unirouter import DuplicateModelError, InvalidInputError, NotFittedError
from unirouter.routers.difficulty import DifficultyRouter, fit_logistic_map, ridge_gcv

D = 16


@pytest.fixture(scope="module")
def synthetic() -> dict[str, np.ndarray]:
    """Prompts with a latent difficulty readable from the embedding, and 8 models of varied ability."""
    rng = np.random.default_rng(0)
    n_tr, n_val, n_te = 600, 200, 300
    x = rng.normal(size=(n_tr + n_val + n_te, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    difficulty = 4.0 * x[:, 0] + 2.0 * x[:, 1]
    ability = np.linspace(-1.0, 1.5, 8)
    p = 1.0 / (1.0 + np.exp(-(ability[None, :] - difficulty[:, None])))
    y = (rng.random(p.shape) < p).astype(float)
    s = np.cumsum([0, n_tr, n_val, n_te])
    return {
        "x_tr": x[s[0] : s[1]], "x_val": x[s[1] : s[2]], "x_te": x[s[2] : s[3]],
        "y_tr": y[s[0] : s[1], :5], "y_train_val": y[s[1] : s[2], :5],
        "y_new_val": y[s[1] : s[2], 5:], "p_new_te": p[s[2] : s[3], 5:],
    }  # fmt: skip


def _fit(data: dict[str, np.ndarray], **params) -> DifficultyRouter:
    router = DifficultyRouter(random_state=0, embedder="test-embedder", **params)
    return router.fit(
        embeddings=data["x_tr"],
        validation_embeddings=data["x_val"],
        train_correctness=data["y_tr"],
        validation_correctness=data["y_train_val"],
    )


def _add_new(router: DifficultyRouter, data: dict[str, np.ndarray]) -> None:
    for j in range(data["y_new_val"].shape[1]):
        router.add_model(
            f"new{j}", correctness=data["y_new_val"][:, j], cost=0.001 * (j + 1)
        )


def test_fit_returns_self_and_stores_params(synthetic):
    router = DifficultyRouter(2, n_clusters=3, random_state=0, embedder="test-embedder")
    assert (
        router.get_params()["n_factors"] == 2 and router.get_params()["n_clusters"] == 3
    )
    assert (
        router.fit(
            embeddings=synthetic["x_tr"],
            validation_embeddings=synthetic["x_val"],
            train_correctness=synthetic["y_tr"],
            validation_correctness=synthetic["y_train_val"],
        )
        is router
    )
    assert router.factors_.shape == (D, 2) and router.centroids_.shape == (3, D)
    assert router.n_parts_ == 1 + 2 + 3 and router.prior_var_.shape == (6,)


def test_not_fitted_raises():
    router = DifficultyRouter()
    with pytest.raises(NotFittedError):
        router.add_model("m", correctness=[1.0, 0.0], cost=1.0)
    with pytest.raises(NotFittedError):
        router.route(embedding=np.ones(D, dtype=np.float32) / 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_correctness": None}, "train_correctness"),
        ({"train_correctness": np.full((600, 5), 2.0)}, r"\[0, 1\]"),
        ({"validation_correctness": np.zeros((200, 4))}, "same models"),
    ],
)
def test_bad_labels_raise(synthetic, kwargs, match):
    args = {
        "embeddings": synthetic["x_tr"],
        "validation_embeddings": synthetic["x_val"],
        "train_correctness": synthetic["y_tr"],
        "validation_correctness": synthetic["y_train_val"],
        **kwargs,
    }
    with pytest.raises(InvalidInputError, match=match):
        DifficultyRouter(embedder="test-embedder").fit(**args)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_factors": -1}, "n_factors"),
        ({"n_factors": "auto"}, "n_factors"),
        ({"prior_folds": 1}, "prior_folds"),
        ({"random_state": -1}, "random_state must be an int >= 0"),
    ],
)
def test_bad_params_raise(synthetic, params, match):
    with pytest.raises(InvalidInputError, match=match):
        DifficultyRouter(embedder="test-embedder", **params).fit(
            embeddings=synthetic["x_tr"], validation_embeddings=synthetic["x_val"],
            train_correctness=synthetic["y_tr"], validation_correctness=synthetic["y_train_val"],
        )  # fmt: skip


def test_add_model_never_refits_shared_state(synthetic):
    router = _fit(synthetic)
    shared = {k: np.array(v, copy=True) for k, v in router._state_arrays().items()}
    router.add_model("first", correctness=synthetic["y_new_val"][:, 0], cost=0.001)
    before = router.get_profile("first").cluster_error.copy()
    t0 = time.perf_counter()
    router.add_model("second", correctness=synthetic["y_new_val"][:, 1], cost=0.002)
    elapsed = time.perf_counter() - t0
    for k, v in router._state_arrays().items():
        np.testing.assert_array_equal(v, shared[k], err_msg=k)
    np.testing.assert_array_equal(router.get_profile("first").cluster_error, before)
    assert elapsed < 0.5  # generous on a shared machine; the benchmark reports ~1 ms
    with pytest.raises(DuplicateModelError):
        router.add_model("first", correctness=synthetic["y_new_val"][:, 0], cost=0.001)
    router.remove_model("first")
    assert router.models_ == ["second"]


def test_learns_shared_difficulty(synthetic):
    """The first factor tracks the latent difficulty; predictions beat a prompt-blind error rate."""
    router = _fit(synthetic, n_factors=1)
    z = (synthetic["x_te"] - router.embedding_mean_) @ router.factors_[:, 0]
    truth = 4.0 * synthetic["x_te"][:, 0] + 2.0 * synthetic["x_te"][:, 1]
    assert abs(np.corrcoef(z, truth)[0, 1]) > 0.9
    _add_new(router, synthetic)
    gamma, _, names = router.predict(embeddings=synthetic["x_te"])
    assert names == ["new0", "new1", "new2"]
    err = 1.0 - synthetic["p_new_te"]
    flat = np.broadcast_to(1.0 - synthetic["y_new_val"].mean(0), err.shape)
    assert np.mean((gamma - err) ** 2) < 0.5 * np.mean((flat - err) ** 2)


def test_graded_and_missing_scores(synthetic):
    router = _fit(synthetic)
    scores = synthetic["y_new_val"][:, 0] * 0.5 + 0.25
    scores[:10] = np.nan
    profile = router.add_model("graded", correctness=scores, cost=[0.001] * scores.size)
    assert np.isfinite(profile.cluster_error).all()
    assert profile.cost_per_query == pytest.approx(0.001)


def test_same_seed_same_output(synthetic):
    a, b = _fit(synthetic, n_clusters=4), _fit(synthetic, n_clusters=4)
    _add_new(a, synthetic)
    _add_new(b, synthetic)
    np.testing.assert_array_equal(
        a.predict(embeddings=synthetic["x_te"])[0],
        b.predict(embeddings=synthetic["x_te"])[0],
    )


def test_save_load_keeps_decisions(synthetic, tmp_path):
    router = _fit(synthetic, n_clusters=3)
    _add_new(router, synthetic)
    router.save(tmp_path / "r")
    loaded = DifficultyRouter.load(tmp_path / "r", embedder="test-embedder")
    for lam in (0.0, 30.0, 300.0):
        np.testing.assert_array_equal(
            router.choose(synthetic["x_te"], lam), loaded.choose(synthetic["x_te"], lam)
        )
    d = loaded.route(embedding=synthetic["x_te"][0], cost_weight=30.0)
    assert (
        d.model == router.route(embedding=synthetic["x_te"][0], cost_weight=30.0).model
    )
    assert d.cluster_weights is not None and d.cluster_weights.shape == (3,)


def test_cost_shape_from_training_costs(synthetic):
    rng = np.random.default_rng(1)
    length = np.exp(synthetic["x_tr"][:, 2] * 3)
    cost = length[:, None] * rng.uniform(1, 2, size=(1, 5))
    router = DifficultyRouter(random_state=0, embedder="test-embedder").fit(
        embeddings=synthetic["x_tr"], validation_embeddings=synthetic["x_val"],
        train_correctness=synthetic["y_tr"], validation_correctness=synthetic["y_train_val"], train_cost=cost,
    )  # fmt: skip
    router.add_model("m", correctness=synthetic["y_new_val"][:, 0], cost=0.01)
    _, c, _ = router.predict(embeddings=synthetic["x_val"])
    assert c.mean() == pytest.approx(
        0.01, rel=1e-6
    )  # scaled to the mean validation cost
    assert np.corrcoef(c[:, 0], synthetic["x_val"][:, 2])[0, 1] > 0.8


def test_helpers_agree_with_closed_forms():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    t = x @ rng.normal(size=(5, 2)) + 0.01 * rng.normal(size=(200, 2))
    coef, xm, alpha = ridge_gcv(x, t)
    assert alpha <= 1.0 and np.allclose((x - xm) @ coef + t.mean(0), t, atol=0.1)
    f = np.hstack([np.ones((200, 1)), x[:, :1]])
    y = (rng.random(200) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(float)[:, None]
    beta, var = fit_logistic_map(f, y, np.zeros(2), np.full(2, 1e6))
    assert 1.0 < beta[0, 1] < 3.5 and (var > 0).all()


def test_real_data_beats_prompt_blind_errors(mmlu_small, mmlu_embeddings):
    """MMLU-Pro slice: half the models train the router, the other half are added from S_val only."""
    train, val, test = mmlu_small["train"], mmlu_small["val"], mmlu_small["test"]
    m = train.n_models
    known, new = list(range(0, m, 2)), list(range(1, m, 2))
    router = DifficultyRouter(random_state=0).fit(
        embeddings=mmlu_embeddings["train"], validation_embeddings=mmlu_embeddings["val"],
        train_correctness=train.correctness[:, known], validation_correctness=val.correctness[:, known],
    )  # fmt: skip
    times = []
    for j in new:
        t0 = time.perf_counter()
        router.add_model(
            val.model_names[j],
            correctness=val.correctness[:, j],
            cost=float(np.nanmean(val.cost[:, j])),
        )
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.05
    gamma, _, _names = router.predict(embeddings=mmlu_embeddings["test"])
    y = test.correctness[:, new]
    eps = 1e-6
    logloss = -np.mean(y * np.log(1 - gamma + eps) + (1 - y) * np.log(gamma + eps))
    flat = np.broadcast_to(
        1.0 - np.nanmean(val.correctness[:, new], axis=0), gamma.shape
    )
    logloss_flat = -np.mean(y * np.log(1 - flat + eps) + (1 - y) * np.log(flat + eps))
    assert logloss < logloss_flat


def test_factor_count_is_a_cap_and_the_prior_prunes_unused_factors(synthetic):
    """The synthetic models differ only in ability (the intercept): every factor slope is shared, so
    the empirical-Bayes prior gives the slopes almost no spread and keeps the intercept's."""
    router = _fit(synthetic, n_factors=16)
    assert router.n_factors_ == 5 and router.factors_.shape == (D, 5)  # capped by the 5 known models
    assert router.prior_var_[0] > 10 * router.prior_var_[1:].max()


def test_prior_is_estimated_out_of_fold_and_deterministic(synthetic):
    a, b = _fit(synthetic), _fit(synthetic)
    np.testing.assert_array_equal(a.prior_mean_, b.prior_mean_)
    np.testing.assert_array_equal(a.prior_var_, b.prior_var_)
    validation_only = _fit(synthetic, prior_folds=0)
    assert not np.allclose(a.prior_mean_, validation_only.prior_mean_)
    np.testing.assert_array_equal(a.factors_, validation_only.factors_)  # only the prior changes
