"""LlamaIndex stand-ins for the examples: replay LLMs (recorded MMLU-Pro answers) and a local embedding.

* :class:`ReplayLLM` is a LlamaIndex ``CustomLLM`` over ``_mmlu_replay.ReplayBook``: it answers the
  MMLU-Pro question found in its prompt as the real model did, and reports the real generation's
  token usage in ``additional_kwargs`` (as llama-index-llms-openai does), so profiling with a
  ``TokenPrice`` at the model's list price gives its real cost. ``achat``/``acomplete`` are async.
* :class:`LocalEmbedding` is a LlamaIndex ``BaseEmbedding`` over unirouter's local MiniLM embedder
  (no download, no API key; vectors cached on disk), for a ``VectorStoreIndex`` built offline.

Not part of the library; the examples import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
from _mmlu_replay import ReplayBook
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

__all__ = ["MODELS", "LocalEmbedding", "ReplayLLM", "split"]

# Five real models with complete MMLU-Pro records: two strong and expensive, two mid, one small.
MODELS = (
    "gpt-4o-2024-05-13",
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "Meta-Llama-3_1-70B-Instruct",
    "Meta-Llama-3_1-8B-Instruct",
)


class ReplayLLM(CustomLLM):
    """A LlamaIndex LLM that answers MMLU-Pro questions exactly as a real model did."""

    model_name: str
    context_window: int = 128_000
    _book: ReplayBook = PrivateAttr()

    def __init__(self, book: ReplayBook, **kwargs: Any) -> None:
        super().__init__(model_name=book.name, **kwargs)
        self._book = book

    @classmethod
    def class_name(cls) -> str:
        return "ReplayLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=1024, is_chat_model=True, model_name=self.model_name)

    def _reply(self, prompt: str) -> CompletionResponse:
        text, usage = self._book.answer(prompt)
        usage = {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]}
        return CompletionResponse(text=text, additional_kwargs=usage)

    @staticmethod
    def _question(messages: Sequence[ChatMessage]) -> str:
        return next((m.content or "" for m in reversed(messages) if m.role == MessageRole.USER), "")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._reply(prompt)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self._reply(prompt)
        yield CompletionResponse(text=response.text, delta=response.text, additional_kwargs=response.additional_kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        await asyncio.sleep(0)
        return self._reply(prompt)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        r = self._reply(self._question(messages))
        return ChatResponse(message=ChatMessage(role="assistant", content=r.text), additional_kwargs=r.additional_kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        await asyncio.sleep(0)
        return self.chat(messages, **kwargs)


class LocalEmbedding(BaseEmbedding):
    """LlamaIndex embedding over a unirouter embedder (default: the packaged MiniLM, offline)."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Any, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "LocalEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)


def split(dataset: Any, names: Sequence[str], sizes: tuple[int, int, int], seed: int) -> dict[str, tuple[list[str], list[str], list[int]]]:
    """Disjoint train / validation / test (questions, answers, dataset rows) every model has a record of."""
    rows = dataset.complete_rows(names)
    first: dict[str, int] = {}
    for i in rows:
        first.setdefault(dataset.texts[i], int(i))
    pick = np.random.default_rng(seed).permutation(np.array(sorted(first.values())))
    bounds = np.cumsum((0, *sizes))
    return {
        part: ([dataset.texts[i] for i in pick[a:b]], [dataset.answers[i] for i in pick[a:b]], [int(i) for i in pick[a:b]])
        for part, a, b in zip(("train", "val", "test"), bounds[:-1], bounds[1:])
    }
