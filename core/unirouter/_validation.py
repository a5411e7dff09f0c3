"""Input checks shared by every module. Each check raises a typed error that says what to fix."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from unirouter.exceptions import InvalidInputError, NotFittedError

__all__ = [
    "as_rng",
    "check_cost",
    "check_cost_weight",
    "check_costs",
    "check_bool",
    "check_choice",
    "check_embeddings",
    "check_is_fitted",
    "check_known_labels",
    "check_model_name",
    "check_prompt",
    "check_prompts",
    "check_real",
    "check_scores",
]


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_prompt(prompt: Any, *, what: str = "prompt") -> str:
    """Return ``prompt`` if it is a non-blank string, else raise :class:`InvalidInputError`."""
    if not isinstance(prompt, str):
        msg = f"{what} must be a string. Got {type(prompt).__name__}: {prompt!r:.80}."
        raise InvalidInputError(msg)
    if not prompt.strip():
        msg = f"{what} must contain text; got an empty or whitespace-only string."
        raise InvalidInputError(msg)
    bad = _SURROGATE.search(prompt)
    if bad is not None:
        msg = (
            f"{what} contains a lone surrogate {bad.group()!r} at position {bad.start()} (a truncated emoji or a "
            "bad \\u escape); it is not valid Unicode text. Decode the text with errors='replace' or fix its source."
        )
        raise InvalidInputError(msg)
    return prompt


def check_prompts(prompts: Any, *, what: str = "prompts", allow_empty_list: bool = False) -> list[str]:
    """Return ``prompts`` as a list of non-blank strings.

    A single string is refused (it would otherwise be iterated character by character).
    """
    if isinstance(prompts, (str, bytes)):
        msg = f"{what} must be a list of strings, not a single {type(prompts).__name__}. Wrap it: [{what[:-1]}]."
        raise InvalidInputError(msg)
    if not isinstance(prompts, Iterable):
        msg = f"{what} must be a list of strings. Got {type(prompts).__name__}."
        raise InvalidInputError(msg)
    out = list(prompts)
    if not out and not allow_empty_list:
        msg = f"{what} is empty; pass at least one prompt."
        raise InvalidInputError(msg)
    for i, p in enumerate(out):
        check_prompt(p, what=f"{what}[{i}]")
    return out


def _check_vector(values: Any, *, n: int | None, what: str, allow_nan: bool, scores: bool) -> np.ndarray:
    """The checks shared by :func:`check_scores` (in [0, 1]) and :func:`check_costs` (>= 0)."""
    valid = "numbers in [0, 1] (NaN for missing)" if scores else "numbers >= 0"
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        msg = f"{what} must be {valid}. Could not convert: {e}."
        raise InvalidInputError(msg) from e
    if arr.ndim != 1:
        unit = "score per validation prompt" if scores else "cost per prompt"
        msg = f"{what} must be one-dimensional (one {unit}). Got shape {arr.shape}."
        raise InvalidInputError(msg)
    if n is not None and arr.shape[0] != n:
        if scores:
            msg = f"{what} has {arr.shape[0]} entries but the validation set has {n} prompts; give one score per prompt, in order."
        else:
            msg = f"{what} has {arr.shape[0]} entries but {n} were expected (one per validation prompt)."
        raise InvalidInputError(msg)
    if np.isinf(arr).any():
        finite = "scores must be finite numbers in [0, 1] (NaN for missing)" if scores else "costs must be finite numbers >= 0"
        msg = f"{what} contains inf; {finite}."
        raise InvalidInputError(msg)
    nan = np.isnan(arr)
    if nan.any() and not allow_nan:
        fix = "missing values are not allowed here" if scores else "give a finite cost >= 0"
        msg = f"{what} contains NaN at position {int(np.argmax(nan))}; {fix}."
        raise InvalidInputError(msg)
    bad = (~nan) & ((arr < 0) | (arr > 1)) if scores else (~nan) & (arr < 0)
    if bad.any():
        i = int(np.argmax(bad))
        rule = "must lie in [0, 1]" if scores else "must be >= 0"
        msg = f"{what} {rule}. Got {float(arr[i])!r} at position {i}."
        raise InvalidInputError(msg)
    if nan.all():
        tail = "; the model needs at least one scored prompt" if scores else ""
        msg = f"{what} has no observed value (all missing){tail}."
        raise InvalidInputError(msg)
    return arr


def check_scores(scores: Any, *, n: int | None = None, what: str = "correctness", allow_nan: bool = True) -> np.ndarray:
    """Quality scores in [0, 1] (0/1 correctness or graded); NaN marks a missing cell."""
    return _check_vector(scores, n=n, what=what, allow_nan=allow_nan, scores=True)


def check_known_labels(
    train_correctness: Any, validation_correctness: Any, n_train: int, n_val: int, *, needed_by: str
) -> tuple[np.ndarray, np.ndarray]:
    """Known LLMs' quality on the training and validation prompts: 2-D, same models, in [0, 1] or NaN."""
    if train_correctness is None or validation_correctness is None:
        msg = f"{needed_by} needs train_correctness (n_train, M) and validation_correctness (n_val, M) of known LLMs."
        raise InvalidInputError(msg)
    ytr = np.asarray(train_correctness, dtype=np.float64)
    yval = np.asarray(validation_correctness, dtype=np.float64)
    if ytr.ndim != 2 or yval.ndim != 2 or ytr.shape[1] != yval.shape[1] or ytr.shape[1] < 1:
        msg = f"train_correctness and validation_correctness must be 2-D with the same models (columns). Got {ytr.shape} and {yval.shape}."
        raise InvalidInputError(msg)
    if ytr.shape[0] != n_train or yval.shape[0] != n_val:
        msg = (
            f"train_correctness has {ytr.shape[0]} rows for {n_train} training prompts and "
            f"validation_correctness {yval.shape[0]} rows for {n_val} validation prompts."
        )
        raise InvalidInputError(msg)
    for name, y in (("train_correctness", ytr), ("validation_correctness", yval)):
        obs = y[~np.isnan(y)]
        if np.isinf(y).any() or ((obs < 0) | (obs > 1)).any():
            msg = f"{name} must hold scores in [0, 1] (NaN for missing)."
            raise InvalidInputError(msg)
    return ytr, yval


