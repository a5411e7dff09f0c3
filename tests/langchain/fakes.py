"""LangChain fakes that answer like the real models, and routers built on the real fitted router.

``ReplayChatModel`` is a ``BaseChatModel`` that answers the latest user message with the recorded
MMLU-Pro answer of one real model (``tests/replay.py``), reports token usage like a provider
(``usage_metadata``; input = prompt chars / 4, output = reply chars / 4), streams word by word and
accepts ``bind_tools``. ``ToolCallingFake`` scripts tool calls for agent tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field
from replay import RecordedModel
from unirouter.profiling.profiler import TokenPrice

# Four real MMLU-Pro models from cheap and weak to expensive and strong.
MODELS = ("Llama-2-7b-hf", "Phi-3-mini-4k-instruct", "gemini-1.5-flash-002", "gpt-4o-2024-05-13")


class ModelDown(Exception):
    """A provider error (what a fallback should step over)."""


def _last_user_text(messages: list[BaseMessage]) -> str:
    for m in reversed(messages):
        if m.type == "human" and m.text:
            return m.text
    return messages[-1].text if messages else ""


class ReplayChatModel(BaseChatModel):
    """Answers like ``recorded`` (a RecordedModel) did; ``fail_always`` makes every call raise."""

    model_name: str
    recorded: Any = None
    reply: Callable[[str], str] | None = None
    fail_always: bool = False
    calls: list[str] = Field(default_factory=list)
    kwargs_seen: list[dict[str, Any]] = Field(default_factory=list)

    def _answer(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        text = _last_user_text(messages)
        self.calls.append(text)
        self.kwargs_seen.append(dict(kwargs))
        if self.fail_always:
            raise ModelDown(f"{self.model_name} is down")
        reply = self.reply(text) if self.reply else self.recorded(text)
        prompt_chars = sum(len(m.text) for m in messages)
        usage = {"input_tokens": prompt_chars // 4 + 1, "output_tokens": len(reply) // 4 + 1}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return AIMessage(content=reply, usage_metadata=usage, response_metadata={"model_name": self.model_name})

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages, kwargs))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        message = self._answer(messages, kwargs)
        words = re.split(r"(\s)", message.content)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = AIMessageChunk(
                content=word,
                usage_metadata=message.usage_metadata if last else None,
                response_metadata={"model_name": self.model_name} if last else {},
            )
            yield ChatGenerationChunk(message=chunk)

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    @property
    def _llm_type(self) -> str:
        return "replay"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}


class ToolCallingFake(BaseChatModel):
    """Calls the first bound tool whose name appears in the user's request, then answers with the
    tool results. Arguments are the integers in the request, in the tool's parameter order."""

    model_name: str = "tool-fake"
    calls: list[list[str]] = Field(default_factory=list)
    fail_always: bool = False

    def _generate(self, messages, stop=None, run_manager=None, tools=None, **kwargs):
        self.calls.append([m.type for m in messages])
        if self.fail_always:
            raise ModelDown(f"{self.model_name} is down")
        request = _last_user_text(messages)
        done = {m.name for m in messages if m.type == "tool"}
        for tool in tools or []:
            fn = tool["function"]
            if fn["name"] in request and fn["name"] not in done:
                params = list(fn["parameters"].get("properties", {}))
                numbers = [int(x) for x in re.findall(r"-?\d+", request)]
                args = dict(zip(params, numbers))
                call = {"name": fn["name"], "args": args, "id": f"call_{fn['name']}", "type": "tool_call"}
                msg = AIMessage(content="", tool_calls=[call], usage_metadata=_usage(5, 5), response_metadata=self._meta())
                return ChatResult(generations=[ChatGeneration(message=msg)])
        results = ", ".join(f"{m.name}={m.text}" for m in messages if m.type == "tool")
        answer = f"[{self.model_name}] results: {results}" if results else f"[{self.model_name}] no tool needed"
        message = AIMessage(content=answer, usage_metadata=_usage(8, 6), response_metadata=self._meta())
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _meta(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools])

    @property
    def _llm_type(self) -> str:
        return "tool-fake"


