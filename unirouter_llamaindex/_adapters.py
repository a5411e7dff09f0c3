"""Conversion between LlamaIndex objects and the core's inputs and outputs (no routing logic here).

* messages and queries -> the text the router embeds;
* a LlamaIndex ``LLM`` -> the profiler's ``async (prompt) -> (text, usage)`` call;
* provider errors -> ``is_retryable`` (which the core profiler honours);
* a decision -> ``response.additional_kwargs["unirouter"]`` and a :class:`UniRouteDecisionEvent`;
* streams primed before they are returned, so a model that fails on connect falls back.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
)
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import LLM
from unirouter import InvalidInputError
from unirouter.integration.routing_text import routing_text as _core_routing_text

__all__ = ["RoutingInput", "UniRouteDecisionEvent"]

METADATA_KEY = "unirouter"
dispatcher = get_dispatcher("unirouter_llamaindex")

_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_RETRYABLE_NAMES = ("RateLimit", "Timeout", "APIConnection", "Overloaded", "ServiceUnavailable", "InternalServer")


class UniRouteDecisionEvent(BaseEvent):
    """Emitted (instrumentation) each time a UniRoute component routes a query or a call.

    Attributes:
        source: ``"llm.<method>"`` or ``"selector"``.
        record: ``RoutingDecision.to_dict()`` (the chosen model, the ranked fallbacks, the predicted
            error and expected cost of every candidate) plus, for the LLM, ``answered_by`` and
            ``attempts`` (the same record as ``additional_kwargs["unirouter"]``).
    """

    source: str
    record: dict[str, Any]

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's event name."""
        return "UniRouteDecisionEvent"


def emit(source: str, record: dict[str, Any]) -> None:
    """Dispatch a :class:`UniRouteDecisionEvent` to LlamaIndex instrumentation handlers."""
    dispatcher.event(UniRouteDecisionEvent(source=source, record=record))


# -- text --------------------------------------------------------------------------------------
def message_text(message: ChatMessage) -> str:
    """The text blocks of a message (images, audio, tool calls and other blocks are skipped)."""
    return message.content or ""


RoutingInput = Literal["contextual", "last_user", "user_turns", "conversation"] | Callable[[list[ChatMessage]], str]
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system", "tool": "tool", "function": "tool"}


def messages_to_text(messages: Sequence[ChatMessage], how: RoutingInput = "contextual") -> str:
    """The text the router embeds for a conversation (chosen by :func:`unirouter.integration.routing_text.routing_text`).

    Args:
        messages: The conversation.
        how: ``"contextual"`` (default): the latest user message (a RAG template reduced to its
            query; inside a query engine, the engine's query itself), with the earlier user turns
            before it when it is a short follow-up; ``"last_user"``: the latest user message with
            text; ``"user_turns"``: every user message; ``"conversation"``: every message with text,
            one ``role: text`` line each; or a callable ``(messages) -> str``.

    Raises:
        InvalidInputError: The messages hold no text to route on.
    """
    messages = list(messages)
    if callable(how):
        return require_text(how(messages), "the routing_input callable's result")
    if how == "contextual":
        query = query_for(*(message_text(m) for m in messages if m.role == MessageRole.USER))
        if query is not None:
            return query
    turns = [(_ROLES.get(m.role.value, m.role.value), message_text(m)) for m in messages]
    return _core_routing_text(turns, how)


def sent_text(messages: Sequence[ChatMessage]) -> str:
    """Every text block of the messages sent, for pricing the input tokens of the call."""
    return "\n".join(t for m in messages if (t := message_text(m)))


# -- the query of a query engine ---------------------------------------------------------------
# LLM.predict/stream format a prompt template (e.g. the text-QA template with the retrieved context)
# and then call chat/complete with the formatted text. UniRouteLLM's _get_prompt/_get_messages
# remember, per context, which formatted text carried which ``query_str``, so the call that follows
# is routed on the query rather than the template.
_QUERIES: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("unirouter_llamaindex_queries", default=())


def remember_query(formatted: str, template: Any, prompt_args: Mapping[str, Any]) -> None:
    """Remember the ``query_str`` a template was formatted with (the last few, per context)."""
    query = prompt_args.get("query_str") or (getattr(template, "kwargs", None) or {}).get("query_str")
    if isinstance(query, str) and query.strip() and isinstance(formatted, str):
        _QUERIES.set((*_QUERIES.get()[-7:], (formatted, query)))


def query_for(*texts: str) -> str | None:
    """The remembered query of a formatted text among ``texts`` (the latest match), if any."""
    for formatted, query in reversed(_QUERIES.get()):
        if formatted in texts:
            return query
    return None


def response_usage(response: Any) -> tuple[Any, str | None]:
    """``(usage, text)`` of a chat or completion response, for the realised cost of the call."""
    if isinstance(response, ChatResponse):
        return usage_of(response), response.message.content
    if isinstance(response, CompletionResponse):
        return usage_of(response), response.text
    return None, None


