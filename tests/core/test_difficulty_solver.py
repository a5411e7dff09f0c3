"""Issue 15: DifficultyRouter's MAP solver and EM prior on data they were not tuned on.

Adversarial item-response data: a known pool far from the new model (much weaker, much stronger),
graded labels in [0, 1], all-0 / all-1 labels, NaN-masked entries, 5-20 prompt validation sets and
collinear factors. Every returned point must be a stationary point of the MAP objective, no worse
than scipy's L-BFGS-B on the same objective, and the profile's mean predicted quality must follow the
model's observed mean. The old solver (plain Newton from the prior mean) is kept here only, to show
the regression test fails on it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from unirouter import ConvergenceWarning, DifficultyRouter, UniRouterWarning
from unirouter.routers.difficulty import (
    _empirical_bayes_prior,
    fit_logistic_map,
    neg_log_posterior,
    solve_logistic_map,
)
from unirouter.data.synthetic import make_graded_routing, write_routing_dataset

WEAK_PRIOR_MEAN = np.array([-2.6, -0.8, 0.3, 0.0])  # a known pool at ~7 % success


def _old_fit_logistic_map(features, y, prior_mean, prior_var, max_iter=25, tol=1e-6):
    """The solver shipped before issue 15: plain Newton from the prior mean, no step control."""
    f = np.asarray(features, dtype=np.float64)
    obs = ~np.isnan(y)
    yz = np.where(obs, y, 0.0)
    precision = 1.0 / prior_var
    beta = np.tile(prior_mean, (y.shape[1], 1)).astype(np.float64)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(f @ beta.T)))
        grad = f.T @ ((yz - p) * obs) - (precision * (beta - prior_mean)).T
        w = p * (1.0 - p) * obs
        hess = np.stack([(f.T * w[:, j]) @ f for j in range(y.shape[1])]) + np.diag(precision)[None]
        step = np.linalg.solve(hess, grad.T[..., None])[..., 0]
        beta += step
        if np.abs(step).max() < tol:
            break
    return beta


def _gradient(f, y, beta, mu, var):
    obs = ~np.isnan(y)
    p = 1.0 / (1.0 + np.exp(-(f @ beta)))
    return f.T @ ((p - np.where(obs, y, 0.0)) * obs) + (beta - mu) / var


def _lbfgs(f, y, mu, var):
    def fun(b):
        return float(neg_log_posterior(f, y[:, None], b, mu, var)[0]), _gradient(f, y, b, mu, var)

    res = minimize(fun, mu.copy(), jac=True, method="L-BFGS-B", options={"gtol": 1e-9, "ftol": 1e-15, "maxiter": 5000})
    return float(res.fun)


def _item_response(n, level, seed, *, graded=True, missing=0.0):
    """Features [1, z] with 3 standard-normal factors, labels from a model at ``level`` logits."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    f = np.hstack([np.ones((n, 1)), z])
    p = 1.0 / (1.0 + np.exp(-(level - 0.8 * z[:, 0] + 0.4 * z[:, 1])))
    y = np.round(rng.beta(3 * p, 3 * (1 - p)), 3) if graded else (rng.random(n) < p).astype(float)
    if missing:
        y[rng.random(n) < missing] = np.nan
        y[0] = p[0]  # at least one observed label
    return f, y


def _check_optimum(f, y, mu, var, beta):
    assert np.isfinite(beta).all()
    g = _gradient(f, y, beta, mu, var)
    n_obs = max(1, int((~np.isnan(y)).sum()))
    assert np.abs(g).max() <= 1e-6 * n_obs, f"not a stationary point: |grad| = {np.abs(g).max():.3g}"
    ours = float(neg_log_posterior(f, y[:, None], beta, mu, var)[0])
    assert ours <= _lbfgs(f, y, mu, var) + 1e-8 * max(1.0, abs(ours))


CASES = [
    # (n prompts, true level in logits, graded, missing share, prior variance of the intercept)
    (5, 0.5, True, 0.0, 4.0),
    (10, 1.0, True, 0.0, 1.0),
    (20, 0.3, True, 0.0, 4.0),  # much stronger than the weak pool (mean >= 0.5)
    (20, 2.5, False, 0.0, 4.0),
    (80, 0.3, True, 0.0, 1.0),
    (80, 0.5, True, 0.2, 4.0),  # NaN-masked entries
    (20, -6.0, True, 0.0, 4.0),  # much weaker
    (80, -6.0, False, 0.0, 0.3),
]


