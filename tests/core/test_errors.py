"""Bad input: every case gets a specific, typed error that says what to fix, and nothing changes.

One parametrised row per bad input. Rows get a context with the shared fitted router (K=8, MMLU-Pro
models), a valid correctness vector ``y`` (150 validation prompts) and test embeddings ``x``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from unirouter import (
    DuplicateModelError,
    InvalidInputError,
    UniRouter,
    UniRouterError,
    UnknownModelError,
    ValidationSet,
)
from unirouter.data.datasets import split_indices

NAN, INF = float("nan"), float("inf")
pytestmark = pytest.mark.filterwarnings(
    "ignore::unirouter.UniRouterWarning"
)  # tiny random fits leave empty clusters


def _unit(n: int, d: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fit(router: UniRouter, n_train: int = 20, n_val: int = 6, **kw):
    return router.fit(
        embeddings=kw.pop("embeddings", _unit(n_train)),
        validation=kw.pop("validation", [f"v{i}" for i in range(n_val)]),
        validation_embeddings=kw.pop("validation_embeddings", _unit(n_val, seed=1)),
        **kw,
    )


def _with(y, i, v):
    y = np.array(y, dtype=float)
    y[i] = v
    return y


INVALID = [
    # prompts
    (
        "empty prompt",
        lambda c: c.r.route(""),
        "prompt must contain text; got an empty or whitespace-only string",
    ),
    ("whitespace prompt", lambda c: c.r.route("  \n\t"), "empty or whitespace-only"),
    ("non-string prompt", lambda c: c.r.route(42), "prompt must be a string. Got int"),
    ("bytes prompt", lambda c: c.r.route(b"hi"), "prompt must be a string. Got bytes"),
    (
        "single string as batch",
        lambda c: c.r.route_batch("one prompt"),
        "must be a list of strings, not a single str",
    ),
    ("empty batch", lambda c: c.r.route_batch([]), "prompts is empty"),
    (
        "non-string in batch",
        lambda c: c.r.route_batch(["ok", None]),
        r"prompts\[1\] must be a string. Got NoneType",
    ),
    (
        "blank in batch",
        lambda c: c.r.route_batch(["ok", " "]),
        r"prompts\[1\] must contain text",
    ),
    # flat costs
    (
        "NaN cost",
        lambda c: c.r.add_model("new", correctness=c.y, cost=NAN),
        "cost of 'new' must be a finite number >= 0. Got nan",
    ),
    (
        "inf cost",
        lambda c: c.r.add_model("new", correctness=c.y, cost=INF),
        "cost of 'new' must be a finite number >= 0. Got inf",
    ),
    (
        "negative cost",
        lambda c: c.r.add_model("new", correctness=c.y, cost=-0.1),
        "cost of 'new' must be a finite number >= 0. Got -0.1",
    ),
    (
        "string cost",
        lambda c: c.r.add_model("new", correctness=c.y, cost="cheap"),
        "finite number >= 0. Got str",
    ),
    (
        "boolean cost",
        lambda c: c.r.add_model("new", correctness=c.y, cost=True),
        "finite number >= 0. Got bool",
    ),
    # per-prompt costs
    (
        "negative per-prompt cost",
        lambda c: c.r.add_model(
            "new", correctness=c.y, cost=_with(np.full(150, 0.1), 3, -1)
        ),
        "must be >= 0. Got -1.0 at position 3",
    ),
    (
        "inf per-prompt cost",
        lambda c: c.r.add_model(
            "new", correctness=c.y, cost=_with(np.full(150, 0.1), 0, INF)
        ),
        "contains inf",
    ),
    (
        "per-prompt costs too short",
        lambda c: c.r.add_model("new", correctness=c.y, cost=np.full(10, 0.1)),
        "has 10 entries but 150 were expected",
    ),
    (
        "all per-prompt costs missing",
        lambda c: c.r.add_model("new", correctness=c.y, cost=np.full(150, NAN)),
        "no observed value",
    ),
    # correctness
    (
        "correctness above 1",
        lambda c: c.r.add_model("new", correctness=_with(c.y, 0, 1.5), cost=0.1),
        r"must lie in \[0, 1\]. Got 1.5 at position 0",
    ),
    (
        "correctness below 0",
        lambda c: c.r.add_model("new", correctness=_with(c.y, 7, -0.5), cost=0.1),
        r"must lie in \[0, 1\]. Got -0.5 at position 7",
    ),
    (
        "inf correctness",
        lambda c: c.r.add_model("new", correctness=_with(c.y, 2, INF), cost=0.1),
        "contains inf",
    ),
    (
        "correctness too short",
        lambda c: c.r.add_model("new", correctness=c.y[:-1], cost=0.1),
        "has 149 entries but the validation set has 150 prompts",
    ),
    (
        "2-D correctness",
        lambda c: c.r.add_model("new", correctness=c.y[None], cost=0.1),
        "must be one-dimensional",
    ),
    (
        "all correctness missing",
        lambda c: c.r.add_model("new", correctness=np.full(150, NAN), cost=0.1),
        "no observed value",
    ),
    (
        "non-numeric correctness",
        lambda c: c.r.add_model("new", correctness=["right"] * 150, cost=0.1),
        "Could not convert",
    ),
    # add_model call shape
    (
        "empty model name",
        lambda c: c.r.add_model("", correctness=c.y, cost=0.1),
        "model name must be a non-empty string",
    ),
    (
        "non-string model name",
        lambda c: c.r.add_model(7, correctness=c.y, cost=0.1),
        "model name must be a non-empty string. Got 7",
    ),
    (
        "labels without cost",
        lambda c: c.r.add_model("new", correctness=c.y),
        "needs correctness=.*and cost=",
    ),
    (
        "labels and a model",
        lambda c: c.r.add_model("new", correctness=c.y, cost=0.1, model=print),
        "either correctness=",
    ),
    (
        "profiler options without a model",
        lambda c: c.r.add_model("new", correctness=c.y, cost=0.1, scorer="x"),
        "unexpected arguments without model=",
    ),
    # routing options
    (
        "negative cost weight",
        lambda c: c.r.route(embedding=c.x[0], cost_weight=-1.0),
        "cost_weight must be a finite number >= 0. Got -1.0",
    ),
    (
        "NaN cost weight",
        lambda c: c.r.route(embedding=c.x[0], cost_weight=NAN),
        "cost_weight must be a finite number >= 0. Got nan",
    ),
    (
        "embedding of another dimension",
        lambda c: c.r.route(embedding=np.ones(10)),
        "dimension 10 but the router's embedder has dimension 384",
    ),
    (
        "NaN embedding",
        lambda c: c.r.route_batch(
            embeddings=_with(c.x[:2].ravel(), 0, NAN).reshape(2, -1)
        ),
        "contain NaN or inf",
    ),
    (
        "3-D embeddings",
        lambda c: c.r.route_batch(embeddings=c.x[None]),
        "must be a 2-D array",
    ),
    # fitting
    (
        "K larger than the training set",
        lambda c: _fit(UniRouter(25)),
        "n_clusters=25 is larger than the number of training prompts \\(20\\)",
    ),
    ("K zero", lambda c: _fit(UniRouter(0)), "n_clusters must be an int >= 1. Got 0"),
    (
        "K as string",
        lambda c: _fit(UniRouter("8")),
        "n_clusters must be an int >= 1. Got '8'",
    ),
    (
        "K as bool",
        lambda c: _fit(UniRouter(True)),
        "n_clusters must be an int >= 1. Got True",
    ),
    (
        "unknown method",
        lambda c: _fit(UniRouter(2, method="svm")),
        "method must be one of \\('kmeans', 'learned'\\). Got 'svm'",
    ),
    (
        "negative prior strength",
        lambda c: _fit(UniRouter(2, prior_strength=-1)),
        "prior_strength must be a finite number >= 0",
    ),
    (
        "string random_state",
        lambda c: _fit(UniRouter(2, random_state="seed")),
        "random_state must be an int >= 0, a numpy Generator or None. Got 'seed'",
    ),
    (
        "negative random_state",
        lambda c: _fit(UniRouter(2, random_state=-3)),
        "random_state must be an int >= 0.*Got -3",
    ),
    (
        "fit without training prompts",
        lambda c: UniRouter(2).fit(validation=["a", "b"]),
        "fit needs the training prompts",
    ),
    (
        "fit without validation",
        lambda c: UniRouter(2).fit(embeddings=_unit(5)),
        "fit needs the validation prompts",
    ),
    (
        "validation rows mismatch",
        lambda c: _fit(UniRouter(2), validation_embeddings=_unit(5)),
        "validation_embeddings has 5 rows for 6 validation prompts",
    ),
    (
        "train/validation dims differ",
        lambda c: _fit(UniRouter(2), validation_embeddings=_unit(6, d=16)),
        "dimension 16 but training embeddings 384",
    ),
    (
        "single string as training prompts",
        lambda c: UniRouter(2).fit("one prompt", validation=["a"]),
        "not a single str",
    ),
    (
        "learned without labels",
        lambda c: _fit(UniRouter(2, method="learned")),
        "method='learned' needs train_correctness",
    ),
    (
        "labels for kmeans",
        lambda c: _fit(
            UniRouter(2),
            train_correctness=np.ones((20, 2)),
            validation_correctness=np.ones((6, 2)),
        ),
        "only used by method='learned'",
    ),
    (
        "learned labels out of range",
        lambda c: _fit(
            UniRouter(2, method="learned"),
            train_correctness=np.full((20, 2), 2.0),
            validation_correctness=np.ones((6, 2)),
        ),
        r"train_correctness must hold scores in \[0, 1\]",
    ),
    (
        "learned labels rows mismatch",
        lambda c: _fit(
            UniRouter(2, method="learned"),
            train_correctness=np.ones((19, 2)),
            validation_correctness=np.ones((6, 2)),
        ),
        "train_correctness has 19 rows for 20 training prompts",
    ),
    (
        "learned with one training LLM",
        lambda c: _fit(
            UniRouter(2, method="learned"),
            train_correctness=np.ones((20, 1)),
            validation_correctness=np.ones((6, 1)),
        ),
        "at least 2 training LLMs",
    ),
    # validation sets and splits
    (
        "duplicate validation prompts",
        lambda c: ValidationSet(["a", "b", "a"]),
        "validation prompts must be unique: prompt 2 repeats prompt 0",
    ),
    (
        "empty validation prompt",
        lambda c: ValidationSet(["a", ""]),
        "validation prompt 1 must contain text",
    ),
    (
        "references of wrong length",
        lambda c: ValidationSet(["a", "b"], references=["A"]),
        "references has 1 entries for 2 prompts",
    ),
    (
        "split fractions over 1",
        lambda c: split_indices(10, (0.7, 0.7)),
        "fractions must be positive and sum to at most 1",
    ),
]


@pytest.fixture()
def ctx(fitted_router, mmlu_small, mmlu_embeddings):
    return SimpleNamespace(
        r=fitted_router,
        y=mmlu_small["val"].correctness[:, 0],
        x=mmlu_embeddings["test"],
    )


@pytest.mark.parametrize(
    "call, match", [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_invalid_input_is_refused(ctx, call, match):
    pool_before = ctx.r._pool
    with pytest.raises(InvalidInputError, match=match):
        call(ctx)
    assert ctx.r._pool is pool_before  # nothing registered or changed


OTHER = [
    (
        "route to an unknown model",
        UnknownModelError,
        lambda c: c.r.route(embedding=c.x[0], models=["ghost"]),
        "model 'ghost' is not registered",
    ),
    (  # excluding an unknown model is no error (issue 19.2): tested in test_hardening.py
        "bad handle_unknown",
        InvalidInputError,
        lambda c: c.r.route(embedding=c.x[0], handle_unknown="skip"),
        "handle_unknown must be 'error' or 'ignore'",
    ),
    (
        "remove an unknown model",
        UnknownModelError,
        lambda c: c.r.remove_model("ghost"),
        "cannot remove 'ghost': not registered",
    ),
    (
        "profile of an unknown model",
        UnknownModelError,
        lambda c: c.r.get_profile("ghost"),
        "model 'ghost' is not registered",
    ),
    (
        "duplicate model name",
        DuplicateModelError,
        lambda c: c.r.add_model(c.r.models_[0], correctness=c.y, cost=0.1),
        "already registered; pass replace=True",
    ),
    (
        "no model left",
        UnknownModelError,
        lambda c: c.r.route(
            embedding=c.x[0], models=c.r.models_[:1], exclude=c.r.models_[:1]
        ),
        "no candidate model is left",
    ),
]


@pytest.mark.parametrize(
    "error, call, match", [row[1:] for row in OTHER], ids=[row[0] for row in OTHER]
)
def test_model_name_errors_are_typed(ctx, error, call, match):
    pool_before = ctx.r._pool
    with pytest.raises(error, match=match) as info:
        call(ctx)
    assert isinstance(info.value, UniRouterError)
    assert ctx.r._pool is pool_before


def test_unknown_model_error_carries_the_name_and_plain_message(ctx):
    with pytest.raises(
        LookupError
    ) as info:  # built-in base kept for old except clauses
        ctx.r.route(embedding=ctx.x[0], models=["ghost"])
    assert info.value.model == "ghost"
    assert str(info.value).startswith("model 'ghost'")  # not KeyError-style quoted


def test_routing_with_no_models_registered_says_how_to_fix():
    r = _fit(UniRouter(2, random_state=0))
    with pytest.raises(
        UnknownModelError,
        match=r"no models are registered with this router; add one with add_model",
    ):
        r.route(embedding=_unit(1)[0])
