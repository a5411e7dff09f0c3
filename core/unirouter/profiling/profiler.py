"""Profile a model automatically: call it on the validation prompts, grade it, build its profile.

Three layers, so each can be used and tested alone:

* :class:`ResponseCache` keeps every successful response on disk as it arrives (one append-only
  JSONL file per model identity), so an interrupted run resumes and re-adding a model is free.
* :class:`Profiler` gets the responses: its :meth:`~Profiler.plan` (no I/O) says which prompts are
  cached and which must be called; :meth:`~Profiler.arun` drives the calls with a concurrency limit,
  a per-call timeout and retries with exponential backoff and full jitter; :meth:`~Profiler.run` is
  the same from sync code. Failed calls are recorded with their cause, never graded.
* :func:`profile_model` / :func:`aprofile_model` (behind ``router.add_model(name, model=...)``) grade
  the responses with a scorer, price them and build the :class:`~unirouter.profiles.ModelProfile`,
  or raise :class:`~unirouter.exceptions.ProfilingError` when too many calls failed.

A model is any sync or async callable ``prompt -> text`` or ``prompt -> (text, usage)``, where usage
is a mapping (or object) with ``input_tokens``/``output_tokens`` (LangChain ``usage_metadata``) or
``prompt_tokens``/``completion_tokens`` (OpenAI), or ``None``. Sync callables run in threads.

Example::

    async def my_model(prompt):                       # wrap any SDK call
        r = await client.generate(prompt)
        return r.text, {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens}

    profile = router.add_model(
        "my-model", model=my_model, scorer=MultipleChoiceScorer(),
        cost=TokenPrice(input_per_mtok=0.15, output_per_mtok=0.60),
        cache=ResponseCache("~/.cache/unirouter/responses"),    # resumable, re-adding is free
    )
    profile.stats   # calls_made, calls_cached, calls_failed, unparsed, wall_time_s, failure_causes
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import math
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unirouter._params import ParamsMixin
from unirouter._validation import as_rng, check_cost, check_costs, check_model_name, check_prompts
from unirouter.data.datasets import ValidationSet
from unirouter.exceptions import (
    InvalidInputError,
    ProfileMismatchError,
    ProfilingCostError,
    ProfilingError,
    UniRouterWarning,
)
from unirouter.profiling.response_cache import CachedResponse, ResponseCache, TokenPrice, _as_cache, settings_key, usage_tokens
from unirouter.profiles import ModelProfile, ProfilingStats
from unirouter.profiling.scorers import MultipleChoiceScorer, NumericScorer, _is_async_callable, get_scorer, run_sync

__all__ = [
    "CachedResponse",
    "Profiler",
    "ProfilingPlan",
    "ProfilingRun",
    "ResponseCache",
    "TokenPrice",
    "settings_key",
    "ProfilingEstimate",
    "aprofile_model",
    "estimate_profiling_cost",
    "profile_model",
    "usage_tokens",
]


def _split_output(result: Any) -> tuple[str | None, Any, str | None]:
    """``(text, usage, failure_cause)`` from whatever the model returned."""
    usage = None
    if isinstance(result, tuple) and len(result) == 2:
        result, usage = result
    elif not isinstance(result, str):  # a LangChain message or a LlamaIndex response
        message = getattr(result, "message", None)
        for holder in (result, message):
            for attr in ("content", "text"):
                value = getattr(holder, attr, None)
                if isinstance(value, str):
                    usage = getattr(holder, "usage_metadata", None) or getattr(result, "raw", None)
                    result = value
                    break
            if isinstance(result, str):
                break
    if not isinstance(result, str):
        return None, None, f"non-text response of type {type(result).__name__}"
    if not result.strip():
        return None, None, "empty response"
    return result, usage, None


def _describe(exc: BaseException, timeout: float | None) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not str(exc):
        return f"TimeoutError: no response within {timeout:g} s" if timeout else "TimeoutError"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


# -- the profiler ------------------------------------------------------------------------------
@dataclass
class ProfilingPlan:
    """What a run has to do: ``to_call`` (indices to send to the model) and ``cached`` responses."""

    prompts: list[str]
    to_call: list[int]
    cached: dict[int, CachedResponse]


@dataclass
class ProfilingRun:
    """The outcome of running a model over prompts.

    Attributes
    ----------
    prompts : list of str
    texts : list of (str or None)
        Response per prompt; ``None`` for a failed call.
    input_tokens, output_tokens : list of (float or None)
        Reported token usage per prompt (``None`` = not reported).
    cached : ndarray of bool, shape (n,)
        Responses read from the cache rather than obtained by a call.
    failures : dict of int to str
        Cause of each failed prompt ("RateLimitError: ...", "empty response", ...).
    attempts : int
        Model invocations, retries included.
    wall_time_s : float
    """

    prompts: list[str]
    texts: list[str | None]
    input_tokens: list[float | None]
    output_tokens: list[float | None]
    cached: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)
    attempts: int = 0
    wall_time_s: float = 0.0

    @property
    def n(self) -> int:
        return len(self.prompts)

    @property
    def calls_cached(self) -> int:
        return int(self.cached.sum())

    @property
    def calls_made(self) -> int:
        """Prompts sent to the model (not from the cache); retries not counted, see ``attempts``."""
        return self.n - self.calls_cached

    @property
    def calls_failed(self) -> int:
        return len(self.failures)

    @property
    def failure_causes(self) -> dict[str, int]:
        """Number of failed prompts per cause, most frequent first."""
        return dict(Counter(self.failures.values()).most_common())


class Profiler(ParamsMixin):
    """Runs a model over prompts: concurrency, timeouts, retries, cache, progress bar.

    Parameters
    ----------
    max_concurrency : int, default=8
        Calls in flight at once.
    timeout : float or None, default=60.0
        Seconds per attempt (a timed-out attempt counts as a retryable error).
    max_retries : int, default=4
        Retries per prompt after the first attempt, for retryable errors: ``exc.is_retryable`` true
        (LangChain's rate-limit and timeout errors), ``TimeoutError``, or ``retry_on(exc)`` true.
    backoff_base, backoff_max : float, default=0.5, 20.0
        Retry ``r`` sleeps ``uniform(0, min(backoff_max, backoff_base * 2**r))`` seconds (full jitter).
    retry_on : callable or exception type(s), optional
        More errors to retry.
    cache : ResponseCache, path or None
        Where responses are read from and stored as they arrive.
    generation_settings : dict, optional
        Part of the cache key (temperature, max tokens, ...): other settings, other responses.
    progress : bool, default=True
        Show a tqdm progress bar.
    random_state : int, Generator or None
        Seeds the backoff jitter.

    Notes
    -----
    A sync model runs in a daemon thread per call. A call that times out is abandoned, not killed:
    its thread finishes in the background and its result is dropped. A prompt keeps its concurrency
    slot while it backs off, so a rate-limited model gets fewer requests in flight, not more.
    Cache writes go through one background writer thread, so the event loop never waits on disk.
    """

    def __init__(
        self,
        *,
        max_concurrency: int = 8,
        timeout: float | None = 60.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_on: Any = None,
        cache: Any = None,
        generation_settings: Mapping[str, Any] | None = None,
        progress: bool = True,
        random_state: Any = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_on = retry_on
        self.cache = cache
        self.generation_settings = generation_settings
        self.progress = progress
        self.random_state = random_state

    def _check_params(self) -> None:
        def bad(name: str, want: str) -> InvalidInputError:
            return InvalidInputError(f"{name} must be {want}. Got {getattr(self, name)!r}.")

        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not isinstance(self.max_concurrency, int) or isinstance(self.max_concurrency, bool) or self.max_concurrency < 1:
            raise bad("max_concurrency", "an int >= 1")
        if self.timeout is not None and not (number(self.timeout) and self.timeout > 0):
            raise bad("timeout", "a number of seconds > 0 or None")
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise bad("max_retries", "an int >= 0")
        for name in ("backoff_base", "backoff_max"):
            if not (number(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "a number of seconds >= 0")
        r = self.retry_on
        if r is not None and not callable(r) and not (isinstance(r, tuple) and all(isinstance(t, type) for t in r)):
            raise bad("retry_on", "a function exc -> bool, an exception type or a tuple of them")
        self._cache = _as_cache(self.cache)

    def _retryable(self, exc: BaseException) -> bool:
        if getattr(exc, "is_retryable", False) is True or isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return True
        r = self.retry_on
        if r is None:
            return False
        if isinstance(r, tuple) or isinstance(r, type):
            return isinstance(exc, r)
        return bool(r(exc))

    def plan(self, prompts: Sequence[str], *, model_id: str) -> ProfilingPlan:
        """Which prompts are already answered in the cache and which need a call (no model I/O)."""
        self._check_params()
        prompts = check_prompts(prompts)
        cached: dict[int, CachedResponse] = {}
        if self._cache is not None:
            for i, p in enumerate(prompts):
                hit = self._cache.get(model_id, p, settings=self.generation_settings)
                if hit is not None:
                    cached[i] = hit
        return ProfilingPlan(prompts, [i for i in range(len(prompts)) if i not in cached], cached)

    def run(
        self, model: Callable[[str], Any], prompts: Sequence[str], *, model_id: str = "model", desc: str | None = None
    ) -> ProfilingRun:
        """:meth:`arun` from sync code (works inside a running event loop too)."""
        return run_sync(self.arun(model, prompts, model_id=model_id, desc=desc))

    async def arun(
        self, model: Callable[[str], Any], prompts: Sequence[str], *, model_id: str = "model", desc: str | None = None
    ) -> ProfilingRun:
        """Call ``model`` on every prompt not in the cache and collect the responses.

        Cancelling the task stops promptly; every response obtained so far is in the cache.
        """
        if not callable(model):
            msg = f"model must be a callable prompt -> text (sync or async). Got {type(model).__name__}."
            raise InvalidInputError(msg)
        self._check_params()  # resolves self._cache
        if self._cache is None:
            return await self._arun(model, prompts, model_id=model_id, desc=desc)
        # One run per (cache, model) at a time, across processes: no paid call is made twice.
        async with self._cache.model_lock(model_id):
            return await self._arun(model, prompts, model_id=model_id, desc=desc)

    async def _arun(self, model: Callable[[str], Any], prompts: Sequence[str], *, model_id: str, desc: str | None) -> ProfilingRun:
        plan = self.plan(prompts, model_id=model_id)
        n = len(plan.prompts)
        run = ProfilingRun(plan.prompts, [None] * n, [None] * n, [None] * n, np.zeros(n, dtype=bool))
        for i, hit in plan.cached.items():
            run.texts[i], run.input_tokens[i], run.output_tokens[i] = hit.text, hit.input_tokens, hit.output_tokens
            run.cached[i] = True
        call = _async_call(model)
        sem = asyncio.Semaphore(self.max_concurrency)
        rng = as_rng(self.random_state)
        bar = _progress_bar(n, len(plan.cached), desc or f"profiling {model_id}", self.progress)
        # One writer thread: the event loop never waits on the disk, and records keep their order.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unirouter-cache") if self._cache is not None else None
        writes: list[Any] = []
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            async with sem:
                text, usage, cause, attempts = await self._call(call, plan.prompts[i], rng)
                run.attempts += attempts
                if cause is not None:
                    run.failures[i] = cause
                else:
                    run.texts[i] = text
                    run.input_tokens[i], run.output_tokens[i] = usage_tokens(usage)
                    if writer is not None:
                        put = functools.partial(self._cache.put, model_id, plan.prompts[i], text, usage=usage)
                        fut = writer.submit(put, settings=self.generation_settings)
                        writes.append(fut)
                        # The slot is held until the answer is on disk: a paid answer never waits in
                        # a queue that a kill would lose (at most max_concurrency are unwritten).
                        await asyncio.shield(asyncio.wrap_future(fut))
            bar.update(1)
            if run.failures:
                bar.set_postfix(failed=len(run.failures), refresh=False)

        tasks = [asyncio.ensure_future(one(i)) for i in plan.to_call]
        try:
            await asyncio.gather(*tasks)
        except _Interrupted as e:
            raise e.args[0] from None
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            run.wall_time_s = time.perf_counter() - t0
            bar.close()
            if writer is not None:
                writer.shutdown(wait=True)  # everything obtained reaches the cache, even on cancel
                self._cache.flush()
        for w in writes:
            if w.exception() is not None:
                raise w.exception()
        return run

    async def _call(
        self, call: Callable[[str], Any], prompt: str, rng: np.random.Generator
    ) -> tuple[str | None, Any, str | None, int]:
        """One prompt with retries: ``(text, usage, failure_cause, attempts)``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if self.timeout is None:
                    result = await call(prompt)
                else:
                    result = await _with_timeout(call(prompt), self.timeout)
            except _Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001 - every error is recorded or retried
                if attempt > self.max_retries or not self._retryable(exc):
                    return None, None, _describe(exc, self.timeout), attempt
                await asyncio.sleep(rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))))
                continue
            text, usage, cause = _split_output(result)
            return text, usage, cause, attempt