def _usage(i: int, o: int) -> dict[str, int]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


class Recorder(BaseCallbackHandler):
    """Records runs (with parents and tags) and custom events."""

    def __init__(self) -> None:
        self.runs: dict[Any, dict[str, Any]] = {}
        self.events: list[tuple[str, Any, Any]] = []

    def _start(self, kind, serialized, run_id, parent_run_id, tags, kwargs):
        name = kwargs.get("name") or (serialized or {}).get("name")
        self.runs[run_id] = {"kind": kind, "parent": parent_run_id, "tags": list(tags or []), "name": name, "metadata": dict(kwargs.get("metadata") or {})}

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, tags=None, **kwargs):
        self._start("llm", serialized, run_id, parent_run_id, tags, kwargs)

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None, **kwargs):
        self._start("chain", serialized, run_id, parent_run_id, tags, kwargs)

    def on_custom_event(self, name, data, *, run_id, **kwargs):
        self.events.append((name, data, run_id))

    def tagged(self, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.values() if any(t.startswith(prefix) for t in r["tags"])]


def make_models(recorded: dict[str, RecordedModel], names=MODELS, **kwargs) -> dict[str, ReplayChatModel]:
    return {n: ReplayChatModel(model_name=n, recorded=recorded[n], **kwargs) for n in names}


def prices(recorded: dict[str, RecordedModel], names=MODELS) -> dict[str, TokenPrice]:
    return {n: TokenPrice(input_per_mtok=recorded[n].price_in, output_per_mtok=recorded[n].price_out) for n in names}


class GeneralFake(BaseChatModel):
    """A general-purpose fake for the standard tests: replies in text, streams, calls tools.

    With tools bound and no tool result after the latest user message, it calls the tool named in
    the request (or the only / required one), filling integer arguments from the numbers in the
    request and string arguments with the request. Structured output comes from LangChain's
    default ``with_structured_output`` (tool calling).
    """

    model_name: str = "general-fake"
    calls: int = 0

    def _generate(self, messages, stop=None, run_manager=None, tools=None, tool_choice=None, **kwargs):
        self.calls += 1
        request = _last_user_text(messages)
        answered = bool(messages) and messages[-1].type == "tool"
        tool = None if answered else _pick_tool(tools or [], tool_choice, request)
        if tool is not None:
            fn = tool["function"]
            numbers = iter(int(x) for x in re.findall(r"-?\d+", request))
            args = {}
            for key, spec in fn.get("parameters", {}).get("properties", {}).items():
                kind = spec.get("type")
                args[key] = next(numbers, 1) if kind in ("integer", "number") else True if kind == "boolean" else request or "text"
            call = {"name": fn["name"], "args": args, "id": f"call_{self.calls}", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            results = [m.text for m in messages if m.type == "tool"]
            text = f"Here is the result: {results[-1]}" if answered else f"Hello! You said: {request[:60] or 'nothing'}"
            message = AIMessage(content=text)
        message.usage_metadata = _usage(10, 5)
        message.response_metadata = {"model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    @property
    def _llm_type(self) -> str:
        return "general-fake"


def _pick_tool(tools: list[dict[str, Any]], tool_choice: Any, request: str) -> dict[str, Any] | None:
    if not tools:
        return None
    by_name = {t["function"]["name"]: t for t in tools}
    if isinstance(tool_choice, dict):
        tool_choice = tool_choice.get("function", {}).get("name") or tool_choice.get("name")
    if isinstance(tool_choice, str) and tool_choice in by_name:
        return by_name[tool_choice]
    for name, tool in by_name.items():
        if name in request:
            return tool
    if tool_choice in ("any", "required", True) or len(tools) == 1:
        return tools[0]
    return None
