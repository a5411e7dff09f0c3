"""Property-based bad input (issue 19, point 9): every router, the calibration and the routing options
refuse bad values with a typed error (``InvalidInputError``, a ``UniRouterError``) that names what to
fix, before numpy, scikit-learn or torch sees them.

scikit-learn's contract: constructors only store (no error there), ``fit`` validates every parameter.
Runs on a small slice of the real MMLU-Pro fixtures (``mmlu_small``, real MiniLM embeddings).
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unirouter import UniRouter
from unirouter.exceptions import ConvergenceWarning, InvalidInputError, UniRouterError
from unirouter.integration.pool import RoutingOptions
from unirouter.routers.baselines import KNNRouter, ZeroRouter
from unirouter.routers.calibration import calibrate_cost_weight
from unirouter.routers.difficulty import DifficultyRouter

N_TR, N_VAL = 80, 40  # a slice of the fixtures: fits take milliseconds
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- bad values --------------------------------------------------------------------------------
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf")])
NOT_A_NUMBER = st.one_of(
    st.text(max_size=5),
    st.just(None),
    st.booleans(),
    st.lists(st.floats(0, 1), min_size=1, max_size=3),
    st.just(object()),
    st.just(1 + 2j),
)
NOT_AN_INT = st.one_of(NOT_A_NUMBER.filter(lambda v: v is not None), st.floats(0.5, 50).filter(lambda v: v != int(v)))
NEGATIVE = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)


def bad_real(*, low_inclusive: bool = True, allow_none: bool = False, high: float | None = None) -> st.SearchStrategy:
    """Values that are not a finite number in the parameter's range."""
    wrong = NOT_A_NUMBER if not allow_none else NOT_A_NUMBER.filter(lambda v: v is not None)
    parts = [NON_FINITE, wrong, NEGATIVE]
    if not low_inclusive:
        parts.append(st.just(0.0))
    if high is not None:
        parts.append(st.floats(min_value=high, exclude_min=True, max_value=1e300))
    return st.one_of(*parts)


def bad_int(low: int) -> st.SearchStrategy:
    return st.one_of(NOT_AN_INT, st.integers(max_value=low - 1), NON_FINITE)


BAD_COST_WEIGHT = bad_real(allow_none=True)
BAD_SEED = st.one_of(st.text(max_size=3), st.integers(max_value=-1), st.floats(0.5, 9.5), st.booleans(), NON_FINITE)
BAD_EMBEDDER = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.just(b"x"))

# Every constructor parameter of every router -> values that must be refused at fit time.
BAD_PARAMS: dict[type, dict[str, st.SearchStrategy]] = {
    UniRouter: {
        "n_clusters": bad_int(1),
        "method": st.one_of(st.text(max_size=6).filter(lambda s: s not in ("kmeans", "learned")), st.none(), st.integers()),
        "prior_strength": bad_real(),
        "cost_weight": BAD_COST_WEIGHT,
        "embedder": BAD_EMBEDDER,
        "random_state": BAD_SEED,
        "n_init": bad_int(1),
        "init_temperature": bad_real(low_inclusive=False, high=1e4),
        "learning_rate": bad_real(low_inclusive=False, high=10.0),
        "l2": bad_real(high=1e4),
        "max_epochs": bad_int(0),
        "patience": bad_int(1),
        "holdout_fraction": st.one_of(bad_real(), st.floats(1.0, 1e9)),
        "batch_size": bad_int(1),
    },
    DifficultyRouter: {
        "n_factors": bad_int(0),
        "n_clusters": bad_int(0),
        "cost_weight": BAD_COST_WEIGHT,
        "embedder": BAD_EMBEDDER,
        "random_state": BAD_SEED,
        "n_init": bad_int(1),
        "em_iter": bad_int(1),
        "prior_folds": st.one_of(bad_int(0), st.just(1)),
    },
    ZeroRouter: {"cost_weight": BAD_COST_WEIGHT, "embedder": BAD_EMBEDDER},
    KNNRouter: {"n_neighbors": bad_int(1), "cost_weight": BAD_COST_WEIGHT, "embedder": BAD_EMBEDDER},
}