@pytest.mark.parametrize(("n", "level", "graded", "missing", "var0"), CASES)
def test_map_fit_is_the_optimum_when_the_prior_is_far(n, level, graded, missing, var0):
    var = np.array([var0, 0.3, 0.3, 0.3])
    for seed in range(5):
        f, y = _item_response(n, level, seed, graded=graded, missing=missing)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            beta, post_var = fit_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, var)
        assert (post_var > 0).all()
        _check_optimum(f, y, WEAK_PRIOR_MEAN, var, beta[0])


@pytest.mark.parametrize("value", [0.0, 1.0])
@pytest.mark.parametrize("n", [5, 20])
def test_all_zero_and_all_one_labels_give_finite_optima(value, n):
    f, _ = _item_response(n, 0.0, 0)
    y = np.full(n, value)
    var = np.array([2.5**2, 0.3, 0.3, 0.3])
    beta, _ = fit_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, var)
    _check_optimum(f, y, WEAK_PRIOR_MEAN, var, beta[0])
    p = 1.0 / (1.0 + np.exp(-(f @ beta[0])))
    assert (p > 0.5).all() if value == 1.0 else (p < 0.5).all()


def test_collinear_factors():
    f, y = _item_response(20, 0.5, 1)
    fc = np.hstack([f, f[:, 1:2], 2 * f[:, 1:2]])  # duplicated, scaled factor columns
    mu, var = np.r_[WEAK_PRIOR_MEAN, 0.0, 0.0], np.r_[4.0, 0.3, 0.3, 0.3, 0.3, 0.3]
    beta, _ = fit_logistic_map(fc, y[:, None], mu, var)
    _check_optimum(fc, y, mu, var, beta[0])


def test_regression_old_solver_diverges_new_does_not():
    """The issue-15 case: known pool weak, new model strong; the old solver ends tens of logits away."""
    f, y = _item_response(80, 0.3, 49)
    var = np.array([4.0, 0.3, 0.3, 0.3])
    with np.errstate(all="ignore"):
        old = _old_fit_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, var)[0]
    new, _ = fit_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, var)
    obj = lambda b: float(neg_log_posterior(f, y[:, None], b, WEAK_PRIOR_MEAN, var)[0])  # noqa: E731
    assert obj(old) > 10 * obj(new[0])  # the old point is far from the optimum ...
    assert (1.0 / (1.0 + np.exp(-(f @ old))) > 0.999).all()  # ... and predicts 1.000 everywhere
    _check_optimum(f, y, WEAK_PRIOR_MEAN, var, new[0])


def test_several_models_at_once_match_one_at_a_time():
    f, y1 = _item_response(20, 0.5, 2)
    _, y2 = _item_response(20, -4.0, 3, missing=0.3)
    var = np.array([4.0, 0.3, 0.3, 0.3])
    both, _ = fit_logistic_map(f, np.c_[y1, y2], WEAK_PRIOR_MEAN, var)
    for j, y in enumerate((y1, y2)):
        one, _ = fit_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, var)
        np.testing.assert_allclose(both[j], one[0], atol=1e-7)


def test_unconverged_fit_warns_and_falls_back_to_intercept_only():
    f, y = _item_response(20, 0.3, 49)
    var = np.array([4.0, 0.3, 0.3, 0.3])
    with pytest.warns(ConvergenceWarning, match="intercept-only"):
        beta, _ = fit_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, var, max_iter=0, tol=1e-30)
    assert issubclass(ConvergenceWarning, UniRouterWarning)
    np.testing.assert_array_equal(beta[0, 1:], WEAK_PRIOR_MEAN[1:])  # slopes at the prior mean
    g0 = _gradient(f, y, beta[0], WEAK_PRIOR_MEAN, var)[0]
    assert abs(g0) < 1e-8  # the intercept is its exact conditional optimum
    p = 1.0 / (1.0 + np.exp(-(f @ beta[0])))
    assert not (p >= 0.999).all()