async def _with_timeout(coro: Any, timeout: float) -> Any:
    """``await coro`` for at most ``timeout`` seconds, even if it swallows ``CancelledError``.

    ``asyncio.wait_for`` waits for the cancelled call to finish, so a model that catches
    ``BaseException`` (a retry wrapper) hangs it forever. Here the call is cancelled and abandoned:
    it counts as timed out at once, and is cancelled again now and then until it stops, so it
    cannot keep the event loop from closing.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()  # a paid answer that arrived with the cancel is kept (as wait_for does)
        task.cancel()
        raise
    if done:
        return task.result()
    _abandon(task, interval=min(float(timeout), 1.0))
    msg = f"no response within {timeout:g} s"
    raise TimeoutError(msg)


def _abandon(task: asyncio.Future[Any], *, interval: float, tries: int = 100) -> None:
    """Cancel ``task`` now and every ``interval`` s while it keeps running (at most ``tries`` times)."""
    loop = asyncio.get_running_loop()

    def cancel(left: int) -> None:
        if task.done():
            return
        task.cancel()
        if left > 1:
            loop.call_later(interval, cancel, left - 1)

    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "exception was never retrieved"
    cancel(tries)


class _Interrupted(Exception):
    """Carries a KeyboardInterrupt/SystemExit out of a call task without stopping the loop mid-step."""


def _async_call(model: Callable[[str], Any]) -> Callable[[str], Any]:
    """``model`` as a coroutine function; a KeyboardInterrupt/SystemExit it raises comes out as
    :class:`_Interrupted`, so it unwinds through the tasks (which stop cleanly) instead of stopping
    the event loop mid-step; :meth:`Profiler.arun` re-raises the original."""
    if _is_async_callable(model):

        async def acall(prompt: str) -> Any:
            try:
                return await model(prompt)
            except (KeyboardInterrupt, SystemExit) as e:
                raise _Interrupted(e) from None

        return acall

    async def call(prompt: str) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        ctx = contextvars.copy_context()

        def deliver(ok: bool, value: Any) -> None:
            if not fut.done():
                fut.set_result(value) if ok else fut.set_exception(value)

        def target() -> None:
            try:
                out: tuple[bool, Any] = (True, ctx.run(model, prompt))
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
                out = (False, e)
            try:
                loop.call_soon_threadsafe(deliver, *out)
            except RuntimeError:  # the loop is gone: the run was cancelled or finished
                pass

        threading.Thread(target=target, name="unirouter-profile-call", daemon=True).start()
        try:
            result = await fut
            return await result if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future) else result
        except (KeyboardInterrupt, SystemExit) as e:
            raise _Interrupted(e) from None

    return call


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="call")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


# -- profile_model -----------------------------------------------------------------------------
def _resolve_scorer(scorer: Any, vs: ValidationSet) -> Any:
    if scorer is not None:
        return get_scorer(scorer)
    from unirouter.data.bundled import formats_for
    from unirouter.profiling.scorers import PerPromptScorer

    formats = formats_for(vs)  # the bundled validation set grades each prompt by its own format
    if formats is not None:
        return PerPromptScorer(list(vs.prompts), formats)
    refs = vs.references
    if refs is not None and all(isinstance(r, str) and len(r.strip()) == 1 and r.strip().upper() in "ABCDEFGHIJ" for r in refs):
        return MultipleChoiceScorer()
    if refs is not None and all(_is_number(r) for r in refs):
        return NumericScorer()
    msg = (
        "profiling needs scorer=: 'multiple_choice', 'numeric', 'exact', a Scorer such as "
        "LLMJudgeScorer(judge) (no references needed) or a function (prompt, response, reference) -> float."
    )
    raise InvalidInputError(msg)


def _is_number(x: Any) -> bool:
    try:
        return math.isfinite(float(str(x).replace(",", "")))
    except ValueError:
        return False


def _validation_set(router: Any, validation_set: Any) -> ValidationSet:
    router._check_fitted()
    vs = validation_set if validation_set is not None else getattr(router, "validation_set_", None)
    if vs is None:
        msg = "this router was fitted from validation embeddings only; pass validation_set= (the same prompts, in order)."
        raise InvalidInputError(msg)
    if not isinstance(vs, ValidationSet):
        vs = ValidationSet(check_prompts(vs, what="validation_set"))
    if vs.fingerprint != router.validation_fingerprint_:
        msg = (
            f"validation_set has fingerprint {vs.fingerprint!r} but the router was fitted on {router.validation_fingerprint_!r}; "
            "profile on the router's own validation set (leave validation_set=None)."
        )
        raise ProfileMismatchError(msg)
    return vs


def _cost_spec(cost: Any, n: int) -> float | TokenPrice | np.ndarray:
    """Validate ``cost=`` before any call is made."""
    if cost is None:
        msg = "profiling needs cost=: a cost per query (float) or TokenPrice(input_per_mtok=..., output_per_mtok=...)."
        raise InvalidInputError(msg)
    if isinstance(cost, Mapping):
        if set(cost) != {"input_per_mtok", "output_per_mtok"}:
            msg = f"a cost mapping must have exactly input_per_mtok and output_per_mtok. Got keys {sorted(cost)}."
            raise InvalidInputError(msg)
        cost = TokenPrice(**cost)
    if isinstance(cost, TokenPrice):
        return cost
    if isinstance(cost, (list, tuple, np.ndarray)):
        return check_costs(cost, n=n, what="cost")
    return check_cost(cost, what="cost")


def _costs(cost: float | TokenPrice | np.ndarray, run: ProfilingRun, ok: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """What to give ``build_profile`` as ``cost=``: a float, or per-prompt costs (NaN = failed call)."""
    if isinstance(cost, np.ndarray):
        return np.where(ok, cost, np.nan), {"cost": "per_prompt"}
    if not isinstance(cost, TokenPrice):
        return cost, {"cost": "per_query"}
    out = np.full(run.n, np.nan)
    outputs: list[float | None] = [None] * run.n  # kept so routing can price the expected output (pricing.py)
    estimated = 0
    for i in np.flatnonzero(ok):
        tin, tout = run.input_tokens[i], run.output_tokens[i]
        if tin is None or tout is None:
            estimated += 1
        tin = len(run.prompts[i]) / 4.0 if tin is None else tin
        tout = len(run.texts[i] or "") / 4.0 if tout is None else tout
        out[i] = cost.cost(tin, tout)
        outputs[i] = float(tout)
    meta = {
        "cost": "token_price",
        "token_price": cost.model_dump(),
        "tokens_estimated_from_chars": estimated,
        "output_tokens": outputs,
    }
    return out, meta


async def _grade(
    scorer: Any, run: ProfilingRun, refs: list[Any] | None, ok: np.ndarray, concurrency: int
) -> tuple[np.ndarray, int]:
    """Scores of the successful responses (unparsed = 0.0, failed = NaN) and the unparsed count."""
    scores = np.full(run.n, np.nan)
    idx = np.flatnonzero(ok)
    results: list[Any]
    if hasattr(scorer, "ascore"):
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> Any:
            async with sem:
                return await scorer.ascore(run.prompts[i], run.texts[i], None if refs is None else refs[i])

        results = await asyncio.gather(*(one(i) for i in idx), return_exceptions=True)
    else:
        results = [scorer.score(run.prompts[i], run.texts[i], None if refs is None else refs[i]) for i in idx]
    unparsed = 0
    for i, r in zip(idx, results):
        if isinstance(r, InvalidInputError) or (isinstance(r, BaseException) and not isinstance(r, Exception)):
            raise r
        if isinstance(r, BaseException):
            run.failures[int(i)] = "scorer failed: " + _describe(r, None)
        elif r is None:
            unparsed += 1
            scores[i] = 0.0
        else:
            scores[i] = float(r)
    return scores, unparsed


_log = logging.getLogger("unirouter.profiling.profiler")
_DEFAULT_OUTPUT_TOKENS = 300.0  # a typical short reasoning answer, when nothing better is known


@dataclass(frozen=True)
class ProfilingEstimate:
    """What profiling a model will take, known before any call.

    Attributes
    ----------
    calls : int
        Prompts that need a call (not in the response cache).
    cached : int
        Prompts answered from the cache (free).
    cost : float
        Estimated cost of the calls (USD, or the currency of ``cost=``): prompt characters / 4 input
        tokens and a typical answer length as output tokens with a :class:`TokenPrice`, else the
        cost per query times the calls.
    """

    calls: int
    cached: int
    cost: float

    def __str__(self) -> str:
        return f"{self.calls} calls ({self.cached} cached), about ${self.cost:.4g}"


def _output_tokens(vs: ValidationSet, output_tokens: Any) -> np.ndarray:
    if output_tokens is not None:
        arr = np.broadcast_to(np.asarray(output_tokens, dtype=float), (len(vs),))
        if not np.isfinite(arr).all() or (arr < 0).any():
            msg = "output_tokens must be finite and >= 0 (one number, or one per validation prompt)."
            raise InvalidInputError(msg)
        return arr
    from unirouter.data.bundled import formats_for, typical_output_tokens

    if formats_for(vs) is not None:  # the bundled set knows the known models' typical answer lengths
        return typical_output_tokens()
    return np.full(len(vs), _DEFAULT_OUTPUT_TOKENS)


def estimate_profiling_cost(
    router: Any,
    cost: Any,
    *,
    name: str = "model",
    validation_set: ValidationSet | None = None,
    cache: Any = None,
    model_id: str | None = None,
    generation_settings: Mapping[str, Any] | None = None,
    output_tokens: Any = None,
) -> ProfilingEstimate:
    """How many calls profiling ``name`` needs and about what they cost; makes no call.

    ``output_tokens`` (one number or one per prompt) overrides the typical answer lengths (the
    known models' median on the bundled set, else 300 tokens). Responses in ``cache`` are free.
    """
    vs = _validation_set(router, validation_set)
    spec = _cost_spec(cost, len(vs))
    plan = Profiler(cache=cache, generation_settings=generation_settings, progress=False).plan(
        vs.prompts, model_id=name if model_id is None else model_id
    )
    todo = np.asarray(plan.to_call, dtype=np.int64)
    if isinstance(spec, TokenPrice):
        tin = np.array([len(vs.prompts[i]) / 4.0 for i in todo])
        tout = _output_tokens(vs, output_tokens)[todo]
        total = float((tin * spec.input_per_mtok + tout * spec.output_per_mtok).sum() / 1e6)
    elif isinstance(spec, np.ndarray):
        total = float(np.nansum(spec[todo]))
    else:
        total = float(spec) * len(todo)
    return ProfilingEstimate(calls=int(len(todo)), cached=len(plan.cached), cost=total)


async def aprofile_model(
    router: Any,
    name: str,
    model: Callable[[str], Any],
    *,
    cost: Any = None,
    scorer: Any = None,
    validation_set: ValidationSet | None = None,
    cache: Any = None,
    model_id: str | None = None,
    generation_settings: Mapping[str, Any] | None = None,
    max_concurrency: int = 8,
    timeout: float | None = 60.0,
    max_retries: int = 4,
    backoff_base: float = 0.5,
    backoff_max: float = 20.0,
    max_failure_rate: float = 0.1,
    retry_on: Any = None,
    progress: bool = True,
    random_state: Any = None,
    max_profiling_cost: float | None = None,
) -> ModelProfile:
    """Profile ``model`` on the router's validation set and return its (unregistered) profile.

    Parameters
    ----------
    router : fitted router
    name : str
    model : callable
        Sync or async ``prompt -> text`` or ``prompt -> (text, usage)``.
    cost : float, TokenPrice or array of shape (n_val,)
        Cost per query; a :class:`TokenPrice` prices each response from its reported usage, or
        from characters / 4 (prompt for input, response for output) when none is reported.
    scorer : Scorer, str or callable, optional
        See :func:`unirouter.profiling.scorers.get_scorer`. Inferred from the references when they are all
        option letters (multiple choice) or all numbers.
    validation_set : ValidationSet, optional
        Defaults to ``router.validation_set_``; another set raises :class:`ProfileMismatchError`.
    cache : ResponseCache or path, optional
        Responses already there are not requested again; new ones are stored as they arrive.
    model_id : str, optional
        Identity of the model in the cache (defaults to ``name``).
    max_failure_rate : float, default=0.1
        Largest share of failed calls accepted. Above it, :class:`ProfilingError` lists the causes.
    max_concurrency, timeout, max_retries, backoff_base, backoff_max, retry_on, generation_settings, progress, random_state
        See :class:`Profiler`.
    max_profiling_cost : float, optional
        Refuse to start (:class:`ProfilingCostError`) when the estimate of
        :func:`estimate_profiling_cost` is above this amount. The estimate (calls, cached answers,
        cost) is logged, and printed to stderr when ``progress`` is on, before any call.

    Returns
    -------
    ModelProfile
        Failed calls have score and cost NaN; ``profile.stats`` counts calls made, cached, failed,
        unparsed responses and the wall time of calls and grading; ``profile.metadata`` records the
        model id, scorer, attempts (retries included) and how costs were obtained.

    Raises
    ------
    ProfilingError
        More than ``max_failure_rate`` of the calls failed, or all of them (``.failures``, ``.causes``);
        nothing is registered and the successful responses stay in the cache.
    ProfileMismatchError
        ``validation_set`` is not the router's validation set.
    InvalidInputError
        No ``cost=``, no usable scorer, or references missing for a scorer that needs them; raised
        before any call is made.
    ProfilingCostError
        The estimated cost is above ``max_profiling_cost``; raised before any call is made.
    """
    t0 = time.perf_counter()
    check_model_name(name)
    vs = _validation_set(router, validation_set)
    if not (isinstance(max_failure_rate, (int, float)) and 0.0 <= max_failure_rate <= 1.0):
        msg = f"max_failure_rate must be a number in [0, 1]. Got {max_failure_rate!r}."
        raise InvalidInputError(msg)
    scorer = _resolve_scorer(scorer, vs)
    if getattr(scorer, "needs_reference", False):
        missing = [i for i, r in enumerate(vs.references or [None]) if r is None]
        if vs.references is None or missing:
            msg = f"{type(scorer).__name__} needs a reference answer for every validation prompt; " + (
                "the validation set has none." if vs.references is None else f"prompt {missing[0]} has none."
            )
            raise InvalidInputError(msg)
    if max_profiling_cost is not None and not (
        isinstance(max_profiling_cost, (int, float)) and not isinstance(max_profiling_cost, bool) and max_profiling_cost >= 0
    ):
        msg = f"max_profiling_cost must be a number >= 0 or None. Got {max_profiling_cost!r}."
        raise InvalidInputError(msg)
    estimate = estimate_profiling_cost(
        router, cost, name=name, validation_set=vs, cache=cache, model_id=model_id, generation_settings=generation_settings
    )
    note = f"profiling {name!r}: {estimate} before any call"
    _log.info(note)
    if progress:
        print(f"unirouter: {note}", file=sys.stderr, flush=True)
    if max_profiling_cost is not None and estimate.cost > max_profiling_cost:
        msg = (
            f"profiling {name!r} would make {estimate.calls} calls costing about ${estimate.cost:.4g}, above "
            f"max_profiling_cost={max_profiling_cost:g}. Nothing was called. Raise the limit, or profile on a "
            "smaller validation set (e.g. a stratified subset) with its own router."
        )
        raise ProfilingCostError(msg, estimate=estimate.cost, limit=float(max_profiling_cost), calls=estimate.calls)
    cost = _cost_spec(cost, len(vs))
    profiler = Profiler(
        max_concurrency=max_concurrency, timeout=timeout, max_retries=max_retries, backoff_base=backoff_base,
        backoff_max=backoff_max, retry_on=retry_on, cache=cache, generation_settings=generation_settings,
        progress=progress, random_state=random_state,
    )  # fmt: skip
    mid = name if model_id is None else model_id
    run = await profiler.arun(model, vs.prompts, model_id=mid, desc=f"profiling {name}")
    ok = np.array([t is not None for t in run.texts])
    scores, unparsed = np.full(run.n, np.nan), 0
    if ok.any():
        scores, unparsed = await _grade(scorer, run, vs.references, ok, max_concurrency)
    ok = np.array([i not in run.failures for i in range(run.n)])
    scores[~ok] = np.nan
    n_failed = run.calls_failed
    if n_failed == run.n or n_failed > max_failure_rate * run.n:
        causes = run.failure_causes
        listed = "; ".join(f"{c!r} x{k}" for c, k in list(causes.items())[:5])
        more = f"; and {len(causes) - 5} more causes" if len(causes) > 5 else ""
        msg = (
            f"profiling {name!r} failed: {n_failed} of {run.n} calls failed "
            f"({n_failed / run.n:.0%}, max_failure_rate={max_failure_rate:g}). Causes: {listed}{more}. "
            "Nothing was registered; successful responses are kept in the cache. Fix the cause, or raise "
            "timeout / max_retries / max_failure_rate, and add the model again."
        )
        raise ProfilingError(msg, failures=n_failed, causes=causes)
    if unparsed > 0.5 * ok.sum():
        msg = (
            f"{scorer!r} could not parse {unparsed} of {int(ok.sum())} responses of {name!r} (graded as wrong); "
            "check that the scorer fits the model's answer format."
        )
        warnings.warn(msg, UniRouterWarning, stacklevel=3)
    costs, cost_meta = _costs(cost, run, ok)
    stats = ProfilingStats(
        calls_made=run.calls_made, calls_cached=run.calls_cached, calls_failed=n_failed, unparsed=unparsed,
        wall_time_s=round(time.perf_counter() - t0, 4), failure_causes=dict(list(run.failure_causes.items())[:20]),
    )  # fmt: skip
    metadata = {
        "model_id": mid,
        "scorer": repr(scorer),
        "attempts": run.attempts,
        **cost_meta,
        **({"generation_settings": json.loads(json.dumps(generation_settings, default=repr))} if generation_settings else {}),
    }
    return router.build_profile(name, scores, cost=costs, stats=stats, metadata=metadata)


def profile_model(
    router: Any,
    name: str,
    model: Callable[[str], Any],
    *,
    cost: Any = None,
    scorer: Any = None,
    validation_set: ValidationSet | None = None,
    cache: Any = None,
    model_id: str | None = None,
    generation_settings: Mapping[str, Any] | None = None,
    max_concurrency: int = 8,
    timeout: float | None = 60.0,
    max_retries: int = 4,
    backoff_base: float = 0.5,
    backoff_max: float = 20.0,
    max_failure_rate: float = 0.1,
    retry_on: Any = None,
    progress: bool = True,
    random_state: Any = None,
    max_profiling_cost: float | None = None,
) -> ModelProfile:
    """Sync :func:`aprofile_model` (same parameters); safe to call inside a running event loop."""
    return run_sync(
        aprofile_model(
            router, name, model, cost=cost, scorer=scorer, validation_set=validation_set, cache=cache,
            model_id=model_id, generation_settings=generation_settings, max_concurrency=max_concurrency,
            timeout=timeout, max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max,
            max_failure_rate=max_failure_rate, retry_on=retry_on, progress=progress, random_state=random_state,
            max_profiling_cost=max_profiling_cost,
        )
    )  # fmt: skip