def test_every_constructor_parameter_is_covered():
    for cls, bad in BAD_PARAMS.items():
        assert set(bad) == set(cls._get_param_names()), cls.__name__


# -- data ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(mmlu_small, mmlu_embeddings):
    tr, val = mmlu_small["train"], mmlu_small["val"]
    return {
        "x": mmlu_embeddings["train"][:N_TR],
        "xv": mmlu_embeddings["val"][:N_VAL],
        "ytr": tr.correctness[:N_TR],
        "yval": val.correctness[:N_VAL],
        "names": val.model_names,
        "cost": val.cost[:N_VAL] if val.cost is not None else None,
    }


def _fit_kwargs(cls: type, data, params: dict) -> dict:
    kw = {"embeddings": data["x"], "validation_embeddings": data["xv"]}
    if cls is DifficultyRouter or (cls is UniRouter and params.get("method") == "learned"):
        kw.update(train_correctness=data["ytr"], validation_correctness=data["yval"])
    if cls in (ZeroRouter, KNNRouter):
        kw.pop("embeddings")
    return kw


@pytest.fixture(scope="module")
def routers(data):
    """One fitted router of each kind, every model of the slice added from its labels and costs."""
    out = {}
    for cls, params in (
        (UniRouter, {"n_clusters": 4, "random_state": 0}),
        (UniRouter, {"n_clusters": 4, "random_state": 0, "method": "learned", "max_epochs": 3}),
        (DifficultyRouter, {"n_factors": 2, "random_state": 0, "em_iter": 5}),
        (ZeroRouter, {}),
        (KNNRouter, {"n_neighbors": 5}),
    ):
        with warnings.catch_warnings():  # em_iter=5 stops the prior's EM early, on purpose (speed)
            warnings.simplefilter("ignore", ConvergenceWarning)
            r = cls(**params, embedder="test-embedder").fit(**_fit_kwargs(cls, data, params))
        for j, name in enumerate(data["names"]):
            cost = data["cost"][:, j] if data["cost"] is not None else 0.001 * (j + 1)
            r.add_model(name, correctness=data["yval"][:, j], cost=cost)
        out[f"{cls.__name__}-{params.get('method', '')}"] = r
    return out


def _refused(fn, *args, **kwargs) -> InvalidInputError:
    """``fn`` must raise InvalidInputError (and nothing else) with a message of some length."""
    try:
        fn(*args, **kwargs)
    except InvalidInputError as e:
        assert len(str(e)) > 20, str(e)
        return e
    except Exception as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(e).__name__} is not a typed InvalidInputError: {e}")
    pytest.fail("the bad value was accepted")


# -- constructors store, fit validates -----------------------------------------------------------
def _check_param(cls, param, value, data):
    params = {param: value}
    if param != "embedder":
        params["embedder"] = "test-embedder"
    router = cls(**params)  # constructors only store (scikit-learn contract): never raises
    assert getattr(router, param) is value
    err = _refused(router.fit, **_fit_kwargs(cls, data, params))
    assert param in str(err), f"the message should name {param!r}: {err}"


# pytest-parametrised hypothesis test (the fixture is module-scoped, hence the suppressed health check)
@pytest.mark.parametrize("cls,param", [(c, p) for c, ps in BAD_PARAMS.items() for p in ps], ids=lambda v: getattr(v, "__name__", v))
@FAST
@given(hdata=st.data())
def test_fit_refuses_bad_parameter(data, cls, param, hdata):
    value = hdata.draw(BAD_PARAMS[cls][param], label=param)
    _check_param(cls, param, value, data)


