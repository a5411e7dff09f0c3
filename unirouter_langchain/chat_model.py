"""UniRouteChatModel: a LangChain chat model that answers with the model UniRoute picks per call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_usage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field
from unirouter import InvalidInputError
from unirouter.integration import CandidatePool, RoutingOptions

from unirouter_langchain._adapters import (
    CONFIG_NAMESPACE,
    DECISION_KEY,
    SECONDS_KEY,
    PoolMethods,
    RoutingInput,
    account,
    aemit,
    arun_generate,
    arun_stream,
    call_options,
    capabilities,
    child_callbacks,
    decide_ahead,
    decision_record,
    direct_target,
    emit,
    finish_result,
    has_images,
    restrict,
    result_usage,
    routing_text,
    run_generate,
    run_metadata,
    run_stream,
    sent_text,
    to_messages,
)
from unirouter_langchain.runnable import UniRouteRunnable

__all__ = ["UniRouteChatModel"]

_STATE = "unirouter_call"  # private call argument: see _CallState


class _CallState:
    """What the public entry points learn that ``_generate``/``_stream`` cannot see.

    A plain object (not a dataclass) with a short ``repr``: it travels in the call arguments, which
    tracers record, and must not be deep-copied with the callback handlers it refers to.

    ``options``: routing options from ``config["configurable"]``; ``decision``: made before the run
    started (by ``invoke``/``stream`` or ahead by ``batch``); ``parent``: the run about to start
    (langchain-core does not hand its run manager to ``_stream``), so the decision event attaches
    to it; ``seconds``: time spent deciding (for the savings ledger).
    """

    __slots__ = ("decision", "options", "parent", "seconds")

    def __init__(self, options: Mapping[str, Any], decision: Any = None, parent: Any = None) -> None:
        self.options = options
        self.decision = decision
        self.parent = parent
        self.seconds: float | None = None

    def __repr__(self) -> str:  # shows in traced invocation params and LLM-cache keys
        return f"unirouter({dict(self.options)!r})"


class UniRouteChatModel(PoolMethods, BaseChatModel):
    """A chat model that sends every call to the candidate UniRoute picks for it.

    Use it wherever a chat model goes (chains, ``create_agent``, ``with_structured_output``); each
    call embeds the routing text, picks the model with the best predicted quality for its cost, and
    returns that model's answer with the decision in ``response_metadata["unirouter"]``.

    Args:
        router: A fitted ``unirouter.UniRouter``.
        models: ``{name: chat_model}``; models the router holds no profile for are profiled now.
        costs: ``{name: cost}``; USD per query or a ``unirouter.profiling.profiler.TokenPrice``.
        scorer: Grades profiling answers (e.g. ``unirouter.profiling.scorers.MultipleChoiceScorer()``).
        validation_set: Profile on these prompts instead of the router's validation set.
        response_cache: A ``unirouter.ResponseCache`` (or path) for profiling answers.
        options: Default routing options (``cost_weight``, ``budget``, ``force_model``,
            ``allowed_models``, ``excluded_models``, ``max_fallbacks``).
        routing_input: ``"contextual"`` (default: the user's latest request, a RAG template reduced
            to its query, a short follow-up with the question it follows), ``"last_user"``,
            ``"user_turns"``, ``"conversation"`` or ``(messages) -> str``.
        profile_kwargs: Passed to the core profiler.
        pool: An existing ``unirouter.integration.CandidatePool`` instead of the arguments above.

    ??? info "Per-call options"

        Any routing option, per call, three ways (later ones win):
        ```python
        chat.invoke(msgs, config={"configurable": {"unirouter": {"cost_weight": 2.0}}})
        chat.invoke(msgs, config={"configurable": {"unirouter_budget": 0.0005}})
        chat.invoke(msgs, unirouter={"force_model": "gpt-4o"})     # or chat.bind(unirouter={...})
        ```

    ??? info "Agents: routing per step"

        Every model call routes, so an agent routes at each step. With the default
        ``routing_input="last_user"`` the routing text is the user's request at every step of a run
        (tool results are not user messages), so a run stays on one model unless that model fails;
        ``routing_input="conversation"`` lets later steps move as tool results come in.

    ??? info "Tools, images and structured output (capabilities)"

        ``bind_tools`` stores the tools (OpenAI format) and replays ``bind_tools`` on the chosen
        model; ``with_structured_output`` routes, then calls the chosen model's own
        ``with_structured_output``. Such calls (and inputs with image parts) are routed only among
        candidates that can serve them, read from each model's LangChain ``profile``
        (``tool_calling``, ``structured_output``, ``image_inputs``) or, without one, from whether
        its class implements ``bind_tools``. ``required_capabilities`` adds needs to every call.

    ??? info "One run per call: streaming, token usage and tracing"

        The decision is made before the chat-model run starts, and the chosen model runs *inside*
        that run (its own ``_generate``/``_stream``, cache and rate limiter included), so there is
        exactly one chat-model run per call:

        * ``astream_events`` and LCEL streaming emit each token once;
        * ``AIMessage.usage_metadata`` carries the chosen model's usage, counted once by
          ``get_usage_metadata_callback`` and attributed to the real model
          (``response_metadata["model_name"]``);
        * the run starts with the chosen model's ``ls_provider``/``ls_model_name``, the tag
          ``unirouter:<model>`` and the decision in its metadata (``unirouter_model``,
          ``unirouter_decision``); the final record (who answered, fallback attempts, usage,
          savings) is in the outputs (``llm_output["unirouter"]`` and the message's
          ``response_metadata["unirouter"]``) and in the ``unirouter_decision`` custom event.

        Streams fall back only before the first chunk.

    ??? info "Savings"

        ``unirouter.integration.savings.SavingsLedger.for_pool(chat)`` books every call against always using
        the best model; each record then carries its entry under ``"savings"``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pool: CandidatePool = Field(exclude=True)
    """The candidates, the router and the default options."""
    routing_input: RoutingInput = "contextual"
    """What the router embeds: ``"last_user"``, ``"conversation"`` or ``(messages) -> str``."""
    temperature: float | None = None
    """Passed to the chosen model as a call argument when set (else each model's own setting)."""
    max_tokens: int | None = None
    """Passed to the chosen model as a call argument when set."""
    stop: list[str] | None = None
    """Default stop sequences, passed to the chosen model."""
    streaming: bool = False
    """Accepted for compatibility; ``stream``/``astream`` always stream the chosen model."""
    required_capabilities: tuple[str, ...] = ()
    """Capabilities every call needs (``"tool_calling"``, ``"structured_output"``, ``"image_inputs"``);
    calls with tools or images add theirs. Only capable candidates are ranked."""

    # -- identity ------------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "unirouter"

    def _combine_llm_outputs(self, llm_outputs: list[dict | None]) -> dict:
        """Keep the decision record the hooks put in ``llm_output`` (tracers record it in outputs)."""
        records = [o[CONFIG_NAMESPACE] for o in llm_outputs if o and CONFIG_NAMESPACE in o]
        if not records:
            return {}
        return {CONFIG_NAMESPACE: records[0] if len(records) == 1 else records}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "models": self.pool.names,
            "routing_input": self.routing_input if isinstance(self.routing_input, str) else "callable",
            "options": self.pool.defaults.model_dump(exclude_unset=True),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """LangSmith parameters: the chosen model's provider and name when the decision is known.

        The decision is made before the run starts, so tracing attributes cost to the real model.
        """
        params = LangSmithParams(
            ls_provider="unirouter",
            ls_model_name=kwargs.get("model") if isinstance(kwargs.get("model"), str) else "unirouter",
            ls_model_type="chat",
        )
        state = kwargs.get(_STATE)
        if isinstance(state, _CallState) and state.decision is not None and state.decision.model in self.pool.names:
            chosen = self.pool.get(state.decision.model).model
            try:
                theirs = chosen._get_ls_params(stop=stop)
            except Exception:  # noqa: BLE001 - tracing metadata must never break a call
                theirs = {}
            for key in ("ls_provider", "ls_model_name"):
                if theirs.get(key):
                    params[key] = theirs[key]
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- public entry points: carry what _generate/_stream cannot see ----------------------------
    def _with_state(
        self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any], *, decide: bool = True
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        """Route now (before the run starts) and hand the decision to the hooks.

        Deciding first lets the run start with the chosen model's ``ls_provider``/``ls_model_name``
        and the decision in its metadata, which is what tracers (LangSmith's included) keep. The
        run id is fixed here so the hooks can attach the decision event to this run even where
        langchain-core does not pass them a run manager (``_stream``/``_astream``).
        """
        config, parent = self._parent(config)
        configurable = config.get("configurable") or {}
        options = call_options(configurable)
        state = _CallState(options, configurable.get(DECISION_KEY), parent)
        state.seconds = configurable.get(SECONDS_KEY)
        if state.decision is None and decide:
            state.decision = self._decide(input, state, kwargs)
        if state.decision is not None:
            _describe(config, state.decision)
        return config, {**kwargs, _STATE: state}

    def _needs_of(self, kwargs: Mapping[str, Any]) -> Callable[[Any], set[str]]:
        """The capabilities a call needs: the model's own, tools if bound, images if the input has any."""

        def needs(input: Any) -> set[str]:
            out = set(self.required_capabilities)
            if kwargs.get("tools"):
                out.add("tool_calling")
            if has_images(to_messages(input)):
                out.add("image_inputs")
            return out

        return needs

    def _resolve(self, state: _CallState, kwargs: Mapping[str, Any], messages: list[BaseMessage]) -> RoutingOptions:
        """The call's options, restricted to the candidates able to serve the request."""
        options = self.pool.resolve({**state.options, **call_options(None, kwargs.get("unirouter"))})
        return restrict(self.pool, options, self._needs_of(kwargs)(messages), capabilities)

    def _decide(self, input: Any, state: _CallState, kwargs: Mapping[str, Any]) -> Any:
        messages = to_messages(input)
        started = time.perf_counter()
        decision = self.pool.decide(self._text(messages), self._resolve(state, kwargs, messages), sent=sent_text(messages))
        state.seconds = time.perf_counter() - started
        return decision

    async def _adecide(self, input: Any, state: _CallState, kwargs: Mapping[str, Any]) -> Any:
        messages = to_messages(input)
        started = time.perf_counter()
        decision = await self.pool.adecide(self._text(messages), self._resolve(state, kwargs, messages), sent=sent_text(messages))
        state.seconds = time.perf_counter() - started
        return decision

    async def _awith_state(self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]) -> tuple[RunnableConfig, dict[str, Any]]:
        config, kwargs = self._with_state(input, config, kwargs, decide=False)
        state: _CallState = kwargs[_STATE]
        if state.decision is None:
            state.decision = await self._adecide(input, state, kwargs)
            _describe(config, state.decision)
        return config, kwargs

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        """Route ``input`` and return the chosen model's answer (one chat-model run, see the class docs)."""
        config, kwargs = self._with_state(input, config, kwargs)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        """Async :meth:`invoke`; the embedding runs in a worker thread."""
        config, kwargs = await self._awith_state(input, config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def _parent(self, config: RunnableConfig | None) -> tuple[RunnableConfig, Any]:
        """Fix the id of the run about to start and describe it, so events can be attached to it."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid4()
        config["run_id"] = run_id
        cm = CallbackManager.configure(config.get("callbacks"), None, self.verbose, config.get("tags"), None, config.get("metadata"))
        parent = SimpleNamespace(
            run_id=run_id,
            inheritable_handlers=cm.inheritable_handlers,
            inheritable_tags=cm.inheritable_tags,
            inheritable_metadata=cm.inheritable_metadata,
        )
        return config, parent

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """Stream the chosen model's chunks; the last one carries the decision."""
        config, kwargs = self._with_state(input, config, kwargs)
        yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream` (also what ``astream_events`` and LCEL streaming call)."""
        config, kwargs = await self._awith_state(input, config, kwargs)
        async for chunk in super().astream(input, config, stop=stop, **kwargs):
            yield chunk

    def batch(self, inputs: list[LanguageModelInput], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        """Route all inputs with one embedding call, then call the chosen models concurrently."""
        if not inputs:
            return []
        needs = self._needs_of(kwargs)
        configs = decide_ahead(self.pool, self.routing_input, inputs, get_config_list(config, len(inputs)), kwargs.get("unirouter"), needs)
        return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self, inputs: list[LanguageModelInput], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[AIMessage]:
        """Async :meth:`batch`."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        needs = self._needs_of(kwargs)
        configs = await asyncio.to_thread(decide_ahead, self.pool, self.routing_input, inputs, configs, kwargs.get("unirouter"), needs)
        return await super().abatch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    # -- shared by all four hooks ----------------------------------------------------------------
    def _begin(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[_CallState, RoutingOptions, dict[str, Any], dict[str, Any] | None]:
        """(state, options, call kwargs for the chosen model, tool binding or None)."""
        state: _CallState = kwargs.pop(_STATE, None) or _CallState({})
        options = self._resolve(state, kwargs, messages)
        kwargs.pop("unirouter", None)
        tools = None
        if "tools" in kwargs:
            tools = {"tools": kwargs.pop("tools"), **kwargs.pop("unirouter_tool_kwargs", {})}
            if kwargs.get("tool_choice") is not None:
                tools["tool_choice"] = kwargs.pop("tool_choice")
            kwargs.pop("tool_choice", None)
        call_kwargs = dict(kwargs)
        call_kwargs.pop("stream", None)
        if stop or self.stop:
            call_kwargs["stop"] = stop or self.stop
        for key in ("temperature", "max_tokens"):
            if getattr(self, key) is not None:
                call_kwargs.setdefault(key, getattr(self, key))
        return state, options, call_kwargs, tools

    def _target(self, name: str, tools: dict[str, Any] | None, call_kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(the chosen model, its call arguments), the tools bound the model's own way."""
        return direct_target(self.pool.get(name).model, tools, call_kwargs)

    def _text(self, messages: list[BaseMessage]) -> str:
        return routing_text(messages, self.routing_input)

    def _finish(self, state: _CallState, decision: Any, attempts: list[dict[str, Any]], message: Any) -> dict[str, Any]:
        record = decision_record(decision, attempts)
        usage = getattr(message, "usage_metadata", None)
        if usage:
            record["usage"] = dict(usage)
        account(self.pool, decision, record, usage, state.seconds)
        return record

    # -- BaseChatModel hooks --------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        state, options, call_kwargs, tools = self._begin(messages, stop, kwargs)
        decision = state.decision or self.pool.decide(self._text(messages), options, sent=sent_text(messages))

        def call(name: str) -> ChatResult:
            model, kw = self._target(name, tools, call_kwargs)
            return run_generate(model, messages, kw)

        result, attempts = self.pool.run_with_fallbacks(decision, options, call, usage_of=result_usage, sent=sent_text(messages))
        message = result.generations[0].message
        record = self._finish(state, decision, attempts, message)
        emit(record, {"callbacks": child_callbacks(run_manager or state.parent)})
        return finish_result(result, record)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        state, options, call_kwargs, tools = self._begin(messages, stop, kwargs)
        decision = state.decision or await self.pool.adecide(self._text(messages), options, sent=sent_text(messages))

        async def call(name: str) -> ChatResult:
            model, kw = self._target(name, tools, call_kwargs)
            return await arun_generate(model, messages, kw)

        result, attempts = await self.pool.arun_with_fallbacks(decision, options, call, usage_of=result_usage, sent=sent_text(messages))
        message = result.generations[0].message
        record = self._finish(state, decision, attempts, message)
        await aemit(record, {"callbacks": child_callbacks(run_manager or state.parent, is_async=True)})
        return finish_result(result, record)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        state, options, call_kwargs, tools = self._begin(messages, stop, kwargs)
        parent = run_manager or state.parent
        decision = state.decision or self.pool.decide(self._text(messages), options, sent=sent_text(messages))

        def start(name: str) -> tuple[ChatGenerationChunk, Iterator[ChatGenerationChunk]]:
            model, kw = self._target(name, tools, call_kwargs)
            chunks = iter(run_stream(model, messages, kw))
            first = next(chunks, None)
            if first is None:
                raise ValueError(_no_chunks(name))
            return first, chunks

        sent = sent_text(messages)
        (first, rest), attempts = self.pool.run_with_fallbacks(decision, options, start, sent=sent, defer_settle=True)
        tally = _StreamTally(self.pool, decision, attempts, options, sent)
        previous = first
        try:
            for chunk in rest:
                yield tally.add(previous)
                previous = chunk
            tally.add(previous)
        finally:
            tally.settle()  # also when the stream is abandoned or fails midway: its cost so far
        record = self._finish(state, decision, attempts, SimpleNamespace(usage_metadata=tally.usage))
        emit(record, {"callbacks": child_callbacks(parent)})
        yield _last(previous, record)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        state, options, call_kwargs, tools = self._begin(messages, stop, kwargs)
        parent = run_manager or state.parent
        decision = state.decision or await self.pool.adecide(self._text(messages), options, sent=sent_text(messages))

        async def start(name: str) -> tuple[ChatGenerationChunk, AsyncIterator[ChatGenerationChunk]]:
            model, kw = self._target(name, tools, call_kwargs)
            chunks = aiter(arun_stream(model, messages, kw))
            first = await anext(chunks, None)
            if first is None:
                raise ValueError(_no_chunks(name))
            return first, chunks

        sent = sent_text(messages)
        (first, rest), attempts = await self.pool.arun_with_fallbacks(decision, options, start, sent=sent, defer_settle=True)
        tally = _StreamTally(self.pool, decision, attempts, options, sent)
        previous = first
        try:
            async for chunk in rest:
                yield tally.add(previous)
                previous = chunk
            tally.add(previous)
        finally:
            tally.settle()
        record = self._finish(state, decision, attempts, SimpleNamespace(usage_metadata=tally.usage))
        await aemit(record, {"callbacks": child_callbacks(parent, is_async=True)})
        yield _last(previous, record)

    # -- tools and structured output ------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; each call replays ``bind_tools(tools, tool_choice=..., **kwargs)`` on the chosen model.

        Tools are converted to the OpenAI tool format, which LangChain chat models accept.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        bound: dict[str, Any] = {"tools": formatted}
        if tool_choice is not None:
            bound["tool_choice"] = tool_choice
        if kwargs:
            bound["unirouter_tool_kwargs"] = kwargs
        return super().bind(**bound)

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """Route, then run the chosen model's own ``with_structured_output(schema, ...)``.

        ``kwargs`` (``method``, ``strict``, ...) go to the chosen model. The result is a
        :class:`UniRouteRunnable` over the same candidates, options and routing input.
        """
        if kwargs.get("method") not in (None, "function_calling", "json_schema", "json_mode"):
            msg = f"method must be 'function_calling', 'json_schema' or 'json_mode'. Got {kwargs['method']!r}."
            raise InvalidInputError(msg)

        def prepare(model: BaseChatModel) -> Runnable:
            return model.with_structured_output(schema, include_raw=include_raw, **kwargs)

        needs = {*self.required_capabilities, "structured_output"}
        return UniRouteRunnable(pool=self.pool, routing_input=self.routing_input, prepare=prepare, required_capabilities=tuple(sorted(needs)))


def _describe(config: RunnableConfig, decision: Any) -> None:
    """Put the decision where tracers keep it: the run's metadata and a ``unirouter:<model>`` tag."""
    config["metadata"] = {**(config.get("metadata") or {}), **run_metadata(decision)}
    config["tags"] = [*(config.get("tags") or []), f"unirouter:{decision.model}"]


def _no_chunks(name: str) -> str:
    return f"model {name!r} streamed no chunks."


class _StreamTally:
    """Sums a stream's usage and text as it goes, then settles the call's realised cost once.

    LangChain providers report a stream's usage on its chunks (``usage_metadata``, usually the last
    one), so the cost is known only at the end: :meth:`settle` prices that usage (or, where none
    came, the text sent and received) and feeds the pool's pacer, like a whole answer does.
    """

    def __init__(self, pool: CandidatePool, decision: Any, attempts: Any, options: RoutingOptions, sent: str) -> None:
        self.pool, self.decision, self.attempts, self.options, self.sent = pool, decision, attempts, options, sent
        self.usage: Any = None
        self.parts: list[str] = []
        self.settled = False

    def add(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        self.usage = _add_usage(self.usage, chunk)
        self.parts.append(chunk.text or "")
        return chunk

    def settle(self) -> None:
        if self.settled:
            return
        self.settled = True
        self.attempts.settled = self.pool.settle(
            self.decision, self.attempts, self.options, usage=self.usage, prompt=self.sent, response="".join(self.parts)
        )


def _add_usage(total: Any, chunk: ChatGenerationChunk) -> Any:
    usage = getattr(chunk.message, "usage_metadata", None)
    if not usage:
        return total
    return dict(usage) if total is None else add_usage(total, usage)


def _last(chunk: ChatGenerationChunk, record: dict[str, Any]) -> ChatGenerationChunk:
    """The final chunk with the decision record in ``response_metadata["unirouter"]``."""
    message = chunk.message
    metadata = {**message.response_metadata, CONFIG_NAMESPACE: record}
    return ChatGenerationChunk(message=message.model_copy(update={"response_metadata": metadata}), generation_info=chunk.generation_info)

