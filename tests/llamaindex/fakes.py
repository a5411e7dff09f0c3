"""LlamaIndex test doubles that answer like the real models: recorded MMLU-Pro answers, real tool calls.

* :class:`RecordedLLM` is a ``CustomLLM`` (async-native ``achat``/``acomplete``) that answers an MMLU-Pro
  question with the letter the real model gave (``tests/replay.py``), in free text, and reports token
  usage the way llama-index-llms-openai does (``additional_kwargs["prompt_tokens"]``...).
* :class:`RecordedToolLLM` extends the framework's ``MockFunctionCallingLLM``: without tools it answers
  like :class:`RecordedLLM`; with tools it calls the first tool with the integers found in the user's
  message, then phrases the tool's result as its answer (what a real function-calling model does in a
  ``FunctionAgent``).
* :class:`MiniLMEmbedding` is a LlamaIndex ``BaseEmbedding`` over unirouter's local MiniLM embedder, so a
  ``VectorStoreIndex`` can be built offline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.generic_utils import (
    astream_completion_response_to_chat_response,
    stream_completion_response_to_chat_response,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM
from replay import RecordedModel
from unirouter import Embedder


class ModelDown(RuntimeError):
    """What a provider raises when its service is unavailable (not retryable by the profiler)."""


def _usage(prompt: str, text: str) -> dict[str, int]:
    return {"prompt_tokens": max(1, len(prompt) // 4), "completion_tokens": max(1, len(text) // 4)}


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for m in reversed(messages):
        if m.role == MessageRole.USER:
            return m.content or ""
    return "\n".join(m.content or "" for m in messages)


class RecordedLLM(CustomLLM):
    """A LlamaIndex LLM that answers MMLU-Pro prompts with a real model's recorded answers."""

    model_name: str = Field(description="The recorded model's name.")
    context_window: int = Field(default=32_768)
    delay: float = Field(default=0.0, description="Seconds each async call sleeps (a network stand-in).")
    down: bool = Field(default=False, description="Raise ModelDown on every call.")
    calls: list[str] = Field(default_factory=list, exclude=True)
    call_kwargs: list[dict[str, Any]] = Field(default_factory=list, exclude=True)
    _record: RecordedModel = PrivateAttr()

    def __init__(self, record: RecordedModel, **kwargs: Any) -> None:
        super().__init__(model_name=record.name, **kwargs)
        self._record = record

    @classmethod
    def class_name(cls) -> str:
        return "RecordedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window, num_output=256, is_chat_model=True, model_name=self.model_name
        )

    def _answer(self, prompt: str, kwargs: dict[str, Any] | None = None) -> tuple[str, dict[str, int]]:
        if self.down:
            raise ModelDown(f"{self.model_name} is unavailable")
        self.calls.append(prompt)
        self.call_kwargs.append(dict(kwargs or {}))
        text = self._record(prompt)
        return text, _usage(prompt, text)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, usage = self._answer(prompt)
        return CompletionResponse(text=text, additional_kwargs=usage)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        text, usage = self._answer(prompt)

        def gen():
            sofar = ""
            for word in text.split(" "):
                delta = (" " if sofar else "") + word
                sofar += delta
                yield CompletionResponse(text=sofar, delta=delta, additional_kwargs=usage)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        await asyncio.sleep(self.delay)
        text, usage = self._answer(prompt)
        return CompletionResponse(text=text, additional_kwargs=usage)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, usage = self._answer(_last_user_text(messages), kwargs)
        return ChatResponse(message=ChatMessage(role="assistant", content=text), additional_kwargs=usage)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any):
        return stream_completion_response_to_chat_response(self.stream_complete(_last_user_text(messages), **kwargs))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any):
        stream = await self.astream_complete(_last_user_text(messages), **kwargs)
        return astream_completion_response_to_chat_response(stream)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await asyncio.sleep(self.delay)
        text, usage = self._answer(_last_user_text(messages))
        return ChatResponse(message=ChatMessage(role="assistant", content=text), additional_kwargs=usage)


class RecordedToolLLM(MockFunctionCallingLLM):
    """A function-calling LLM: recorded MMLU-Pro answers without tools, real tool calls with them."""

    model_name: str = Field(default="tool-model")
    context_window: int = Field(default=16_384)
    down: bool = Field(default=False)
    calls: list[str] = Field(default_factory=list, exclude=True)
    _record: RecordedModel = PrivateAttr()

    def __init__(self, record: RecordedModel, **kwargs: Any) -> None:
        super().__init__(model_name=record.name, is_chat_model=True, **kwargs)
        self._record = record
        self.response_generator = self._respond

    @classmethod
    def class_name(cls) -> str:
        return "RecordedToolLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=256,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=self.model_name,
        )

    def _respond(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        if self.down:
            raise ModelDown(f"{self.model_name} is unavailable")
        question = _last_user_text(messages)
        self.calls.append(question)
        tools = kwargs.get("tools") or []
        tool_results = [m for m in messages if m.role == MessageRole.TOOL]
        if tool_results:
            return ChatMessage(role="assistant", content=f"The result is {tool_results[-1].content}.")
        if not tools:
            return ChatMessage(role="assistant", content=self._record(question))
        tool = tools[0]
        numbers = [int(n) for n in re.findall(r"-?\d+", question)]
        fields = list(tool.metadata.get_parameters_dict().get("properties", {}))
        args = dict(zip(fields, numbers))
        block = ToolCallBlock(tool_call_id=f"call-{len(self.calls)}", tool_name=tool.metadata.name, tool_kwargs=args)
        return ChatMessage(role="assistant", blocks=[block])

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await asyncio.sleep(0)
        msg = self._respond(messages, **kwargs)
        return ChatResponse(message=msg, additional_kwargs=_usage(_last_user_text(messages), msg.content or ""))


class MiniLMEmbedding(BaseEmbedding):
    """LlamaIndex embedding over a unirouter :class:`~unirouter.Embedder` (local MiniLM, cached, offline)."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)


class RateLimitError(RuntimeError):
    """Shaped like a provider SDK's 429 error (``status_code``), without ``is_retryable``."""

    status_code = 429


class FlakyLLM(RecordedLLM):
    """Rate-limited on the first call for each prompt, then answers: the profiler must retry."""

    seen: set[str] = Field(default_factory=set, exclude=True)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        prompt = _last_user_text(messages)
        if prompt not in self.seen:
            self.seen.add(prompt)
            raise RateLimitError("429 Too Many Requests")
        return await super().achat(messages, **kwargs)