# -- learned-map settings that pass the checks never escape as torch errors ----------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    learning_rate=st.floats(1e-6, 10.0),
    init_temperature=st.floats(1e-6, 1e4),
    l2=st.floats(0.0, 1e4),
    batch_size=st.integers(1, 200),
    holdout_fraction=st.floats(0.0, 0.99),
)
def test_learned_map_in_range_settings_train_or_fail_typed(data, learning_rate, init_temperature, l2, batch_size, holdout_fraction):
    router = UniRouter(
        n_clusters=3,
        method="learned",
        random_state=0,
        embedder="test-embedder",
        learning_rate=learning_rate,
        init_temperature=init_temperature,
        l2=l2,
        max_epochs=2,
        batch_size=batch_size,
        holdout_fraction=holdout_fraction,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            router.fit(**_fit_kwargs(UniRouter, data, {"method": "learned"}))
        except UniRouterError:
            return
    assert np.isfinite(router.theta_).all() and np.isfinite(router.bias_).all()
    assert np.isfinite(router.predict(embeddings=data["xv"][:5])[0]).all() if router.models_ else True


@pytest.mark.parametrize("value", [1e38, 1e30, 1e12])
def test_huge_learning_rate_is_refused_not_a_torch_error(data, value):
    router = UniRouter(n_clusters=3, method="learned", random_state=0, embedder="test-embedder", learning_rate=value, max_epochs=3)
    err = _refused(router.fit, **_fit_kwargs(UniRouter, data, {"method": "learned"}))
    assert "learning_rate" in str(err)


def test_a_torch_error_in_training_becomes_typed(data, monkeypatch):
    """Whatever torch raises while training the learned map surfaces as InvalidInputError, chained."""
    import torch

    def boom(*a, **k):
        raise RuntimeError("torch: simulated failure inside the optimiser")

    monkeypatch.setattr(torch.optim.Adam, "step", boom)
    router = UniRouter(n_clusters=3, method="learned", random_state=0, embedder="test-embedder", max_epochs=2)
    err = _refused(router.fit, **_fit_kwargs(UniRouter, data, {"method": "learned"}))
    assert isinstance(err.__cause__, RuntimeError)
    assert not hasattr(router, "centroids_")  # nothing half-fitted is left behind


# -- route / route_batch / choose / predict -------------------------------------------------------
BAD_EMBEDDINGS = st.one_of(
    st.text(min_size=1, max_size=5),
    st.just([["a", "b"]]),
    st.just([[0.1, 0.2], [0.3]]),  # ragged
    st.just(np.full((2, 384), np.nan, dtype=np.float32)),
    st.just(np.full((1, 384), np.inf)),
    st.just(np.zeros((2, 3, 384))),
    st.just(object()),
)
BAD_PROMPT = st.one_of(st.integers(), st.none(), st.just(b"bytes"), st.just("   "), st.just("a\ud800b"), st.lists(st.text(min_size=1), max_size=2))
BAD_MODELS = st.one_of(st.integers(), st.floats(allow_nan=True), st.lists(st.integers(), min_size=1, max_size=2), st.just(object()))
KINDS = ["UniRouter-", "UniRouter-learned", "DifficultyRouter-", "ZeroRouter-", "KNNRouter-"]


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(cw=bad_real(allow_none=True), emb=BAD_EMBEDDINGS, prompt=BAD_PROMPT, models=BAD_MODELS)
def test_route_and_choose_refuse_bad_input(routers, data, kind, cw, emb, prompt, models):
    r = routers[kind]
    good = data["xv"][:3]
    _refused(r.route, embedding=good[0], cost_weight=cw)
    _refused(r.route_batch, embeddings=good, cost_weight=cw)
    _refused(r.choose, good, cw)
    _refused(r.route, embedding=emb)
    _refused(r.route_batch, embeddings=emb)
    _refused(r.choose, emb, 0.0)
    _refused(r.predict, embeddings=emb)
    _refused(r.route, prompt)
    if kind != "ZeroRouter-":  # the prompt-blind router takes embeddings of any dimension
        _refused(r.route_batch, embeddings=np.zeros((2, 7), dtype=np.float32))
    _refused(r.route, embedding=good[0], models=models)
    _refused(r.route_batch, embeddings=good, exclude=models)


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(cw=bad_real(allow_none=True))
def test_a_bad_default_cost_weight_set_after_fit_is_refused_at_route(routers, data, kind, cw):
    r = routers[kind]
    old = r.cost_weight
    try:
        r.set_params(cost_weight=cw)
        err = _refused(r.route_batch, embeddings=data["xv"][:2])
    finally:
        r.set_params(cost_weight=old)
    assert "cost_weight" in str(err)


@pytest.mark.parametrize("kind", ["ZeroRouter-"])
def test_zero_router_checks_prompts_it_never_embeds(routers, kind):
    r = routers[kind]
    _refused(r.route, 123)
    _refused(r.route_batch, 5)
    _refused(r.route_batch, ["ok", ""])


# -- calibration ----------------------------------------------------------------------------------
TARGET_BAD = {
    "budget": bad_real(allow_none=True),
    "quality_floor": st.one_of(bad_real(allow_none=True), st.floats(1.0, 1e6, exclude_min=True)),
    "max_quality_drop": st.one_of(bad_real(allow_none=True), st.floats(1.0, 1e6, exclude_min=True)),
    "max_top_share": st.one_of(bad_real(allow_none=True), st.floats(1.0, 1e6, exclude_min=True)),
}


@pytest.mark.parametrize("target", list(TARGET_BAD))
@pytest.mark.parametrize("kind", ["UniRouter-", "KNNRouter-"])
@FAST
@given(hdata=st.data())
def test_calibrate_refuses_bad_targets(routers, data, kind, target, hdata):
    r = routers[kind]
    value = hdata.draw(TARGET_BAD[target], label=target)
    err = _refused(calibrate_cost_weight, r, embeddings=data["xv"], **{target: value})
    assert target in str(err)
    _refused(r.calibrate, embeddings=data["xv"], **{target: value})


@FAST
@given(
    n_folds=st.one_of(bad_int(2), st.just(1)),
    random_state=BAD_SEED,
    honest=st.one_of(st.text(max_size=3), st.integers(2, 5), st.just(None)),
)
def test_calibrate_refuses_bad_options(routers, data, n_folds, random_state, honest):
    r = routers["UniRouter-"]
    for key, value in (("n_folds", n_folds), ("random_state", random_state), ("honest", honest)):
        kw = {"honest": True, key: value}
        err = _refused(calibrate_cost_weight, r, embeddings=data["xv"], quality_floor=0.05, **kw)
        assert key in str(err), str(err)


def test_calibrate_refuses_what_is_not_a_router(data):
    _refused(calibrate_cost_weight, object(), embeddings=data["xv"], budget=0.01)
    _refused(calibrate_cost_weight, None, embeddings=data["xv"], budget=0.01)


def test_calibrate_accepts_numpy_scalars(routers, data):
    lam = calibrate_cost_weight(routers["UniRouter-"], embeddings=data["xv"], quality_floor=np.float32(0.2))
    assert lam >= 0


# -- RoutingOptions -------------------------------------------------------------------------------
OPTION_BAD = {
    "cost_weight": bad_real(allow_none=True),
    "budget": bad_real(allow_none=True, low_inclusive=False),
    "quality_floor": st.one_of(bad_real(allow_none=True), st.floats(1.0, 1e6, exclude_min=True)),
    "max_top_share": st.one_of(bad_real(allow_none=True), st.floats(1.0, 1e6, exclude_min=True)),
    "switch_cost": bad_real(allow_none=True),
    "call_timeout": st.one_of(bad_real(allow_none=True, low_inclusive=False), st.just(threading.TIMEOUT_MAX * 2), st.just(1e300)),
    "max_fallbacks": bad_int(0).filter(lambda v: v is not None),
    "budget_pacing": st.one_of(st.text(max_size=3), st.integers(2, 9), st.floats(allow_nan=True)),
}


@pytest.mark.parametrize("key", list(OPTION_BAD))
@FAST
@given(hdata=st.data())
def test_routing_options_refuse_bad_values_typed(key, hdata):
    value = hdata.draw(OPTION_BAD[key], label=key)
    for make in (RoutingOptions.parse, lambda d: RoutingOptions(**d), lambda d: RoutingOptions().merged(d)):
        err = _refused(make, {key: value})
        assert key in str(err), str(err)


def test_routing_options_good_values_still_pass():
    o = RoutingOptions(cost_weight=np.float64(0.5), budget=1, quality_floor=0.9, max_fallbacks=np.int64(3), call_timeout=30)
    assert o.cost_weight == 0.5 and o.budget == 1.0 and o.max_fallbacks == 3
    assert RoutingOptions.parse({"cost_weight": 0, "budget_pacing": False}).cost_weight == 0.0
