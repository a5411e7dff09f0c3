"""UniRouteChatModel: a LangChain chat model that answers with the model UniRoute picks per call."""

from __future__ import annotations

import asyncio
import json
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
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field
from unirouter import InvalidInputError
from unirouter.integration import CandidatePool, RoutingOptions

from unirouter_langchain._adapters import (
    DECISION_KEY,
    PoolMethods,
    RoutingInput,
    aemit,
    call_options,
    child_callbacks,
    decide_ahead,
    decision_record,
    emit,
    result_usage,
    routing_text,
    sent_text,
    with_record,
)
from unirouter_langchain.runnable import UniRouteRunnable

__all__ = ["UniRouteChatModel"]

_STATE = "unirouter_call"  # private call argument: see _CallState


class _CallState:
    """What the public entry points learn that ``_generate``/``_stream`` cannot see.

    A plain object (not a dataclass) with a short ``repr``: it travels in the call arguments, which
    tracers record, and must not be deep-copied with the callback handlers it refers to.

    ``options``: routing options from ``config["configurable"]``; ``decision``: made ahead by
    ``batch``; ``parent``: the run ``stream``/``astream`` opened (langchain-core does not hand its run
    manager to ``_stream``), so the chosen model still runs as its child.
    """

    __slots__ = ("decision", "options", "parent")

    def __init__(self, options: Mapping[str, Any], decision: Any = None, parent: Any = None) -> None:
        self.options = options
        self.decision = decision
        self.parent = parent

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
        costs: ``{name: cost}``; USD per query or a ``unirouter.profiler.TokenPrice``.
        scorer: Grades profiling answers (e.g. ``unirouter.scorers.MultipleChoiceScorer()``).
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

    ??? info "Tools and structured output"

        ``bind_tools`` stores the tools (OpenAI format) and replays ``bind_tools`` on the chosen
        model; ``with_structured_output`` routes, then calls the chosen model's own
        ``with_structured_output``. A candidate that cannot do it raises, and the next one is tried.

    ??? info "Token usage"

        Tokens are counted once, on the chosen model's own run (a child run tagged
        ``unirouter:<name>``, attributed to the real model). The router's message carries the same
        numbers in ``response_metadata["unirouter"]["usage"]`` instead of ``usage_metadata``, so
        ``get_usage_metadata_callback`` and tracing do not count them twice.

    ??? info "Streaming"

        ``stream``/``astream`` stream the chosen model's chunks (fallback happens only before the
        first chunk). Implicit streaming (``astream_events``, LangGraph ``"messages"``) goes
        through ``_generate``, where the chosen model streams in its own child run.
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

    # -- identity ------------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "unirouter"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "models": self.pool.names,
            "routing_input": self.routing_input if isinstance(self.routing_input, str) else "callable",
            "options": self.pool.defaults.model_dump(exclude_unset=True),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="unirouter",
            ls_model_name=kwargs.get("model") if isinstance(kwargs.get("model"), str) else "unirouter",
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- public entry points: carry what _generate/_stream cannot see ----------------------------
    def _with_state(self, config: RunnableConfig | None, kwargs: dict[str, Any], parent: Any = None) -> dict[str, Any]:
        configurable = (config or {}).get("configurable") or {}
        options = call_options(configurable)
        state = _CallState(options, configurable.get(DECISION_KEY), parent)
        return {**kwargs, _STATE: state}

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return super().invoke(input, config, stop=stop, **self._with_state(config, kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **self._with_state(config, kwargs))

    def _stream_parent(self, config: RunnableConfig | None) -> tuple[RunnableConfig, Any]:
        """Fix the id of the run ``stream`` opens and describe it, so its child can be attached."""
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
        config, parent = self._stream_parent(config)
        yield from super().stream(input, config, stop=stop, **self._with_state(config, kwargs, parent))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        config, parent = self._stream_parent(config)
        async for chunk in super().astream(input, config, stop=stop, **self._with_state(config, kwargs, parent)):
            yield chunk

    def batch(self, inputs: list[LanguageModelInput], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        """Route all inputs with one embedding call, then call the chosen models concurrently."""
        if not inputs:
            return []
        configs = decide_ahead(self.pool, self.routing_input, inputs, get_config_list(config, len(inputs)), kwargs.get("unirouter"))
        return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self, inputs: list[LanguageModelInput], config: Any = None, *, return_exceptions: bool = False, **kwargs: Any
    ) -> list[AIMessage]:
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        configs = await asyncio.to_thread(decide_ahead, self.pool, self.routing_input, inputs, configs, kwargs.get("unirouter"))
        return await super().abatch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        # Only the explicit stream()/astream() use _stream. Implicit streaming (astream_events, LangGraph
        # "messages") goes through _generate, whose run manager makes the chosen model a child run
        # that streams its own tokens to the inherited handlers.
        return bool(kwargs.get("stream")) and super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    # -- shared by all four hooks ----------------------------------------------------------------
    def _begin(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[_CallState, RoutingOptions, dict[str, Any], dict[str, Any] | None]:
        """(state, options, call kwargs for the chosen model, tool binding or None)."""
        state: _CallState = kwargs.pop(_STATE, None) or _CallState({})
        options = self.pool.resolve({**state.options, **call_options(None, kwargs.pop("unirouter", None))})
        tools = None
        if "tools" in kwargs:
            tools = {"tools": kwargs.pop("tools"), **kwargs.pop("unirouter_tool_kwargs", {})}
            if kwargs.get("tool_choice") is not None:
                tools["tool_choice"] = kwargs.pop("tool_choice")
            kwargs.pop("tool_choice", None)
        call_kwargs = dict(kwargs)
        if stop or self.stop:
            call_kwargs["stop"] = stop or self.stop
        for key in ("temperature", "max_tokens"):
            if getattr(self, key) is not None:
                call_kwargs.setdefault(key, getattr(self, key))
        return state, options, call_kwargs, tools

    def _target(self, name: str, tools: dict[str, Any] | None) -> Runnable:
        model = self.pool.get(name).model
        if tools is None:
            return model
        tools = dict(tools)
        return model.bind_tools(tools.pop("tools"), **tools)

    def _text(self, messages: list[BaseMessage]) -> str:
        return routing_text(messages, self.routing_input)

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

        def call(name: str) -> BaseMessage:
            config = {"callbacks": child_callbacks(run_manager, f"unirouter:{name}")}
            return self._target(name, tools).invoke(messages, config, **call_kwargs)

        message, attempts = self.pool.run_with_fallbacks(
            decision, options, call, usage_of=result_usage, sent=sent_text(messages)
        )
        record = decision_record(decision, attempts)
        message = with_record(message, record, move_usage=True)
        emit(record, {"callbacks": child_callbacks(run_manager)})
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        state, options, call_kwargs, tools = self._begin(messages, stop, kwargs)
        decision = state.decision or await self.pool.adecide(self._text(messages), options, sent=sent_text(messages))

        async def call(name: str) -> BaseMessage:
            config = {"callbacks": child_callbacks(run_manager, f"unirouter:{name}", is_async=True)}
            return await self._target(name, tools).ainvoke(messages, config, **call_kwargs)

        message, attempts = await self.pool.arun_with_fallbacks(
            decision, options, call, usage_of=result_usage, sent=sent_text(messages)
        )
        record = decision_record(decision, attempts)
        message = with_record(message, record, move_usage=True)
        await aemit(record, {"callbacks": child_callbacks(run_manager, is_async=True)})
        return ChatResult(generations=[ChatGeneration(message=message)])

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

        def start(name: str) -> tuple[AIMessageChunk, Iterator[AIMessageChunk]]:
            config = {"callbacks": child_callbacks(parent, f"unirouter:{name}")}
            chunks = iter(self._target(name, tools).stream(messages, config, **call_kwargs))
            return _first(chunks, name), chunks

        (first, rest), attempts = self.pool.run_with_fallbacks(decision, options, start, sent=sent_text(messages))
        record = decision_record(decision, attempts)
        emit(record, {"callbacks": child_callbacks(parent)})
        yield from _relay(first, rest, record)

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

        async def start(name: str) -> tuple[AIMessageChunk, AsyncIterator[AIMessageChunk]]:
            config = {"callbacks": child_callbacks(parent, f"unirouter:{name}", is_async=True)}
            chunks = aiter(self._target(name, tools).astream(messages, config, **call_kwargs))
            first = await anext(chunks, None)
            if first is None:
                raise ValueError(_no_chunks(name))
            return first, chunks

        (first, rest), attempts = await self.pool.arun_with_fallbacks(decision, options, start, sent=sent_text(messages))
        record = decision_record(decision, attempts)
        await aemit(record, {"callbacks": child_callbacks(parent, is_async=True)})
        usage = _Usage()
        previous = first
        async for chunk in rest:
            yield usage.strip(previous)
            previous = chunk
        yield usage.finish(previous, record)

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

        return UniRouteRunnable(pool=self.pool, routing_input=self.routing_input, prepare=prepare)


def _no_chunks(name: str) -> str:
    return f"model {name!r} streamed no chunks."


def _first(chunks: Iterator[Any], name: str) -> Any:
    first = next(chunks, None)
    if first is None:
        raise ValueError(_no_chunks(name))
    return first


class _Usage:
    """Moves streamed token usage from the chunks into the decision record (counted once)."""

    def __init__(self) -> None:
        self.total: Any = None

    def strip(self, chunk: BaseMessage) -> ChatGenerationChunk:
        chunk = _as_chunk(chunk)
        update: dict[str, Any] = {"chunk_position": None}
        if chunk.usage_metadata:
            self.total = chunk.usage_metadata if self.total is None else add_usage(self.total, chunk.usage_metadata)
            update["usage_metadata"] = None
        return ChatGenerationChunk(message=chunk.model_copy(update=update))

    def finish(self, chunk: AIMessageChunk, record: dict[str, Any]) -> ChatGenerationChunk:
        out = self.strip(chunk).message
        if self.total is not None:
            record["usage"] = dict(self.total)
        metadata = {**out.response_metadata, "unirouter": record}
        return ChatGenerationChunk(message=out.model_copy(update={"chunk_position": "last", "response_metadata": metadata}))


def _as_chunk(message: BaseMessage) -> AIMessageChunk:
    """A model without native streaming yields its whole ``AIMessage`` once: make it a chunk."""
    if isinstance(message, AIMessageChunk):
        return message
    calls = getattr(message, "tool_calls", None) or []
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        id=message.id,
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_call_chunks=[
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i) for i, c in enumerate(calls)
        ],
    )


def _relay(first: AIMessageChunk, rest: Iterator[AIMessageChunk], record: dict[str, Any]) -> Iterator[ChatGenerationChunk]:
    """Yield the chosen model's chunks; the last one carries the decision record."""
    usage = _Usage()
    previous = first
    for chunk in rest:
        yield usage.strip(previous)
        previous = chunk
    yield usage.finish(previous, record)