def test_solver_reports_convergence():
    f, y = _item_response(20, 0.3, 0)
    fit = solve_logistic_map(f, y[:, None], WEAK_PRIOR_MEAN, np.array([4.0, 0.3, 0.3, 0.3]))
    assert fit.converged.all() and fit.n_iter[0] <= 10 and fit.grad_norm[0] < 1e-6


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(5, 40),
    p=st.integers(1, 5),
    level=st.floats(-8, 8),
    mu0=st.floats(-6, 6),
    log_var=st.floats(-3, 4),
    missing=st.floats(0, 0.5),
    seed=st.integers(0, 10_000),
)
def test_property_stationary_and_no_worse_than_lbfgs(n, p, level, mu0, log_var, missing, seed):
    rng = np.random.default_rng(seed)
    f = np.hstack([np.ones((n, 1)), rng.standard_normal((n, p - 1))])
    q = 1.0 / (1.0 + np.exp(-(level + f[:, 1:].sum(1))))
    y = np.round(rng.beta(2 * q + 1e-3, 2 * (1 - q) + 1e-3), 2)
    y[rng.random(n) < missing] = np.nan
    mu = np.r_[mu0, rng.normal(0, 1, p - 1)]
    var = np.exp(log_var) * np.ones(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        beta, _ = fit_logistic_map(f, y[:, None], mu, var)
    _check_optimum(f, y, mu, var, beta[0])


# -- the empirical-Bayes prior -------------------------------------------------------------------------
def test_em_prior_on_a_pool_with_all_zero_and_all_one_models():
    rng = np.random.default_rng(0)
    f = np.hstack([np.ones((200, 1)), rng.standard_normal((200, 3))])
    ys = [_item_response(200, lv, s)[1] for s, lv in enumerate((-3.0, -2.5, -2.0, 1.0))]
    y = np.c_[np.column_stack(ys), np.zeros(200), np.ones(200)]
    y[rng.random(y.shape) < 0.1] = np.nan
    mu, tau2, converged = _empirical_bayes_prior(f, y, 200)
    assert np.isfinite(mu).all() and np.isfinite(tau2).all() and (tau2 > 0).all()
    assert converged


# -- the router end to end on synthetic graded data ------------------------------------------------------
@pytest.fixture(scope="module")
def weak_pool_strong_new():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    syn = make_graded_routing(x, 24, strong_fraction=1 / 3, random_state=0)
    return x, syn


@pytest.mark.parametrize("n_val", [5, 20, 100])
def test_router_strong_new_models_follow_their_own_level(weak_pool_strong_new, n_val):
    x, syn = weak_pool_strong_new
    known, new = np.flatnonzero(~syn.strong), np.flatnonzero(syn.strong)
    assert syn.quality[:, known].mean() < 0.2 and syn.quality[:, new].mean(0).min() > 0.25
    tr, va, te = np.arange(400), np.arange(400, 400 + n_val), np.arange(500, 700)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("ignore", UniRouterWarning)
        router = DifficultyRouter(random_state=0, prior_folds=2 if n_val < 20 else 5).fit(
            embeddings=x[tr], validation_embeddings=x[va],
            train_correctness=syn.quality[np.ix_(tr, known)], validation_correctness=syn.quality[np.ix_(va, known)],
        )
        for j in new:
            router.add_model(f"m{j}", correctness=syn.quality[va, j], cost=1.0)
    gamma, _, names = router.predict(embeddings=x[va])
    observed = syn.quality[np.ix_(va, new)].mean(0)
    predicted = 1.0 - gamma.mean(0)
    # the level is pulled toward the weak pool by at most a weakly informative prior (sd 2.5 logits)
    assert np.abs(predicted - observed).max() < (0.12 if n_val == 5 else 0.06)
    gamma_test, _, _ = router.predict(embeddings=x[te])
    assert (1.0 - gamma_test < 0.999).any(axis=0).all()  # no profile predicts 1.000 everywhere
    # the strong models stay distinguishable and ordered like their true levels on S_test
    if n_val == 100:
        rho = np.corrcoef(np.argsort(np.argsort(1 - gamma_test.mean(0))), np.argsort(np.argsort(syn.quality[np.ix_(te, new)].mean(0))))[0, 1]
        assert rho > 0.8


def test_synthetic_dataset_round_trips_through_load_dataset(tmp_path, weak_pool_strong_new):
    from unirouter import load_dataset
    from unirouter.exceptions import PersistenceError

    _, syn = weak_pool_strong_new
    n = 50
    ids = [f"p{i}" for i in range(n)]
    texts = [f"Synthetic prompt number {i}?" for i in range(n)]
    q = syn.quality[:n].copy()
    q[0, 0] = np.nan
    path = write_routing_dataset(tmp_path / "syn", name="syn", ids=ids, texts=texts, quality=q, cost=syn.cost[:n], model_names=syn.model_names)
    ds = load_dataset(path)
    np.testing.assert_allclose(ds.correctness, q, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(ds.cost, syn.cost[:n], rtol=1e-5)
    assert ds.model_names == syn.model_names and ds.texts == texts
    with pytest.raises(PersistenceError, match="overwrite"):
        write_routing_dataset(path, name="syn", ids=ids, texts=texts, quality=q, cost=syn.cost[:n], model_names=syn.model_names)


def test_synthetic_generator_is_seeded_and_graded(weak_pool_strong_new):
    x, syn = weak_pool_strong_new
    again = make_graded_routing(x, 24, strong_fraction=1 / 3, random_state=0)
    np.testing.assert_array_equal(syn.quality, again.quality)
    frac = syn.quality[(syn.quality > 0) & (syn.quality < 1)].size / syn.quality.size
    assert frac > 0.5  # graded, not 0/1
    assert (syn.cost > 0).all()
    np.testing.assert_allclose(syn.quality.mean(0), syn.level, atol=0.05)


# -- the learned map's training --------------------------------------------------------------------------
def test_learned_map_divergence_keeps_the_last_finite_map():
    from unirouter.routers.cluster_maps import LearnedMap, fit_kmeans

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    errors = (rng.random((200, 5)) < 0.5).astype(float)
    centroids = fit_kmeans(x, 4, random_state=0)
    psi = rng.random((5, 4))
    with pytest.warns(ConvergenceWarning, match="diverged"):
        cmap, report = LearnedMap.fit(x, errors, psi, centroids, learning_rate=1e30, random_state=0, max_epochs=20)
    assert np.isfinite(cmap.theta).all() and np.isfinite(cmap.bias).all()
    assert np.isfinite(cmap.weights(x)).all() and report["epochs"] < 20
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LearnedMap.fit(x, errors, psi, centroids, random_state=0, max_epochs=5)  # the default trains quietly


# -- the strongest-unseen protocol and the loss-to-ZeroRouter summary, through the CLI -------------------
def test_cli_strongest_unseen_on_a_synthetic_graded_dataset(data_dir, embedder, tmp_path, capsys):
    import argparse
    import json

    from unirouter import load_dataset
    from unirouter.cli import evaluate as _evaluate_cli

    src = load_dataset(data_dir / "routerbench_subset", load_responses=False)
    rows = np.random.default_rng(0).choice(len(src), size=150, replace=False)
    texts = [src.texts[i] for i in rows]
    syn = make_graded_routing(embedder.embed(texts), 12, random_state=0)
    path = write_routing_dataset(
        tmp_path / "syn", name="syn", ids=[src.ids[i] for i in rows], texts=texts, quality=syn.quality, cost=syn.cost, model_names=syn.model_names
    )
    parser = argparse.ArgumentParser(prog="unirouter")
    _evaluate_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "r.json"
    args = parser.parse_args(
        ["evaluate", "--data", str(path), "--protocol", "strongest-unseen", "--trials", "2", "--methods", "zero", "zero_val", "knn", "difficulty",
         "--knn-grid", "10", "--json", str(out), "--no-progress"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "loses to ZeroRouter (S_val)" in printed
    doc = json.loads(out.read_text())
    strongest = {syn.model_names[j] for j in np.argsort(syn.quality.mean(0))[-4:]}
    for t in doc["per_trial"]:
        assert set(t["test_models"]) == strongest  # the strongest third, every trial
    for m in ("knn", "difficulty"):
        z = doc["methods"][m]["loses_to_zero_val"]
        assert 0.0 <= z["rate"] <= 1.0 and z["worst_loss"] >= 0.0
    assert "loses_to_zero_val" not in doc["methods"]["zero_val"]
