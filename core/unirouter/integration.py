"""Framework-neutral support for routing models in LangChain, LlamaIndex or any other framework.

The plugins are thin: they convert framework objects (messages, LLMs) to text and calls, and hand
everything else to :class:`CandidatePool`:

* the named candidate models, their costs, and profiling on add (through the core profiler);
* per-call routing options (:class:`RoutingOptions`: cost weight, budget, forced / allowed / excluded
  models, fallbacks), validated with typed errors;
* the decision for a text (sync, async, batched), priced for the prompt actually sent
  (:class:`unirouter.pricing.CallPricer`), and the walk down ``decision.ranked`` when the chosen
  model raises (bounded, recorded);
* the realised cost of each call (:meth:`CandidatePool.settle`), which keeps a budget on the traffic
  actually sent (:class:`unirouter.pacing.BudgetPacer`);
* save/load of the router and the candidate table, so reloading never re-profiles.

Nothing here imports LangChain or LlamaIndex.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unirouter._validation import check_prompt, check_prompts
from unirouter.exceptions import DuplicateModelError, InvalidInputError, PersistenceError, UnknownModelError
from unirouter.profiles import ModelProfile

__all__ = ["CONFIG_KEYS", "Candidate", "CandidatePool", "RoutingOptions"]

T = TypeVar("T")
CONFIG_KEYS = (
    "cost_weight",
    "budget",
    "budget_pacing",
    "quality_floor",
    "max_top_share",
    "force_model",
    "allowed_models",
    "excluded_models",
    "max_fallbacks",
    "session",
    "switch_cost",
)
_TARGETS = ("budget", "quality_floor", "max_top_share")
_CANDIDATES = "candidates.json"


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
        adapt it after every call from the realised cost (:class:`unirouter.pacing.BudgetPacer`,
        one per budget and candidate set). False = the calibrated weight, which holds the budget
        only on traffic like the validation prompts.
    quality_floor : float in [0, 1] or None
        Minimum mean quality; the cheapest routing whose quality, measured out of fold on the
        validation prompts (:func:`unirouter.calibrate_cost_weight` with ``honest=True``), meets it.
    max_top_share : float in [0, 1] or None
        Maximum share of calls to the most expensive candidate (calibrated on the validation prompts).
    force_model : str or None
        Always use this model (no fallback).
    allowed_models, excluded_models : list of str or None
    max_fallbacks : int >= 0
        How many next-best models to try when the chosen one raises.
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
    budget_pacing: bool = True
    quality_floor: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_top_share: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    force_model: str | None = None
    allowed_models: tuple[str, ...] | None = None
    excluded_models: tuple[str, ...] | None = None
    max_fallbacks: int = Field(default=2, ge=0)
    session: str | None = None
    switch_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)

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
        for key in ("allowed_models", "excluded_models"):
            if isinstance(data.get(key), str):
                data[key] = (data[key],)
        try:
            return cls.model_validate(data, strict=False)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "options"
            got = data.get(str(err["loc"][0]), None) if err["loc"] else None
            if err["type"] == "extra_forbidden":
                msg = f"unknown routing option {key!r}; valid options: {list(CONFIG_KEYS)}."
            else:
                msg = f"routing option {key!r} is invalid: {err['msg']}. Got {got!r}."
            raise InvalidInputError(msg) from None

    def merged(self, override: RoutingOptions | Mapping[str, Any] | None) -> RoutingOptions:
        """These options with the keys set in ``override`` replaced (per-call values win)."""
        if override is None:
            return self
        other = RoutingOptions.parse(override)
        return self.model_copy(update=other.model_dump(exclude_unset=True))


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
        from unirouter.profiler import TokenPrice

        return TokenPrice(**{k: v for k, v in value.items() if k != "type"})
    return value


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
        self._candidates: dict[str, Candidate] = {}
        self._lock = threading.RLock()
        self._budget_lams: dict[tuple[str, float, tuple[str, ...]], float] = {}
        self._pacers: dict[tuple[float, tuple[str, ...]], Any] = {}
        self._pricer: Any = None
        self._sessions: OrderedDict[str, str] = OrderedDict()  # session -> model that answered last

    # -- candidates ----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._candidates)

    def get(self, name: str) -> Candidate:
        if name not in self._candidates:
            msg = f"model {name!r} is not a candidate; candidates: {self.names}."
            raise UnknownModelError(msg, model=name)
        return self._candidates[name]

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
            self._candidates[name] = Candidate(name, model, call, cost)
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
            self._candidates[name] = Candidate(name, model, call, cost)
            self._budget_lams.clear()
            self._pacers.clear()
            self._pricer = None
        return profile

    def remove(self, name: str) -> None:
        """Forget a candidate and its profile."""
        with self._lock:
            self.get(name)
            del self._candidates[name]
            self._budget_lams.clear()
            self._pacers.clear()
            self._pricer = None
        if name in self.router._pool.profiles:
            self.router.remove_model(name)

    # -- decisions -----------------------------------------------------------------------------
    def resolve(self, options: RoutingOptions | Mapping[str, Any] | None = None) -> RoutingOptions:
        return self.defaults.merged(options)

    def _route_kwargs(self, opts: RoutingOptions) -> dict[str, Any]:
        if not self._candidates:
            msg = "no models to route to; add one with add_model(name, model, cost=...)."
            raise UnknownModelError(msg)
        if opts.force_model is not None:
            self.get(opts.force_model)
            return {"models": [opts.force_model], "cost_weight": opts.cost_weight or 0.0}
        allowed = list(opts.allowed_models) if opts.allowed_models is not None else self.names
        for n in allowed:
            self.get(n)
        for n in opts.excluded_models or ():
            self.get(n)
        models = [n for n in allowed if n not in set(opts.excluded_models or ())]
        if not models:
            msg = "allowed_models/excluded_models leave no model to route to."
            raise InvalidInputError(msg)
        lam = opts.cost_weight
        targets = [t for t in _TARGETS if getattr(opts, t) is not None]
        if len(targets) > 1:
            msg = f"give at most one routing target among {list(_TARGETS)}; got {targets}."
            raise InvalidInputError(msg)
        if targets == ["budget"] and opts.budget_pacing:
            lam = self.pacer(opts.budget, models).cost_weight
        elif targets:
            lam = self._target_lambda(targets[0], float(getattr(opts, targets[0])), models)
        return {"models": models, "cost_weight": lam}

    def _target_lambda(self, kind: str, value: float, models: Sequence[str]) -> float:
        key = (kind, value, tuple(models))
        with self._lock:
            if key not in self._budget_lams:
                from unirouter.calibration import calibrate_cost_weight

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
        """The :class:`~unirouter.pacing.BudgetPacer` that keeps ``budget`` over ``models`` (all
        candidates by default), created at the calibrated cost weight on first use."""
        models = tuple(self.names if models is None else models)
        key = (float(budget), models)
        with self._lock:
            if key not in self._pacers:
                from unirouter.calibration import _lam_max
                from unirouter.pacing import BudgetPacer

                lam0 = self._budget_lambda(budget, models)
                vs = self.router.validation_set_
                gamma, cost, _ = self.router.predict(vs.prompts, models=list(models))
                hi = _lam_max(gamma, cost)
                self._pacers[key] = BudgetPacer(budget, cost_weight=lam0, min_cost_weight=hi * 1e-12, max_cost_weight=hi)
            return self._pacers[key]

    # -- pricing -------------------------------------------------------------------------------
    @property
    def pricer(self) -> Any:
        """The :class:`~unirouter.pricing.CallPricer` over the candidates' costs (rebuilt on change)."""
        with self._lock:
            if self._pricer is None:
                from unirouter.pricing import CallPricer

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

        from unirouter import RoutingDecision
        from unirouter.pricing import TokenPrice

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
        if cost is None:
            return out
        out.update(realised_cost=cost, cost_source=source)
        if opts.budget is not None and opts.budget_pacing and opts.force_model is None:
            key = (float(opts.budget), tuple(decision.candidates))
            pacer = self._pacers.get(key)
            if pacer is not None:
                pacer.update(cost)
                out["budget"] = pacer.state()
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

    def _sticky(self, decision: Any, opts: RoutingOptions) -> Any:
        """Keep the session's previous model unless the choice beats it by more than switch_cost."""
        if opts.session is None or opts.switch_cost is None or opts.force_model is not None:
            return decision
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

    def decide_batch(
        self, texts: Sequence[str], options: RoutingOptions | Mapping[str, Any] | None = None, *, sent: Sequence[str] | None = None
    ) -> list[Any]:
        """Decisions for many texts with one embedding call (``sent``: one prompt per text)."""
        texts = check_prompts(texts, what="routing texts")
        sent_list = self._check_sent(sent, len(texts))
        return self._route(texts, sent_list, self._route_kwargs(self.resolve(options)))

    async def adecide_batch(
        self, texts: Sequence[str], options: RoutingOptions | Mapping[str, Any] | None = None, *, sent: Sequence[str] | None = None
    ) -> list[Any]:
        texts = check_prompts(texts, what="routing texts")
        sent_list = self._check_sent(sent, len(texts))
        kwargs = self._route_kwargs(self.resolve(options))
        return await asyncio.to_thread(self._route, texts, sent_list, kwargs)

    # -- fallbacks -----------------------------------------------------------------------------
    def attempt_order(self, decision: Any, options: RoutingOptions | Mapping[str, Any] | None = None) -> list[str]:
        """The chosen model, then up to ``max_fallbacks`` next-best candidates (none when forced)."""
        opts = self.resolve(options)
        ranked = [n for n in decision.ranked if n in self._candidates]
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
    ) -> tuple[T, list[dict[str, Any]]]:
        """Call ``fn(name)`` on the chosen model, then the next best while it raises.

        Returns the first result and the attempts record (``[{"model", "ok", "error"?}]``); if every
        attempt fails, the last error is raised. The record's ``settled`` attribute holds what
        :meth:`settle` reports (``realised_cost``, ``cost_source``, ``budget``): ``usage_of(result)``
        gives the usage the model reported and its response text, ``sent`` the prompt sent (both
        optional: without them the cost is estimated or the expected cost stands in).
        """
        attempts = Attempts()
        order = self.attempt_order(decision, options)
        for i, name in enumerate(order):
            try:
                result = fn(name)
            except Exception as e:  # noqa: BLE001 - recorded, then the next model is tried
                attempts.append({"model": name, "ok": False, "error": f"{type(e).__name__}: {e}"})
                if i == len(order) - 1:
                    raise
                continue
            attempts.append({"model": name, "ok": True})
            attempts.settled = self._settle_result(decision, attempts, options, result, usage_of, sent)
            return result, attempts
        raise AssertionError("unreachable: attempt_order is never empty")  # pragma: no cover

    async def arun_with_fallbacks(
        self,
        decision: Any,
        options: RoutingOptions | Mapping[str, Any] | None,
        afn: Callable[[str], Awaitable[T]],
        *,
        usage_of: Callable[[T], tuple[Any, str | None]] | None = None,
        sent: str | None = None,
    ) -> tuple[T, list[dict[str, Any]]]:
        """Async :meth:`run_with_fallbacks`."""
        attempts = Attempts()
        order = self.attempt_order(decision, options)
        for i, name in enumerate(order):
            try:
                result = await afn(name)
            except Exception as e:  # noqa: BLE001
                attempts.append({"model": name, "ok": False, "error": f"{type(e).__name__}: {e}"})
                if i == len(order) - 1:
                    raise
                continue
            attempts.append({"model": name, "ok": True})
            attempts.settled = self._settle_result(decision, attempts, options, result, usage_of, sent)
            return result, attempts
        raise AssertionError("unreachable")  # pragma: no cover

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
        root = Path(path)
        self.router.save(root, overwrite=overwrite)
        table = {
            "candidates": [{"name": c.name, "cost": _cost_to_json(c.cost)} for c in self._candidates.values()],
            "defaults": self.defaults.model_dump(mode="json", exclude_unset=True),
        }
        tmp = root / f".{_CANDIDATES}.tmp"
        tmp.write_text(json.dumps(table, indent=2), encoding="utf-8")
        tmp.replace(root / _CANDIDATES)

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