def check_cost(cost: Any, *, what: str = "cost") -> float:
    """A single finite cost >= 0."""
    if isinstance(cost, bool) or not isinstance(cost, (Real, np.floating, np.integer)):
        msg = f"{what} must be a finite number >= 0. Got {type(cost).__name__}: {cost!r:.60}."
        raise InvalidInputError(msg)
    c = float(cost)
    if not math.isfinite(c) or c < 0:
        msg = f"{what} must be a finite number >= 0. Got {c!r}."
        raise InvalidInputError(msg)
    return c


def check_costs(costs: Any, *, n: int | None = None, what: str = "cost", allow_nan: bool = True) -> np.ndarray:
    """Per-query costs: finite and >= 0; NaN marks a missing cell."""
    return _check_vector(costs, n=n, what=what, allow_nan=allow_nan, scores=False)


def check_cost_weight(cost_weight: Any) -> float:
    """The trade-off lambda: a finite number >= 0."""
    return check_cost(cost_weight, what="cost_weight")


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        msg = f"model name must be a non-empty string. Got {name!r}."
        raise InvalidInputError(msg)
    return name


def check_embeddings(x: Any, *, dim: int | None = None, what: str = "embeddings") -> np.ndarray:
    """A 2-D float32 array of finite embeddings (rows are prompts)."""
    if isinstance(x, (str, bytes)):
        msg = f"{what} must be a numeric array (n_prompts, dim), not a {type(x).__name__}; pass prompts to route()/route_batch()."
        raise InvalidInputError(msg)
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        msg = f"{what} must be a numeric array (n_prompts, dim). Could not convert: {e}."
        raise InvalidInputError(msg) from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        msg = f"{what} must be a 2-D array (n_prompts, dim). Got shape {arr.shape}."
        raise InvalidInputError(msg)
    if dim is not None and arr.shape[1] != dim:
        msg = f"{what} have dimension {arr.shape[1]} but the router's embedder has dimension {dim}."
        raise InvalidInputError(msg)
    if not np.isfinite(arr).all():
        msg = f"{what} contain NaN or inf."
        raise InvalidInputError(msg)
    return arr


def check_is_fitted(obj: Any, attribute: str = "centroids_") -> None:
    """Raise :class:`NotFittedError` unless ``obj`` has the fitted attribute."""
    if getattr(obj, attribute, None) is None:
        msg = (
            f"This {type(obj).__name__} instance is not fitted yet. "
            "Call 'fit' with appropriate arguments before using this router."
        )
        raise NotFittedError(msg)


def check_int(value: Any, name: str, *, low: int) -> None:
    """An integer parameter (numpy ints too, never a bool) of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        msg = f"{name} must be an int >= {low}. Got {value!r:.60}."
        raise InvalidInputError(msg)


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real parameter (numpy scalars too, never a bool or a string) in [low, high].

    ``low_open``/``high_open`` exclude the bound itself. Returns the value as a float.
    """
    if low is not None and high is not None:
        rng = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        rng = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        rng = f"{'<' if high_open else '<='} {high:g}"
    else:
        rng = "(not NaN or inf)"
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        msg = f"{name} must be a finite number {rng}. Got {type(value).__name__}: {value!r:.60}."
        raise InvalidInputError(msg)
    v = float(value)
    if (
        not math.isfinite(v)
        or (low is not None and (v < low or (low_open and v == low)))
        or (high is not None and (v > high or (high_open and v == high)))
    ):
        msg = f"{name} must be a finite number {rng}. Got {v!r}."
        raise InvalidInputError(msg)
    return v


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """One of a few allowed values (compared by equality, hashable or not)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        msg = f"{name} must be one of {tuple(choices)}. Got {value!r:.60}."
        raise InvalidInputError(msg)
    return value


def check_bool(value: Any, name: str) -> bool:
    """A real bool (numpy's too): a string such as 'false' would otherwise count as True."""
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{name} must be True or False. Got {type(value).__name__}: {value!r:.60}."
        raise InvalidInputError(msg)
    return bool(value)


def check_random_state(random_state: Any) -> None:
    """A seed is an int >= 0, a numpy Generator or None (every random choice in the library takes one)."""
    rs = random_state
    if not (rs is None or isinstance(rs, np.random.Generator) or (isinstance(rs, Integral) and not isinstance(rs, bool) and rs >= 0)):
        msg = f"random_state must be an int >= 0, a numpy Generator or None. Got {rs!r}."
        raise InvalidInputError(msg)


def as_rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """Turn a seed (or None, or a Generator) into a numpy Generator."""
    check_random_state(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def unique_names(names: Sequence[str], *, what: str = "model names") -> list[str]:
    seen: set[str] = set()
    for n in names:
        check_model_name(n)
        if n in seen:
            msg = f"{what} must be unique; {n!r} appears more than once."
            raise InvalidInputError(msg)
        seen.add(n)
    return list(names)
