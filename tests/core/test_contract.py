"""The router contract, once for every router class (the sklearn ``test_common`` idea).

UniRouter (kmeans and learned) always; the ``unirouter.routers.baselines`` routers when that module imports.
Each case: ``__init__`` stores parameters and nothing else, ``fit`` returns ``self``, every method that
needs fitted state raises ``NotFittedError`` before ``fit``, save/load keeps decisions identical, the
same seed gives the same output, and ``get_params``/``set_params`` follow scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
from unirouter import NotFittedError, UniRouter

try:
    from unirouter.routers import baselines as _baselines
except ImportError:  # another engineer's module; included only when present
    _baselines = None

N_MODELS = 8
EMBEDDER = object()  # placeholder: replaced by the session embedder in `make`

CASES: list[tuple[str, type, dict]] = [
    (
        "UniRouter-kmeans",
        UniRouter,
        {"n_clusters": 8, "random_state": 0, "embedder": EMBEDDER},
    ),
    (
        "UniRouter-learned",
        UniRouter,
        {
            "n_clusters": 8,
            "method": "learned",
            "random_state": 0,
            "max_epochs": 8,
            "patience": 2,
            "learning_rate": 0.1,
            "embedder": EMBEDDER,
        },
    ),
]
if _baselines is not None:
    if hasattr(_baselines, "ZeroRouter"):
        CASES.append(("ZeroRouter", _baselines.ZeroRouter, {"cost_weight": 0.0}))
    if hasattr(_baselines, "KNNRouter"):
        CASES.append(
            (
                "KNNRouter",
                _baselines.KNNRouter,
                {"n_neighbors": 10, "embedder": EMBEDDER},
            )
        )

pytestmark = pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])


@pytest.fixture(scope="module")
def data(mmlu_small, mmlu_embeddings):
    train, val = mmlu_small["train"], mmlu_small["val"]
    names = val.model_names[:N_MODELS]
    return {
        "train": train,
        "val": val,
        "vs": val.validation_set(),
        "names": names,
        "x": mmlu_embeddings,
        "ytr": train.correctness[:, train.model_index(names)],
        "yval": val.correctness[:, val.model_index(names)],
    }


def make(case, embedder):
    _, cls, params = case
    params = {k: (embedder if v is EMBEDDER else v) for k, v in params.items()}
    return cls(**params), params


def fit(router, data):
    kwargs = {}
    if getattr(router, "method", None) == "learned":
        kwargs = {
            "train_correctness": data["ytr"],
            "validation_correctness": data["yval"],
        }
    out = router.fit(
        embeddings=data["x"]["train"],
        validation=data["vs"],
        validation_embeddings=data["x"]["val"],
        **kwargs,
    )
    return out


def fit_and_add(router, data):
    fit(router, data)
    for j, name in enumerate(data["names"]):
        router.add_model(
            name,
            correctness=data["yval"][:, j],
            cost=data["val"].cost[:, data["val"].model_names.index(name)],
        )
    return router


def decisions(router, x, lam):
    return [
        (d.model, d.ranked, d.predicted_error.tolist(), d.expected_cost.tolist())
        for d in router.route_batch(embeddings=x, cost_weight=lam)
    ]


_cache: dict[str, object] = {}


@pytest.fixture()
def fitted(case, data, embedder):
    """One fitted router per case, built once; read-only (use ``fitted_copy`` to change it)."""
    if case[0] not in _cache:
        _cache[case[0]] = fit_and_add(make(case, embedder)[0], data)
    return _cache[case[0]]


@pytest.fixture()
def fitted_copy(fitted, embedder, tmp_path):
    fitted.save(tmp_path / "copy")
    return type(fitted).load(tmp_path / "copy", embedder=embedder)


def test_init_stores_params_and_does_nothing_else(case, embedder):
    router, params = make(case, embedder)
    got = router.get_params()
    for k, v in params.items():
        assert got[k] is v or got[k] == v
    assert set(vars(router)) == set(got)  # no fitted or hidden state yet
    assert not [k for k in vars(router) if k.endswith("_")]
    assert type(router).__name__ in repr(router)


def test_fit_returns_self(case, data, embedder):
    router, _ = make(case, embedder)
    assert fit(router, data) is router
    assert router.models_ == []


@pytest.mark.parametrize(
    "use",
    [
        lambda r, x: r.route(embedding=x[0]),
        lambda r, x: r.route_batch(embeddings=x),
        lambda r, x: r.predict(embeddings=x),
        lambda r, x: r.choose(x, 0.0),
        lambda r, x: r.add_model("m", correctness=[1.0], cost=0.1),
        lambda r, x: r.remove_model("m"),
        lambda r, x: r.get_profile("m"),
        lambda r, x: r.models_,
        lambda r, x: r.profiles_,
        lambda r, x: r.save("never-written"),
    ],
    ids=[
        "route",
        "route_batch",
        "predict",
        "choose",
        "add_model",
        "remove_model",
        "get_profile",
        "models_",
        "profiles_",
        "save",
    ],
)
def test_not_fitted_error_before_fit(case, embedder, data, use, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    router, _ = make(case, embedder)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        use(router, data["x"]["test"][:3])
    assert list(tmp_path.iterdir()) == []


def test_save_load_keeps_decisions(case, fitted, data, embedder, tmp_path):
    fitted.save(tmp_path / "r")
    back = type(fitted).load(tmp_path / "r", embedder=embedder)
    assert type(back) is type(fitted) and back.models_ == fitted.models_
    assert back.get_params().keys() == fitted.get_params().keys()
    x = data["x"]["test"]
    for lam in (0.0, 10.0, 1e6):
        assert decisions(back, x, lam) == decisions(fitted, x, lam)
        np.testing.assert_array_equal(back.choose(x, lam), fitted.choose(x, lam))


def test_same_seed_same_output(case, fitted, data, embedder):
    again = fit_and_add(make(case, embedder)[0], data)
    x = data["x"]["test"]
    for lam in (0.0, 10.0):
        assert decisions(again, x, lam) == decisions(fitted, x, lam)


def test_get_params_set_params(case, fitted_copy, embedder):
    fitted = fitted_copy
    params = fitted.get_params()
    assert fitted.set_params(cost_weight=2.5) is fitted
    assert (
        fitted.get_params()["cost_weight"] == 2.5
        and fitted.route_batch(embeddings=np.zeros((1, 384), np.float32) + 0.05)[
            0
        ].cost_weight
        == 2.5
    )
    with pytest.raises(ValueError, match="Invalid parameter 'no_such_param'"):
        fitted.set_params(no_such_param=1)
    clone = type(fitted)(**params)  # sklearn-style clone: same parameters, unfitted
    assert clone.get_params().keys() == params.keys()
    with pytest.raises(NotFittedError):
        _ = clone.models_


def test_add_and_remove_model_leave_the_fit_alone(case, fitted_copy, data):
    fitted = fitted_copy
    state = {
        k: v
        for k, v in vars(fitted).items()
        if k.endswith("_") and isinstance(v, np.ndarray)
    }
    before = decisions(fitted, data["x"]["test"][:20], 0.0)
    fitted.add_model("extra", correctness=np.zeros(len(data["vs"])), cost=1e-12)
    fitted.remove_model("extra")
    for k, v in state.items():
        assert getattr(fitted, k) is v
    assert decisions(fitted, data["x"]["test"][:20], 0.0) == before