def tools_routing_text(
    user_msg: str | ChatMessage | None, chat_history: Sequence[ChatMessage] | None, how: RoutingInput = "contextual"
) -> str:
    """The routing text of a tool call: the history plus the new user message."""
    messages = list(chat_history or [])
    if user_msg is not None:
        messages.append(user_msg if isinstance(user_msg, ChatMessage) else ChatMessage(role="user", content=user_msg))
    return messages_to_text(messages, how)


def require_text(text: str, what: str) -> str:
    """``text`` if it is a non-empty string, else a typed error naming ``what``."""
    if not isinstance(text, str) or not text.strip():
        msg = f"{what} has no text to route on. Got {text!r}; give a non-empty prompt or user message."
        raise InvalidInputError(msg)
    return text


# -- profiling ---------------------------------------------------------------------------------
def usage_of(response: ChatResponse | CompletionResponse) -> Any:
    """The token usage of a LlamaIndex response, for the core's ``usage_tokens`` (None when unknown).

    llama-index-llms-openai and others put ``prompt_tokens``/``completion_tokens`` in
    ``additional_kwargs``; otherwise the provider's ``raw`` response (with its ``usage``) is used.
    """
    if any(k in response.additional_kwargs for k in _USAGE_KEYS):
        return response.additional_kwargs
    return response.raw


def mark_retryable(exc: BaseException) -> BaseException:
    """Set ``exc.is_retryable`` for rate limits, timeouts and 5xx errors of provider SDKs."""
    if getattr(exc, "is_retryable", None) is None:
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
        name = type(exc).__name__
        retryable = status in _RETRYABLE_STATUS or any(part in name for part in _RETRYABLE_NAMES)
        try:
            exc.is_retryable = retryable  # type: ignore[attr-defined]
        except AttributeError:  # exceptions with __slots__
            pass
    return exc


def profiling_call(llm: LLM) -> Callable[[str], Awaitable[tuple[str, Any]]]:
    """The core profiler's view of ``llm``: one user message through ``achat``, text and usage back.

    A ``functools.partial`` of a module function (not a closure), so pools pickle.
    """
    return functools.partial(_profile_once, llm)


async def _profile_once(llm: LLM, prompt: str) -> tuple[str, Any]:
    try:
        response = await llm.achat([ChatMessage(role=MessageRole.USER, content=prompt)])
    except Exception as e:
        mark_retryable(e)
        raise
    return response.message.content or "", usage_of(response)


def account(pool: Any, decision: Any, record: dict[str, Any], result: Any, seconds: float | None) -> None:
    """Book the call in ``pool.savings`` (if a ledger is attached) and put the entry in the record.

    Streams are booked when they are returned, at the router's expected cost (their usage is not
    known yet).
    """
    from unirouter.integration.savings import book_call

    usage = usage_of(result) if isinstance(result, (ChatResponse, CompletionResponse)) else None
    entry = book_call(pool, decision, answered_by=record.get("answered_by"), usage=usage, routing_seconds=seconds)
    if entry is not None:
        record["savings"] = entry


# -- results -----------------------------------------------------------------------------------
def decision_record(decision: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """What goes in ``additional_kwargs["unirouter"]``: the decision, who answered, and the attempts."""
    ok = next((a for a in attempts if a.get("ok")), {})
    record = {**decision.to_dict(), "answered_by": ok.get("model"), "attempts": attempts}
    record.update(getattr(attempts, "settled", None) or {})  # realised cost and budget state (issue 17)
    return record


def _tag_one(response: Any, info: dict[str, Any]) -> Any:
    if isinstance(response, (ChatResponse, CompletionResponse)):
        response.additional_kwargs[METADATA_KEY] = info
    return response


def tag(result: Any, info: dict[str, Any]) -> Any:
    """Attach the decision record to a response, or to every chunk of a (primed) stream."""
    if isinstance(result, Generator):
        return (_tag_one(chunk, info) for chunk in result)
    if isinstance(result, AsyncGenerator):

        async def agen() -> AsyncGenerator[Any, None]:
            async for chunk in result:
                yield _tag_one(chunk, info)

        return agen()
    return _tag_one(result, info)


def answered_by(response: Any) -> str | None:
    """The candidate that wrote ``response`` (from its decision record), or None."""
    info = getattr(response, "additional_kwargs", {}).get(METADATA_KEY)
    return info.get("answered_by") if isinstance(info, dict) else None


_END = object()


def prime(stream: Generator[Any, None, None]) -> Generator[Any, None, None]:
    """Pull the first chunk now (so connect errors surface and fall back), then replay the stream."""
    first = next(stream, _END)

    def gen() -> Generator[Any, None, None]:
        if first is not _END:
            yield first
        yield from stream

    return gen()


async def aprime(pending: Awaitable[AsyncGenerator[Any, None]]) -> AsyncGenerator[Any, None]:
    """Async :func:`prime` for ``astream_*`` methods, which return an async generator when awaited."""
    stream = await pending
    first = await anext(stream, _END)

    async def gen() -> AsyncGenerator[Any, None]:
        if first is not _END:
            yield first
        async for chunk in stream:
            yield chunk

    return gen()
