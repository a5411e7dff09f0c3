"""UniRouteRunnable: a LangChain Runnable that sends each input to the model UniRoute picks for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import add_usage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ensure_config, get_config_list, patch_config
from pydantic import ConfigDict, Field
from unirouter.integration import CandidatePool, RoutingOptions

from unirouter_langchain._adapters import (
    DECISION_KEY,
    SECONDS_KEY,
    PoolMethods,
    RoutingInput,
    account,
    aemit,
    call_options,
    capabilities,
    decide_ahead,
    decision_record,
    emit,
    has_images,
    restrict,
    result_usage,
    routing_text,
    run_metadata,
    sent_text,
    to_messages,
    with_record,
)

__all__ = ["UniRouteRunnable"]

_NOTHING = object()


def _no_chunks(name: str) -> str:
    return f"model {name!r} streamed no chunks."


class _Tally:
    """Sums the token usage and text of streamed chunks, for the realised cost of the call (settled
    once the stream ends: providers report a stream's usage on its last chunk) and the savings ledger."""

    def __init__(self) -> None:
        self.total: Any = None
        self.parts: list[str] = []

    def add(self, chunk: Any) -> Any:
        """Count ``chunk``'s usage and text; return the chunk unchanged."""
        usage = getattr(chunk, "usage_metadata", None)
        if usage:
            self.total = dict(usage) if self.total is None else add_usage(self.total, usage)
        text = getattr(chunk, "text", None)
        if isinstance(text, str):
            self.parts.append(text)
        return chunk

    def settle(self, pool: CandidatePool, decision: Any, attempts: Any, options: RoutingOptions, sent: str) -> None:
        """Settle the call once (a stream abandoned midway is settled for what it streamed)."""
        if getattr(attempts, "settled", None):
            return
        attempts.settled = pool.settle(decision, attempts, options, usage=self.total, prompt=sent, response="".join(self.parts))


def _usage(output: Any) -> Any:
    """Token usage of an answer (a message, or ``include_raw`` output's raw message)."""
    if isinstance(output, dict):
        output = output.get("raw")
    return getattr(output, "usage_metadata", None)



class UniRouteRunnable(PoolMethods, RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Route each input to one of several chat models, chosen by a fitted UniRoute router.

    The input is anything a chat model takes (a string, a list of messages, a ``PromptValue``); the
    output is the chosen model's ``AIMessage``, with the decision in
    ``response_metadata["unirouter"]``. It composes like any Runnable:
    ``prompt | router | StrOutputParser()``.

    Args:
        router: A fitted ``unirouter.UniRouter``.
        models: ``{name: chat_model}``. Models the router holds no profile for are profiled now, on
            the router's validation set (or ``validation_set``), through the core profiler.
        costs: ``{name: cost}``; a cost is USD per query or a ``unirouter.profiling.profiler.TokenPrice``.
        scorer: Grades profiling answers, e.g. ``unirouter.profiling.scorers.MultipleChoiceScorer()``.
        validation_set: Profile on these prompts instead of the router's own validation set.
        response_cache: A ``unirouter.ResponseCache`` (or path): re-profiling costs no calls.
        options: Default routing options (``unirouter.integration.RoutingOptions`` or a mapping):
            ``cost_weight``, ``budget``, ``force_model``, ``allowed_models``, ``excluded_models``,
            ``max_fallbacks``. Any of them can be overridden per call, see below.
        routing_input: What is embedded: ``"contextual"`` (default: the user's latest request, a
            RAG template reduced to its query, a short follow-up with the question it follows),
            ``"last_user"``, ``"user_turns"``, ``"conversation"`` or a callable ``(messages) -> str``.
        profile_kwargs: Passed to the core profiler (``max_concurrency``, ``timeout``,
            ``max_retries``, ``progress``, ...).
        pool: An existing ``unirouter.integration.CandidatePool`` instead of the arguments above.

    ??? info "Per-call options"

        ```python
        router.invoke(question, config={"configurable": {"unirouter": {"budget": 0.0005}}})
        router.invoke(question, config={"configurable": {"unirouter_force_model": "gpt-4o"}})
        ```
        A wrong key or type raises ``unirouter.InvalidInputError`` naming the key.

    ??? info "Observability"

        One chain run per call; the chosen model runs as its child, tagged ``unirouter:<name>``.
        The decision (chosen model, predicted error and cost of every candidate, cost weight,
        cluster, fallback attempts) is in ``response_metadata["unirouter"]`` and is dispatched as
        the custom event ``unirouter_decision`` (see ``astream_events``). Profiling calls are tagged
        ``unirouter:profiling``.

    ??? info "Fallbacks"

        If the chosen model raises, the next best by the same score is tried, up to
        ``max_fallbacks`` more; the attempts are recorded; if all fail the last error is raised.

    ??? info "Batching"

        ``batch`` / ``abatch`` embed all inputs in one call, then run the chosen models
        concurrently.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pool: CandidatePool = Field(exclude=True)
    """The candidates, the router and the default options."""
    routing_input: RoutingInput = "contextual"
    """What the router embeds: ``"last_user"``, ``"conversation"`` or ``(messages) -> str``."""
    prepare: Callable[[BaseChatModel], Runnable] | None = Field(default=None, exclude=True)
    """Applied to the chosen model before the call (e.g. ``with_structured_output``)."""
    required_capabilities: tuple[str, ...] = ()
    """Capabilities every call needs (``"structured_output"`` after ``with_structured_output``);
    inputs with images add ``"image_inputs"``. Only capable candidates are ranked."""

    # -- routing -------------------------------------------------------------------------------
    def _needs(self, input: Any) -> set[str]:
        """The capabilities a call needs: this runnable's, plus images if the input has any."""
        needs = set(self.required_capabilities)
        if input is not None and has_images(to_messages(input)):
            needs.add("image_inputs")
        return needs

    def _options(self, config: RunnableConfig, override: Any = None, input: Any = None) -> RoutingOptions:
        options = self.pool.resolve(call_options(config.get("configurable"), override))
        return restrict(self.pool, options, self._needs(input), capabilities)

    def _decided(self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]) -> RunnableConfig:
        """``config`` with the decision made now, before the run starts: in ``configurable`` for the
        call, and in the run's metadata, where tracers (LangSmith's included) keep it."""
        config = ensure_config(config)
        configurable = config.get("configurable") or {}
        decision = configurable.get(DECISION_KEY)
        if decision is None:
            options = self._options(config, kwargs.get("unirouter"), input)
            started = time.perf_counter()
            messages = to_messages(input)
            decision = self.pool.decide(routing_text(messages, self.routing_input), options, sent=sent_text(messages))
            seconds = time.perf_counter() - started
            config["configurable"] = {**configurable, DECISION_KEY: decision, SECONDS_KEY: seconds}
        config["metadata"] = {**(config.get("metadata") or {}), **run_metadata(decision)}
        return config

    async def _adecided(self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]) -> RunnableConfig:
        config = ensure_config(config)
        configurable = config.get("configurable") or {}
        if configurable.get(DECISION_KEY) is None:
            options = self._options(config, kwargs.get("unirouter"), input)
            started = time.perf_counter()
            messages = to_messages(input)
            decision = await self.pool.adecide(routing_text(messages, self.routing_input), options, sent=sent_text(messages))
            seconds = time.perf_counter() - started
            config["configurable"] = {**configurable, DECISION_KEY: decision, SECONDS_KEY: seconds}
        return self._decided(input, config, kwargs)

    def _target(self, name: str) -> Runnable:
        model = self.pool.get(name).model
        return self.prepare(model) if self.prepare is not None else model

    def _child(self, config: RunnableConfig, run_manager: Any, name: str) -> RunnableConfig:
        child = patch_config(config, callbacks=run_manager.get_child(tag=f"unirouter:{name}"))
        child["configurable"] = {k: v for k, v in child.get("configurable", {}).items() if k not in (DECISION_KEY, SECONDS_KEY)}
        return child

    def _route(self, input: Any, config: RunnableConfig, run_manager: CallbackManagerForChainRun, **kwargs: Any) -> Any:
        options = self._options(config, kwargs.pop("unirouter", None), input)
        decision = config.get("configurable", {}).get(DECISION_KEY)
        if decision is None:
            decision = self.pool.decide(routing_text(to_messages(input), self.routing_input), options, sent=sent_text(to_messages(input)))

        def call(name: str) -> Any:
            return self._target(name).invoke(input, self._child(config, run_manager, name), **kwargs)

        output, attempts = self.pool.run_with_fallbacks(
            decision, options, call, usage_of=result_usage, sent=sent_text(to_messages(input))
        )
        record = decision_record(decision, attempts)
        account(self.pool, decision, record, _usage(output), config.get("configurable", {}).get(SECONDS_KEY))
        emit(record, patch_config(config, callbacks=run_manager.get_child()))
        return with_record(output, record)

    async def _aroute(
        self, input: Any, config: RunnableConfig, run_manager: AsyncCallbackManagerForChainRun, **kwargs: Any
    ) -> Any:
        options = self._options(config, kwargs.pop("unirouter", None), input)
        decision = config.get("configurable", {}).get(DECISION_KEY)
        if decision is None:
            decision = await self.pool.adecide(routing_text(to_messages(input), self.routing_input), options, sent=sent_text(to_messages(input)))

        async def call(name: str) -> Any:
            return await self._target(name).ainvoke(input, self._child(config, run_manager, name), **kwargs)

        output, attempts = await self.pool.arun_with_fallbacks(
            decision, options, call, usage_of=result_usage, sent=sent_text(to_messages(input))
        )
        record = decision_record(decision, attempts)
        account(self.pool, decision, record, _usage(output), config.get("configurable", {}).get(SECONDS_KEY))
        await aemit(record, patch_config(config, callbacks=run_manager.get_child()))
        return with_record(output, record)

    # -- Runnable ------------------------------------------------------------------------------
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        """Route ``input`` and return the chosen model's answer (extra kwargs go to that model)."""
        return self._call_with_config(self._route, input, self._decided(input, config, kwargs), **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        """Async :meth:`invoke`; the embedding runs in a worker thread."""
        return await self._acall_with_config(self._aroute, input, await self._adecided(input, config, kwargs), **kwargs)

    def _stream_route(
        self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        (input,) = list(inputs)
        options = self._options(config, kwargs.pop("unirouter", None), input)
        decision = config.get("configurable", {}).get(DECISION_KEY)
        if decision is None:
            decision = self.pool.decide(routing_text(to_messages(input), self.routing_input), options, sent=sent_text(to_messages(input)))

        def start(name: str) -> tuple[Any, Iterator[Any]]:
            chunks = iter(self._target(name).stream(input, self._child(config, run_manager, name), **kwargs))
            first = next(chunks, _NOTHING)
            if first is _NOTHING:
                raise ValueError(_no_chunks(name))
            return first, chunks

        sent = sent_text(to_messages(input))
        (first, rest), attempts = self.pool.run_with_fallbacks(decision, options, start, sent=sent, defer_settle=True)
        previous, usage = first, _Tally()
        try:
            for chunk in rest:
                yield usage.add(previous)
                previous = chunk
            usage.add(previous)
        finally:
            usage.settle(self.pool, decision, attempts, options, sent)
        record = decision_record(decision, attempts)
        emit(record, patch_config(config, callbacks=run_manager.get_child()))
        account(self.pool, decision, record, usage.total, config.get("configurable", {}).get(SECONDS_KEY))
        yield with_record(previous, record)

    async def _astream_route(
        self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        (input,) = [x async for x in inputs]
        options = self._options(config, kwargs.pop("unirouter", None), input)
        decision = config.get("configurable", {}).get(DECISION_KEY)
        if decision is None:
            decision = await self.pool.adecide(routing_text(to_messages(input), self.routing_input), options, sent=sent_text(to_messages(input)))

        async def start(name: str) -> tuple[Any, AsyncIterator[Any]]:
            chunks = aiter(self._target(name).astream(input, self._child(config, run_manager, name), **kwargs))
            first = await anext(chunks, _NOTHING)
            if first is _NOTHING:
                raise ValueError(_no_chunks(name))
            return first, chunks

        sent = sent_text(to_messages(input))
        (first, rest), attempts = await self.pool.arun_with_fallbacks(decision, options, start, sent=sent, defer_settle=True)
        previous, usage = first, _Tally()
        try:
            async for chunk in rest:
                yield usage.add(previous)
                previous = chunk
            usage.add(previous)
        finally:
            usage.settle(self.pool, decision, attempts, options, sent)
        record = decision_record(decision, attempts)
        await aemit(record, patch_config(config, callbacks=run_manager.get_child()))
        account(self.pool, decision, record, usage.total, config.get("configurable", {}).get(SECONDS_KEY))
        yield with_record(previous, record)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """Stream the chosen model's chunks (a fallback can only happen before the first chunk);
        the last chunk carries the decision in ``response_metadata["unirouter"]``.

        Structured output (``prepare``) is produced whole: its parsers may not stream.
        """
        config = self._decided(input, config, kwargs)
        if self.prepare is not None:
            yield from super().stream(input, config, **kwargs)
            return
        yield from self._transform_stream_with_config(iter([input]), self._stream_route, config, **kwargs)

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        config = await self._adecided(input, config, kwargs)
        if self.prepare is not None:
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk
            return

        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream_route, config, **kwargs):
            yield chunk

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Route all inputs with one embedding call, then run the chosen models concurrently."""
        if not inputs:
            return []
        configs = decide_ahead(
            self.pool, self.routing_input, inputs, get_config_list(config, len(inputs)), kwargs.get("unirouter"), self._needs
        )
        return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Async :meth:`batch`."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        configs = await asyncio.to_thread(decide_ahead, self.pool, self.routing_input, inputs, configs, kwargs.get("unirouter"), self._needs)
        return await super().abatch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    def __repr__(self) -> str:
        return f"UniRouteRunnable(models={self.pool.names}, routing_input={self.routing_input!r})"
