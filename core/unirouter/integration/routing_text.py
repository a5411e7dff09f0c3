"""Which text to route on: what the user asked, not the template around it.

A router predicts a model's quality from the *question*. In a real application the prompt a model
receives is rarely the bare question: a RAG pipeline wraps it in a template with retrieved context
(thousands of characters that say little about difficulty), and a follow-up ("Why? Explain step by
step.") means nothing without the question it follows. Both plugins convert their messages to
``(role, text)`` turns (roles ``"user"``, ``"assistant"``, ``"system"``, ``"tool"``) and call
:func:`routing_text`, so the choice is made once, here, and measured (``benchmarks/bench_traffic.py``,
section ``routing_text``).

Choices (``how``):

``"contextual"`` (default)
    The latest user message, with a RAG template stripped to its query (:func:`extract_query`). If
    that is short (fewer than ``min_chars`` characters: a follow-up), the earlier user turns are put
    before it, so the follow-up is routed with the question that gives it meaning; a long, self-
    contained new question is routed on its own.
``"last_user"``
    The latest user message as is.
``"user_turns"``
    Every user message, oldest first.
``"conversation"``
    Every message with text, one ``role: text`` line each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from unirouter.exceptions import InvalidInputError

__all__ = ["DEFAULT_MIN_CHARS", "ROUTING_INPUTS", "RoutingInputName", "extract_query", "routing_text"]

RoutingInputName = Literal["contextual", "last_user", "user_turns", "conversation"]
ROUTING_INPUTS: tuple[str, ...] = ("contextual", "last_user", "user_turns", "conversation")
DEFAULT_MIN_CHARS = 120
"""Below this length a user message is treated as a follow-up. Set from lengths, not tuned on test
results: 99% of MMLU-Pro questions (with their options) are 120 characters or longer, and the
follow-ups in ``benchmarks/bench_traffic.py`` ("Why? Explain step by step.", ...) are at most 58. A
short self-contained question after earlier turns is therefore routed with those turns before it."""

# Lines that introduce the user's query in RAG templates: LlamaIndex's text-QA and refine prompts
# ("Query: {query_str}", "The original query is as follows: {query_str}"), LangChain's common RAG
# prompt ("Question: {question}"), and similar.
_QUERY_MARKER = re.compile(
    r"(?im)^[ \t]*(?:query|question|user question|user query|the original query is as follows)[ \t]*:[ \t]*"
)
# Lines that end the query: the context, the answer slot, or the refine template's next part.
_QUERY_END = re.compile(
    r"(?im)^[ \t]*(?:context(?: information)?|answer|helpful answer|we have provided an existing answer|"
    r"-{3,}|new context|existing answer)[ \t]*:?"
)
# A prompt is treated as a template only when it also carries one of these context markers, so a
# plain question that happens to contain "Question:" is left alone.
_CONTEXT_MARKER = re.compile(
    r"(?i)(context information is below|retrieved context|use the following pieces of|context:|"
    r"given the context information|we have provided an existing answer)"
)


def extract_query(text: str) -> str | None:
    """The user's query inside a RAG-style templated prompt, or None when ``text`` is not one.

    Recognises templates that carry context (a context marker such as "Context information is
    below" or "Context:") and introduce the query on its own line ("Query:", "Question:", "The
    original query is as follows:"). The query runs to the next context/answer line, else to the end.
    """
    if not _CONTEXT_MARKER.search(text):
        return None
    matches = list(_QUERY_MARKER.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    end = _QUERY_END.search(text, start)
    query = text[start : end.start() if end else len(text)].strip()
    return query or None


def _user_text(text: str) -> str:
    return extract_query(text) or text


def routing_text(
    turns: Sequence[tuple[str, str]],
    how: str | Callable[[list[tuple[str, str]]], str] = "contextual",
    *,
    min_chars: int = DEFAULT_MIN_CHARS,
) -> str:
    """The text the router embeds for a conversation of ``(role, text)`` turns.

    Raises
    ------
    InvalidInputError
        ``how`` is unknown, or the turns hold no text to route on.
    """
    turns = [(str(r), t if isinstance(t, str) else "") for r, t in turns]
    if callable(how):
        out: Any = how(turns)
        if not isinstance(out, str) or not out.strip():
            msg = f"the routing_input callable must return a non-empty string. Got {out!r:.80}."
            raise InvalidInputError(msg)
        return out
    if how not in ROUTING_INPUTS:
        msg = f"routing_input must be one of {list(ROUTING_INPUTS)} or a callable. Got {how!r}."
        raise InvalidInputError(msg)
    users = [t.strip() for r, t in turns if r == "user" and t.strip()]
    if how == "conversation":
        lines = [f"{r}: {t.strip()}" for r, t in turns if t.strip()]
        if lines:
            return "\n".join(lines)
    elif users:
        if how == "last_user":
            return users[-1]
        if how == "user_turns":
            return "\n".join(users)
        parts = [_user_text(users[-1])]
        for earlier in reversed(users[:-1]):  # a follow-up: add the turns it follows, latest first
            if sum(len(p) for p in parts) >= min_chars:
                break
            parts.insert(0, _user_text(earlier))
        return "\n".join(parts)
    roles = [r for r, _ in turns]
    where = "message" if how == "conversation" else "user message"
    msg = (
        f"no text to route on: the input has no {where} with text content (roles: {roles}). "
        "Add a text part, or set routing_input='conversation' or a callable."
    )
    raise InvalidInputError(msg)
