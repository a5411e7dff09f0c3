"""Framework-neutral support for routing models in LangChain, LlamaIndex or any other framework.

The plugins are thin: they convert framework objects (messages, LLMs) to text and calls, and hand
everything else to :class:`CandidatePool`:

* the named candidate models, their costs, and profiling on add (through the core profiler);
* per-call routing options (:class:`RoutingOptions`: cost weight, budget, forced / allowed / excluded
  models, fallbacks), validated with typed errors;
* the decision for a text (sync, async, batched), priced for the prompt actually sent
  (:class:`unirouter.profiling.pricing.CallPricer`), and the walk down ``decision.ranked`` when the chosen
  model raises (bounded, recorded);
* the realised cost of each call (:meth:`CandidatePool.settle`), which keeps a budget on the traffic
  actually sent (:class:`unirouter.routers.pacing.BudgetPacer`);
* save/load of the router and the candidate table, so reloading never re-profiles.

Nothing here imports LangChain or LlamaIndex.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from unirouter._validation import check_prompt, check_prompts
from unirouter.exceptions import (
    AllModelsFailedError,
    DuplicateModelError,
    FailedAnswerError,
    InvalidInputError,
    PersistenceError,
    UnknownModelError,
)
from unirouter.profiles import ModelProfile

__all__ = ["CONFIG_KEYS", "Candidate", "CandidatePool", "RoutingOptions"]

T = TypeVar("T")
CONFIG_KEYS = (
    "cost_weight",
    "budget",
    "budget_pacing",
    "top_share_pacing",
    "quality_floor",
    "max_top_share",
    "force_model",
    "allowed_models",
    "excluded_models",
    "max_fallbacks",
    "is_failed_answer",
    "call_timeout",
    "session",
    "switch_cost",
)
_TARGETS = ("budget", "quality_floor", "max_top_share")
_CANDIDATES = "candidates.json"


_NUMBER_OPTIONS = ("cost_weight", "budget", "quality_floor", "max_top_share", "max_fallbacks", "call_timeout", "switch_cost")


def _typed_options_error(e: ValidationError, data: Mapping[str, Any]) -> InvalidInputError:
    """The first pydantic error as an InvalidInputError naming the option and the fix."""
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "options"
    got = data.get(str(err["loc"][0]), None) if err["loc"] else None
    if err["type"] == "extra_forbidden":
        msg = f"unknown routing option {key!r}; valid options: {list(CONFIG_KEYS)}."
    else:
        msg = f"routing option {key!r} is invalid: {err['msg']}. Got {got!r:.60}."
    return InvalidInputError(msg)


class RoutingOptions(BaseModel):
    """Routing knobs: set defaults on construction, override any of them per call.

    Attributes
    ----------
    cost_weight : float >= 0 or None
        lambda; None = the router's own ``cost_weight``.
    budget : float > 0 or None
        Target mean cost per call; turned into a cost weight by calibration on the router's
        validation prompts (cached per budget). Wins over ``cost_weight``.
    budget_pacing : bool, default True
        Keep the budget on the traffic actually sent: start from the calibrated cost weight and
        adapt it after every call from the realised cost (:class:`unirouter.routers.pacing.BudgetPacer`,
        one per budget and candidate set). False = the calibrated weight, which holds the budget
        only on traffic like the validation prompts.
    quality_floor : float in [0, 1] or None
        Minimum mean quality; the cheapest routing whose quality, measured out of fold on the
        validation prompts (:func:`unirouter.calibrate_cost_weight` with ``honest=True``), meets it.
    max_top_share : float in [0, 1] or None
        Share of calls to the most expensive candidate (the one with the highest mean expected cost
        on the validation prompts) not to exceed in the long run. Starts from the cost weight
        calibrated on the validation prompts and, with ``top_share_pacing``, adapts it after every
        call from whether the top model answered (a :class:`~unirouter.routers.pacing.BudgetPacer`
        on the realised share), so the share converges to the target on the traffic actually sent.
    top_share_pacing : bool, default True
        False = the calibrated weight only, which keeps the share only on traffic like the
        validation prompts (and may fall far below it elsewhere).
    force_model : str or None
        Always use this model (no fallback).
    allowed_models, excluded_models : list of str or None
    max_fallbacks : int >= 0
        How many next-best models to try when the chosen one raises or gives a failed answer.
    is_failed_answer : callable (text: str) -> bool, or None
        Declares what a failed answer is (e.g. a refusal), so the next model is tried. It is given
        the answer's text; answers carrying tool calls or no text (structured output, streams) are
        not judged. ``None`` = the default: an empty, whitespace-only or NUL-only text is a failure.
    call_timeout : float > 0 or None
        Seconds one model call may take before it counts as failed (``TimeoutError``) and the next
        model is tried. Async calls are cancelled (and abandoned if they ignore it); a sync call
        runs in a worker thread that is abandoned on timeout (Python cannot stop a thread).
    session : str or None
        A conversation or thread id (the LangChain plugin uses LangGraph's ``thread_id``). With
        ``switch_cost``, calls of one session stay on the model that answered the previous call.
    switch_cost : float >= 0 or None
        Sticky sessions: leave the session's previous model only when the chosen model's score
        (``predicted_error + cost_weight * expected_cost``) beats it by more than this, e.g. 0.02 =
        two points of predicted error. Staying keeps the provider's prompt cache of the conversation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_weight: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    budget_pacing: StrictBool = True
    top_share_pacing: StrictBool = True
    quality_floor: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_top_share: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    force_model: str | None = None
    allowed_models: tuple[str, ...] | None = None
    excluded_models: tuple[str, ...] | None = None
    max_fallbacks: int = Field(default=2, ge=0)
    is_failed_answer: Callable[[str], bool] | None = Field(default=None, exclude=True)
    call_timeout: float | None = Field(default=None, gt=0, le=threading.TIMEOUT_MAX, allow_inf_nan=False)
    session: str | None = None
    switch_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _typed_options_error(e, data) from None

    @field_validator(*_NUMBER_OPTIONS, mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any) -> Any:
        # pydantic's lax mode would read True as 1 and "0.5" as 0.5; a routing knob given as a bool or
        # a string is a mistake (a config value in the wrong place), so say so.
        if isinstance(value, (bool, np.bool_, str, bytes)):
            msg = f"must be a number, not {type(value).__name__}"
            raise ValueError(msg)
        return value

    @classmethod
    def parse(cls, value: RoutingOptions | Mapping[str, Any] | None) -> RoutingOptions:
        """Validate a mapping (e.g. a ``configurable`` dict); errors name the key and the fix."""
        if value is None:
            return cls()
        if isinstance(value, RoutingOptions):
            return value
        if not isinstance(value, Mapping):
            msg = f"routing options must be a mapping with keys {list(CONFIG_KEYS)}. Got {type(value).__name__}."
            raise InvalidInputError(msg)
        data = dict(value)
        check = data.get("is_failed_answer")
        if check is not None and not callable(check):
            msg = f"routing option 'is_failed_answer' must be a callable (text) -> bool, or None. Got {check!r:.60}."
            raise InvalidInputError(msg)
        for key in ("allowed_models", "excluded_models"):
            if isinstance(data.get(key), str):
                data[key] = (data[key],)
        try:
            return cls.model_validate(data, strict=False)
        except ValidationError as e:
            raise _typed_options_error(e, data) from None

    def merged(self, override: RoutingOptions | Mapping[str, Any] | None) -> RoutingOptions:
        """These options with the keys set in ``override`` replaced (per-call values win)."""
        if override is None:
            return self
        other = RoutingOptions.parse(override)
        return self.model_copy(update={k: getattr(other, k) for k in other.model_fields_set})


class Attempts(list):
    """The attempts record of a call (a list of ``{"model", "ok", "error"?}``) and, in ``settled``,
    what :meth:`CandidatePool.settle` reported for the successful one (realised cost, budget)."""

    settled: dict[str, Any]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.settled = {}


@dataclass(frozen=True)
class Candidate:
    """A routable model: the framework object, its profiling call, and its cost specification."""

    name: str
    model: Any
    call: Callable[[str], Awaitable[Any]] | Callable[[str], Any] | None
    cost: Any


def _cost_to_json(cost: Any) -> Any:
    if cost is None or isinstance(cost, (int, float)):
        return cost
    if isinstance(cost, BaseModel):
        return {"type": type(cost).__name__, **cost.model_dump()}
    msg = f"cost must be a number or a TokenPrice to be saved. Got {type(cost).__name__}."
    raise PersistenceError(msg)


def _cost_from_json(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "TokenPrice":
        from unirouter.profiling.profiler import TokenPrice

        return TokenPrice(**{k: v for k, v in value.items() if k != "type"})
    return value


# The candidates a running call resolves names against (see CandidatePool.get).
_IN_FLIGHT: contextvars.ContextVar[Mapping[str, Candidate] | None] = contextvars.ContextVar("unirouter_in_flight", default=None)


def answer_text(result: Any) -> str | None:
    """The text of a model's answer, or None when there is nothing to judge as text.

    Duck-typed so the core needs no framework: ``str``; LangChain messages (``.content``, a string
    or text blocks); LlamaIndex ``ChatResponse`` (``.message.content``) and ``CompletionResponse``
    (``.text``). An answer carrying tool calls, non-text content, a stream or structured output is
    not judged (None): an empty text next to a tool call is a real answer.
    """
    if isinstance(result, str):
        return result
    if getattr(result, "tool_calls", None) or getattr(result, "tool_call_chunks", None):
        return None
    message = getattr(result, "message", None)
    if message is not None and hasattr(message, "content"):
        if (getattr(message, "additional_kwargs", None) or {}).get("tool_calls"):
            return None
        result = message
    content = getattr(result, "content", None)
    if content is None and isinstance(getattr(result, "text", None), str):
        return result.text
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
            else:
                return None  # images, tool use, ...: not a text answer
        return "".join(parts)
    return None


def _is_blank(text: str) -> bool:
    return not text.replace("\x00", "").strip()


def _check_answer(name: str, result: Any, opts: RoutingOptions) -> None:
    """Raise FailedAnswerError if ``result`` is a failed answer under ``opts``."""
    text = answer_text(result)
    if text is None:
        return
    if opts.is_failed_answer is None:
        if _is_blank(text):
            msg = f"{name} returned an empty answer ({text[:20]!r}); trying the next model."
            raise FailedAnswerError(msg, model=name, answer=result)
        return
    if opts.is_failed_answer(text):
        msg = f"{name}'s answer was rejected by is_failed_answer ({text[:60]!r}); trying the next model."
        raise FailedAnswerError(msg, model=name, answer=result)


def _call_with_timeout(fn: Callable[[str], T], name: str, timeout: float) -> T:
    """``fn(name)`` in a daemon worker thread (same context variables), abandoned after ``timeout`` s."""
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = ctx.run(fn, name)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    worker = threading.Thread(target=work, name=f"unirouter-call-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        msg = f"{name} did not answer within {timeout:g} s (call_timeout)"
        raise TimeoutError(msg)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _all_failed(attempts: list[dict[str, Any]], errors: list[Exception]) -> AllModelsFailedError:
    tried = "; ".join(f"{a['model']}: {a['error']}" for a in attempts)
    err = AllModelsFailedError(f"all {len(attempts)} models tried failed ({tried})", errors, attempts=attempts)
    err.__cause__ = errors[-1]
    return err


class CandidatePool:
    """Named candidate models around a fitted router.

    Parameters
    ----------
    router : a fitted :class:`~unirouter.UniRouter` (or any BaseRouter)
    scorer : scorer or str, optional
        Grades responses during profiling (e.g. ``MultipleChoiceScorer()``).
    validation_set : ValidationSet, optional
        Defaults to the router's validation set.
    cache : ResponseCache or path, optional
        Keeps profiling responses on disk so re-adding a model costs no calls.
    defaults : RoutingOptions or mapping, optional
    profile_kwargs : dict, optional
        Passed to the profiler (``max_concurrency``, ``timeout``, ``max_retries``, ``progress``, ...).
    """

    def __init__(
        self,
        router: Any,
        *,
        scorer: Any = None,
        validation_set: Any = None,
        cache: Any = None,
        defaults: RoutingOptions | Mapping[str, Any] | None = None,
        profile_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        router._check_fitted()
        self.router = router
        self.scorer = scorer
        self.validation_set = validation_set
        self.cache = cache
        self.defaults = RoutingOptions.parse(defaults)
        self.profile_kwargs = dict(profile_kwargs or {})
        # Replaced, never mutated, under the lock: a reader holding it has one consistent snapshot.
        self._candidates: dict[str, Candidate] = {}
        self._lock = threading.RLock()
        self._budget_lams: dict[tuple[str, float, tuple[str, ...]], float] = {}
        # (target kind, value, sorted models) -> BudgetPacer ("max_top_share" pacers carry .top_model)
        self._pacers: dict[tuple[str, float, tuple[str, ...]], Any] = {}
        self._pricer: Any = None
        self._sessions: OrderedDict[str, str] = OrderedDict()  # session -> model that answered last
        self.savings: Any = None
        """A ``unirouter.integration.savings.SavingsLedger`` the plugins book every call in (None: no booking)."""

    def __getstate__(self) -> dict[str, Any]:
        """Picklable and deep-copyable (multiprocessing, ``model_copy(deep=True)``): the lock is recreated."""
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- candidates ----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._candidates)

    def get(self, name: str) -> Candidate:
        """The candidate ``name``.

        Inside :meth:`run_with_fallbacks` / :meth:`arun_with_fallbacks` a name resolves against the
        candidates of that call's snapshot, so a model removed while a call is in flight still
        answers that call.
        """
        cands = _IN_FLIGHT.get() or self._candidates
        if name not in cands:
            cands = self._candidates
        if name not in cands:
            msg = f"model {name!r} is not a candidate; candidates: {list(cands)}."
            raise UnknownModelError(msg, model=name)
        return cands[name]

    def _needs_profile(self, name: str, replace: bool) -> bool:
        return replace or name not in self.router._pool.profiles

    def _profile_args(self, call: Any, cost: Any) -> dict[str, Any]:
        if call is None:
            msg = "this model has no stored profile, so it needs a call to be profiled."
            raise InvalidInputError(msg)
        if self.scorer is None:
            msg = "profiling a new model needs a scorer (scorer=...) to grade its answers."
            raise InvalidInputError(msg)
        kwargs = {"scorer": self.scorer, "cost": cost, **self.profile_kwargs}
        if self.validation_set is not None:
            kwargs["validation_set"] = self.validation_set
        if self.cache is not None:
            kwargs["cache"] = self.cache
        return kwargs

    def _check_new(self, name: str, replace: bool) -> None:
        if not replace and name in self._candidates:
            msg = f"a model named {name!r} is already a candidate; pass replace=True to replace it."
            raise DuplicateModelError(msg, model=name)

    def add(self, name: str, model: Any, call: Any, *, cost: Any, replace: bool = False) -> ModelProfile:
        """Register ``model`` under ``name``; profile it through ``call`` unless the router already
        holds a profile for ``name`` (e.g. after loading). A taken name needs ``replace=True``."""
        self._check_new(name, replace)
        if self._needs_profile(name, replace):
            profile = self.router.add_model(name, model=call, replace=replace, **self._profile_args(call, cost))
        else:
            profile = self.router.get_profile(name)
        with self._lock:
            self._candidates = {**self._candidates, name: Candidate(name, model, call, cost)}
            self._budget_lams.clear()
            self._pacers.clear()
            self._pricer = None
        return profile

    async def aadd(self, name: str, model: Any, call: Any, *, cost: Any, replace: bool = False) -> ModelProfile:
        """Async :meth:`add`: profiling runs on the event loop."""
        self._check_new(name, replace)
        if self._needs_profile(name, replace):
            profile = await self.router.aadd_model(name, model=call, replace=replace, **self._profile_args(call, cost))
        else:
            profile = self.router.get_profile(name)
        with self._lock:
            self._candidates = {**self._candidates, name: Candidate(name, model, call, cost)}
            self._budget_lams.clear()
            self._pacers.clear()
            self._pricer = None
        return profile

    def remove(self, name: str) -> None:
        """Forget a candidate and its profile."""
        with self._lock:
            if name not in self._candidates:
                msg = f"model {name!r} is not a candidate; candidates: {self.names}."
                raise UnknownModelError(msg, model=name)
            self._candidates = {n: c for n, c in self._candidates.items() if n != name}
            self._budget_lams.clear()
            self._pacers.clear()
            self._pricer = None
            try:
                self.router.remove_model(name)
            except UnknownModelError:  # removed from the router directly meanwhile
                pass

    # -- decisions -----------------------------------------------------------------------------
    def resolve(self, options: RoutingOptions | Mapping[str, Any] | None = None) -> RoutingOptions:
        return self.defaults.merged(options)

    def _route_kwargs(self, opts: RoutingOptions) -> dict[str, Any]:
        cands = self._candidates  # one snapshot; the router's is taken by route() (names it lacks are skipped)
        if not cands:
            msg = "no models to route to; add one with add_model(name, model, cost=...)."
            raise UnknownModelError(msg)

        def known(n: str) -> None:
            if n not in cands:
                msg = f"model {n!r} is not a candidate; candidates: {list(cands)}."
                raise UnknownModelError(msg, model=n)

        if opts.force_model is not None:
            known(opts.force_model)
            return {"models": [opts.force_model], "cost_weight": opts.cost_weight or 0.0, "handle_unknown": "ignore"}
        allowed = list(opts.allowed_models) if opts.allowed_models is not None else list(cands)
        for n in allowed:
            known(n)
        # Excluding a model that is not (or no longer) a candidate is not an error.
        models = [n for n in allowed if n not in set(opts.excluded_models or ())]
        if not models:
            msg = "allowed_models/excluded_models leave no model to route to."
            raise InvalidInputError(msg)
        lam = opts.cost_weight
        targets = [t for t in _TARGETS if getattr(opts, t) is not None]
        if len(targets) > 1:
            msg = f"give at most one routing target among {list(_TARGETS)}; got {targets}."
            raise InvalidInputError(msg)
        paced = self._paced_target(opts)
        if paced is not None:
            lam = self._pacer(paced[0], paced[1], models).cost_weight
        elif targets:
            lam = self._target_lambda(targets[0], float(getattr(opts, targets[0])), models)
        return {"models": models, "cost_weight": lam, "handle_unknown": "ignore"}

    def _target_lambda(self, kind: str, value: float, models: Sequence[str]) -> float:
        key = (kind, value, tuple(models))
        with self._lock:
            if key not in self._budget_lams:
                from unirouter.routers.calibration import calibrate_cost_weight

                vs = getattr(self.router, "validation_set_", None)
                if vs is None:
                    msg = f"{kind}= needs a router that keeps its validation prompts to calibrate on."
                    raise InvalidInputError(msg)
                extra = {"honest": True} if kind == "quality_floor" else {}
                self._budget_lams[key] = calibrate_cost_weight(self.router, vs.prompts, models=models, **{kind: value}, **extra)
            return self._budget_lams[key]

    def _budget_lambda(self, budget: float, models: Sequence[str]) -> float:
        return self._target_lambda("budget", float(budget), models)

    def pacer(self, budget: float, models: Sequence[str] | None = None) -> Any:
        """The :class:`~unirouter.routers.pacing.BudgetPacer` that keeps ``budget`` over ``models`` (all
        candidates by default), created at the calibrated cost weight on first use."""
        return self._pacer("budget", float(budget), self.names if models is None else models)

    def top_share_pacer(self, share: float, models: Sequence[str] | None = None) -> Any:
        """The pacer that keeps the realised share of calls answered by the most expensive of ``models``
        at ``share`` (``max_top_share``): a :class:`~unirouter.routers.pacing.BudgetPacer` whose "cost" of a
        call is 1 when that model answered, else 0. Its ``top_model`` attribute names the model."""
        return self._pacer("max_top_share", float(share), self.names if models is None else models)

    @staticmethod
    def _paced_target(opts: RoutingOptions) -> tuple[str, float] | None:
        """``(kind, value)`` of the target paced online under ``opts``, or None."""
        if opts.force_model is not None:
            return None
        if opts.budget is not None and opts.budget_pacing:
            return ("budget", float(opts.budget))
        if opts.max_top_share is not None and opts.max_top_share > 0 and opts.top_share_pacing:  # 0: calibrated, never the top model
            return ("max_top_share", float(opts.max_top_share))
        return None

    def _pacer(self, kind: str, value: float, models: Sequence[str]) -> Any:
        key = (kind, value, tuple(sorted(models)))
        with self._lock:
            if key not in self._pacers:
                import numpy as np

                from unirouter.routers.calibration import _lam_max, _lam_min
                from unirouter.routers.pacing import BudgetPacer

                lam0 = self._target_lambda(kind, value, list(models))
                vs = self.router.validation_set_
                gamma, cost, _ = self.router.predict(vs.prompts, models=list(models))
                hi = _lam_max(gamma, cost)
                # floor: just below the first weight that changes a choice (not 1e-12 * hi, which a
                # pacer started at lambda = 0 would take hundreds of calls to climb out of)
                lo = min(max(_lam_min(gamma, cost), hi * 1e-12), hi * 0.5)
                pacer = BudgetPacer(value, cost_weight=lam0, min_cost_weight=lo, max_cost_weight=hi)
                if kind == "max_top_share":  # the same model calibrate_cost_weight caps
                    pacer.top_model = list(models)[int(np.argmax(cost.mean(axis=0)))]
                self._pacers[key] = pacer
            return self._pacers[key]

    def _pacer_of(self, opts: RoutingOptions, candidates: Sequence[str]) -> Any:
        """The existing pacer for ``opts`` over ``candidates`` (None: no paced target, or none made yet)."""
        paced = self._paced_target(opts)
        if paced is None:
            return None
        return self._pacers.get((paced[0], paced[1], tuple(sorted(candidates))))

    @staticmethod
    def _pacer_cost(pacer: Any, model: str, cost: float | None) -> float | None:
        """What one call answered by ``model`` costs ``pacer``: the realised cost for a budget, 1 or 0
        (was it the top model) for a top share."""
        top = getattr(pacer, "top_model", None)
        if top is not None:
            return 1.0 if model == top else 0.0
        return cost

    # -- pricing -------------------------------------------------------------------------------
    @property
    def pricer(self) -> Any:
        """The :class:`~unirouter.profiling.pricing.CallPricer` over the candidates' costs (rebuilt on change)."""
        with self._lock:
            if self._pricer is None:
                from unirouter.profiling.pricing import CallPricer

                prices = {}
                for c in self._candidates.values():
                    cost = c.cost
                    if cost is None and c.name in self.router._pool.profiles:
                        profile = self.router.get_profile(c.name)
                        cost = profile.metadata.get("token_price") or profile.cost_per_query
                    if cost is not None and not isinstance(cost, (list, tuple)) and not hasattr(cost, "shape"):
                        prices[c.name] = cost
                self._pricer = CallPricer(prices)
            return self._pricer

    def _priced(self, decisions: list[Any], x: Any, sent: Sequence[str]) -> list[Any]:
        """The decisions with each candidate's expected cost for the prompt actually sent, and the
        choice re-made on those costs (ties to the cheaper model, like the router)."""
        import numpy as np

        from unirouter.routers.base import RoutingDecision
        from unirouter.profiling.pricing import TokenPrice

        pricer = self.pricer
        if not decisions or not any(isinstance(pricer.prices.get(n), TokenPrice) for n in decisions[0].candidates):
            return decisions
        names = list(decisions[0].candidates)
        base = np.vstack([d.expected_cost for d in decisions])
        tin = [pricer.tokens(t) for t in sent]
        cost = pricer.expected_costs(self.router, x, tin, names, base)
        scale = float(cost.max()) if cost.size and cost.max() > 0 else 1.0
        out = []
        for i, d in enumerate(decisions):
            ranking = d.predicted_error + d.cost_weight * cost[i] + 1e-9 * cost[i] / scale
            out.append(
                RoutingDecision(
                    model=names[int(np.argmin(ranking))],
                    candidates=d.candidates,
                    predicted_error=d.predicted_error,
                    expected_cost=cost[i],
                    cost_weight=d.cost_weight,
                    cluster_weights=d.cluster_weights,
                    _ranking=ranking,
                )
            )
        return out

    def _route(self, texts: list[str], sent: Sequence[str] | None, kwargs: dict[str, Any]) -> list[Any]:
        x = self.router._embed(texts)
        decisions = self.router.route_batch(embeddings=x, **kwargs)
        return self._priced(decisions, x, texts if sent is None else sent)

    @staticmethod
    def _check_sent(sent: Any, n: int) -> list[str] | None:
        if sent is None:
            return None
        items = [sent] if isinstance(sent, str) else list(sent)
        if len(items) != n or not all(isinstance(s, str) for s in items):
            msg = f"sent= must be the prompt text sent to the model (one string per routing text). Got {sent!r:.80}."
            raise InvalidInputError(msg)
        return items

    def settle(
        self,
        decision: Any,
        attempts: Sequence[Mapping[str, Any]],
        options: RoutingOptions | Mapping[str, Any] | None = None,
        *,
        usage: Any = None,
        prompt: str | None = None,
        response: str | None = None,
    ) -> dict[str, Any]:
        """Record the cost of a finished call and report it: ``{"realised_cost", "cost_source"}``,
        plus ``"budget"`` (the pacer's state) when a paced budget is in force.

        The cost is the answering model's price applied to the ``usage`` it reported (tokens
        estimated from ``prompt`` and ``response`` where it reported none); failed attempts are
        not billed here. Without a price the chosen model's expected cost stands in
        (``cost_source="expected"``). The paced budget is fed this cost.
        """
        answered = next((a["model"] for a in attempts if a.get("ok")), None)
        out: dict[str, Any] = {}
        if answered is None:
            return out
        opts = self.resolve(options)
        if opts.session is not None:
            with self._lock:
                self._sessions[opts.session] = answered
                self._sessions.move_to_end(opts.session)
                while len(self._sessions) > 100_000:  # bounded: forget the least recent sessions
                    self._sessions.popitem(last=False)
        cost = self.pricer.realised_cost(answered, usage, prompt=prompt, response=response)
        source = "usage" if cost is not None else "expected"
        if cost is None and answered in decision.candidates:
            cost = float(decision.expected_cost[decision.candidates.index(answered)])
        if cost is not None:
            out.update(realised_cost=cost, cost_source=source)
        pacer = self._pacer_of(opts, decision.candidates)
        fed = None if pacer is None else self._pacer_cost(pacer, answered, cost)
        if fed is not None:
            pacer.update(fed)
            if getattr(pacer, "top_model", None) is None:
                out["budget"] = pacer.state()
            else:
                state = pacer.state()
                out["top_share"] = {
                    "max_top_share": state["budget"],
                    "top_model": pacer.top_model,
                    "calls": state["calls"],
                    "share": state["mean_spend"],
                    "cost_weight": state["cost_weight"],
                }
        return out

    def decide(
        self, text: str, options: RoutingOptions | Mapping[str, Any] | None = None, *, sent: str | None = None
    ) -> Any:
        """The :class:`~unirouter.RoutingDecision` for one text.

        ``text`` is what the router embeds (what the user asked); ``sent`` is the whole prompt the
        model will receive (template, retrieved context, history), which sets the input tokens the
        expected costs are priced on. Default: ``text`` itself.
        """
        check_prompt(text, what="routing text")
        sent_list = self._check_sent(sent, 1)
        opts = self.resolve(options)
        return self._sticky(self._route([text], sent_list, self._route_kwargs(opts))[0], opts)

    async def adecide(
        self, text: str, options: RoutingOptions | Mapping[str, Any] | None = None, *, sent: str | None = None
    ) -> Any:
        """:meth:`decide` with the embedding run in a worker thread (the event loop stays free)."""
        check_prompt(text, what="routing text")
        sent_list = self._check_sent(sent, 1)
        opts = self.resolve(options)
        kwargs = self._route_kwargs(opts)
        return self._sticky((await asyncio.to_thread(self._route, [text], sent_list, kwargs))[0], opts)

    def _sticky(self, decision: Any, opts: RoutingOptions, previous: Mapping[str, str] | None = None) -> Any:
        """Keep the session's previous model unless the choice beats it by more than switch_cost.

        ``previous`` (session -> model) overrides the pool's record of who answered last: a batch
        passes the models it chose for the earlier calls of each session in it."""
        if opts.session is None or opts.switch_cost is None or opts.force_model is not None:
            return decision
        if previous is not None and opts.session in previous:
            prev = previous[opts.session]
        else:
            with self._lock:
                prev = self._sessions.get(opts.session)
        if prev is None or prev == decision.model or prev not in decision.candidates:
            return decision
        import numpy as np

        ranking = np.array(decision._ranking if decision._ranking is not None else decision.scores, dtype=np.float64)
        i_prev, i_best = decision.candidates.index(prev), decision.candidates.index(decision.model)
        if ranking[i_prev] - ranking[i_best] > opts.switch_cost:
            return decision  # the gain pays for the switch (and the lost prompt cache)
        ranking[i_prev] = ranking.min() - 1e-12  # stay: the previous model ranks first, the rest follow
        return replace(decision, model=prev, _ranking=ranking)

    def _options_list(self, options: Any, n: int) -> list[RoutingOptions]:
        if isinstance(options, (list, tuple)):
            if len(options) != n:
                msg = f"options must be one set of routing options, or one per text ({n}). Got {len(options)}."
                raise InvalidInputError(msg)
            return [self.resolve(o) for o in options]
        opts = self.resolve(options)
        return [opts] * n

    def _route_sequence(self, texts: list[str], sent: Sequence[str] | None, opts: list[RoutingOptions]) -> list[Any]:
        """The decisions the texts would get one by one, in order, with one embedding call.

        What one-by-one routing learns between calls is played forward here: a session's later texts
        are sticky to the model chosen for its earlier ones, and a paced target (budget, top share)
        routes each text at the weight its pacer would have after the earlier texts, fed with the
        chosen model's *expected* cost (the realised costs are not known until the calls return;
        each call's :meth:`settle` then teaches the pool's pacer the realised one).
        """
        plans = [self._route_kwargs(o) for o in opts]  # validates every option set first
        sent = texts if sent is None else sent
        x = self.router._embed(texts)
        paced = [self._paced_target(o) is not None for o in opts]
        decisions: list[Any] = [None] * len(texts)
        groups: dict[str, list[int]] = {}  # unpaced texts: one routing call per distinct plan
        for i, (o, p) in enumerate(zip(opts, paced)):
            if not p:
                groups.setdefault(o.model_dump_json(exclude={"session"}), []).append(i)
        for rows in groups.values():
            routed = self._priced(self.router.route_batch(embeddings=x[rows], **plans[rows[0]]), x[rows], [sent[i] for i in rows])
            for i, d in zip(rows, routed):
                decisions[i] = d
        shadows: dict[int, Any] = {}  # id(pacer) -> its copy, fed the expected costs of this batch
        previous: dict[str, str] = {}
        for i, o in enumerate(opts):
            pacer = None
            if paced[i]:
                kind, value = self._paced_target(o)
                real = self._pacer(kind, value, plans[i]["models"])
                pacer = shadows.setdefault(id(real), real.copy())
                kwargs = {**plans[i], "cost_weight": pacer.cost_weight}
                decisions[i] = self._priced(self.router.route_batch(embeddings=x[i : i + 1], **kwargs), x[i : i + 1], [sent[i]])[0]
            d = decisions[i] = self._sticky(decisions[i], o, previous)
            if o.session is not None:
                previous[o.session] = d.model
            if pacer is not None:
                fed = self._pacer_cost(pacer, d.model, float(d.expected_cost[d.candidates.index(d.model)]))
                pacer.update(fed)
        return decisions

    def decide_batch(
        self,
        texts: Sequence[str],
        options: RoutingOptions | Mapping[str, Any] | Sequence[RoutingOptions | Mapping[str, Any] | None] | None = None,
        *,
        sent: Sequence[str] | None = None,
    ) -> list[Any]:
        """Decisions for many texts with one embedding call: the ones the same texts would get from
        :meth:`decide` one by one, each call settled before the next (``sent``: one prompt per text;
        ``options``: one set for all texts, or a list of one per text).

        Sticky sessions follow the models chosen for the earlier texts of each session. A paced
        budget or top share is stepped after each text with the chosen model's expected cost (one
        by one it would learn the realised cost): the batch equals one-by-one routing whenever the
        calls cost what was expected. :meth:`settle` each call afterwards so the pacer learns the
        realised costs (the plugins do).
        """
        texts = check_prompts(texts, what="routing texts")
        sent_list = self._check_sent(sent, len(texts))
        return self._route_sequence(texts, sent_list, self._options_list(options, len(texts)))

    async def adecide_batch(
        self,
        texts: Sequence[str],
        options: RoutingOptions | Mapping[str, Any] | Sequence[RoutingOptions | Mapping[str, Any] | None] | None = None,
        *,
        sent: Sequence[str] | None = None,
    ) -> list[Any]:
        """Async :meth:`decide_batch` (the embedding runs in a worker thread)."""
        texts = check_prompts(texts, what="routing texts")
        sent_list = self._check_sent(sent, len(texts))
        return await asyncio.to_thread(self._route_sequence, texts, sent_list, self._options_list(options, len(texts)))

    def check_options(self, options: RoutingOptions | Mapping[str, Any] | None = None) -> RoutingOptions:
        """``options`` merged with the defaults and checked against the candidates (typed errors), so
        a batch can set aside the inputs whose options would fail."""
        opts = self.resolve(options)
        self._route_kwargs(opts)
        return opts

    # -- fallbacks -----------------------------------------------------------------------------
    def attempt_order(self, decision: Any, options: RoutingOptions | Mapping[str, Any] | None = None) -> list[str]:
        """The chosen model, then up to ``max_fallbacks`` next-best candidates (none when forced)."""
        return self._attempt_order(decision, self.resolve(options), self._candidates)

    @staticmethod
    def _attempt_order(decision: Any, opts: RoutingOptions, cands: Mapping[str, Candidate]) -> list[str]:
        ranked = [n for n in decision.ranked if n in cands]
        if not ranked:
            msg = f"every model of this decision ({list(decision.ranked)}) was removed before it could be called."
            raise UnknownModelError(msg)
        if opts.force_model is not None:
            return ranked[:1]
        return ranked[: 1 + opts.max_fallbacks]

    def run_with_fallbacks(
        self,
        decision: Any,
        options: RoutingOptions | Mapping[str, Any] | None,
        fn: Callable[[str], T],
        *,
        usage_of: Callable[[T], tuple[Any, str | None]] | None = None,
        sent: str | None = None,
        defer_settle: bool = False,
    ) -> tuple[T, list[dict[str, Any]]]:
        """Call ``fn(name)`` on the chosen model, then the next best while it raises or its answer
        counts as failed (see ``RoutingOptions.is_failed_answer``).

        Returns the first good result and the attempts record (``[{"model", "ok", "error"?}]``). If
        every attempt fails, raises :class:`~unirouter.AllModelsFailedError`: an exception group of
        every attempt's exception (a :class:`~unirouter.FailedAnswerError` for a failed answer). The
        record's ``settled`` attribute holds what :meth:`settle` reports (``realised_cost``,
        ``cost_source``, ``budget``): ``usage_of(result)`` gives the usage the model reported and its
        response text, ``sent`` the prompt sent (both optional: without them the cost is estimated or
        the expected cost stands in). ``defer_settle=True`` leaves that to the caller, for a result
        whose cost is known only later (a stream: settle once its last chunk, with the usage, is in).
        """
        opts = self.resolve(options)
        cands = self._candidates  # the snapshot this call resolves names against
        order = self._attempt_order(decision, opts, cands)
        token = _IN_FLIGHT.set(cands)
        try:
            attempts = Attempts()
            errors: list[Exception] = []
            for name in order:
                try:
                    result = fn(name) if opts.call_timeout is None else _call_with_timeout(fn, name, opts.call_timeout)
                    _check_answer(name, result, opts)
                except Exception as e:  # noqa: BLE001 - kept, then the next model is tried
                    attempts.append({"model": name, "ok": False, "error": f"{type(e).__name__}: {e}"})
                    errors.append(e)
                    continue
                attempts.append({"model": name, "ok": True})
                if not defer_settle:
                    attempts.settled = self._settle_result(decision, attempts, options, result, usage_of, sent)
                return result, attempts
        finally:
            _IN_FLIGHT.reset(token)
        raise _all_failed(attempts, errors)

    async def arun_with_fallbacks(
        self,
        decision: Any,
        options: RoutingOptions | Mapping[str, Any] | None,
        afn: Callable[[str], Awaitable[T]],
        *,
        usage_of: Callable[[T], tuple[Any, str | None]] | None = None,
        sent: str | None = None,
        defer_settle: bool = False,
    ) -> tuple[T, list[dict[str, Any]]]:
        """Async :meth:`run_with_fallbacks`."""
        opts = self.resolve(options)
        cands = self._candidates
        order = self._attempt_order(decision, opts, cands)
        token = _IN_FLIGHT.set(cands)
        try:
            attempts = Attempts()
            errors: list[Exception] = []
            for name in order:
                try:
                    if opts.call_timeout is None:
                        result = await afn(name)
                    else:
                        from unirouter.profiling.profiler import _with_timeout

                        result = await _with_timeout(afn(name), opts.call_timeout)
                    _check_answer(name, result, opts)
                except Exception as e:  # noqa: BLE001
                    attempts.append({"model": name, "ok": False, "error": f"{type(e).__name__}: {e}"})
                    errors.append(e)
                    continue
                attempts.append({"model": name, "ok": True})
                if not defer_settle:
                    attempts.settled = self._settle_result(decision, attempts, options, result, usage_of, sent)
                return result, attempts
        finally:
            _IN_FLIGHT.reset(token)
        raise _all_failed(attempts, errors)

    def _settle_result(
        self, decision: Any, attempts: list[dict[str, Any]], options: Any, result: Any, usage_of: Any, sent: str | None
    ) -> dict[str, Any]:
        usage, text = None, None
        if usage_of is not None:
            try:
                usage, text = usage_of(result)
            except Exception:  # noqa: BLE001 - an unexpected result shape only loses the usage
                usage, text = None, None
        return self.settle(decision, attempts, options, usage=usage, prompt=sent, response=text)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Save the router (profiles included) and the candidate table (names, costs, defaults)."""
        from unirouter.persistence import save_router

        table = {
            "candidates": [{"name": c.name, "cost": _cost_to_json(c.cost)} for c in self._candidates.values()],
            "defaults": self.defaults.model_dump(mode="json", exclude_unset=True),
        }
        # One atomic step: a crash can never leave a router without its candidate table.
        save_router(self.router, Path(path), overwrite=overwrite, extra_files={_CANDIDATES: json.dumps(table, indent=2).encode("utf-8")})

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        models: Mapping[str, Any],
        calls: Mapping[str, Any] | None = None,
        embedder: Any = None,
        **kwargs: Any,
    ) -> CandidatePool:
        """Reload a saved pool and re-attach the framework models by name (no re-profiling).

        Every saved candidate must be given in ``models``, and no other: add new models with
        :meth:`add` after loading (they need a cost).
        """
        from unirouter.persistence import load_router

        root = Path(path)
        router = load_router(root, embedder=embedder)
        table_path = root / _CANDIDATES
        if not table_path.is_file():
            msg = f"{table_path} is missing; this directory holds a router but no candidate table."
            raise PersistenceError(msg, path=table_path)
        try:
            table = json.loads(table_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            msg = f"{table_path} is not valid JSON: {e}."
            raise PersistenceError(msg, path=table_path) from e
        saved = [c["name"] for c in table.get("candidates", [])]
        missing = [n for n in saved if n not in models]
        if missing:
            msg = f"the saved pool has models {missing} that were not given in models=; pass them to re-attach."
            raise InvalidInputError(msg)
        extra = [n for n in models if n not in saved]
        if extra:
            msg = f"models {extra} are not in the saved pool; load first, then add them with add(name, model, call, cost=...)."
            raise InvalidInputError(msg)
        kwargs.setdefault("defaults", table.get("defaults") or None)
        pool = cls(router, **kwargs)
        calls = dict(calls or {})
        for c in table.get("candidates", []):
            pool.add(c["name"], models[c["name"]], calls.get(c["name"]), cost=_cost_from_json(c["cost"]))
        return pool

    def __repr__(self) -> str:
        return f"CandidatePool(models={self.names}, defaults={self.defaults.model_dump(exclude_unset=True)})"

