"""LangChain's own standard tests for chat models, run on UniRouteChatModel.

The candidates are fake chat models (``tests.langchain.fakes.GeneralFake``: text replies, streaming,
tool calls, structured output through LangChain's default tool-calling implementation) behind the
real fitted router (MiniLM embeddings, MMLU-Pro profiles).

Standard tests that do not run, and why:

* ``test_serdes``: UniRouteChatModel is not ``lc_serializable`` (it holds a fitted router and live
  chat models; persistence is ``save``/``load``). Skipped by langchain-tests itself.
* ``test_init_from_env``: there is no environment configuration (no API key). Skipped by
  langchain-tests itself.
* ``*_with_model_override``: ``supports_model_override`` is False; the router's per-call model
  choice is ``unirouter={"force_model": ...}``.
* ``test_json_mode``: the fake candidates have no JSON mode (``with_structured_output(...,
  method="json_mode")`` is passed to the chosen model as is).
* image / PDF / audio / video / Anthropic-format inputs: these tests download files from the
  internet (offline here) and need multimodal candidates. The router passes such content to the
  chosen model unchanged and routes on the text parts; ``test_runnable.py`` covers image parts.
* ``test_stream_time``: needs VCR cassettes of a real provider.

``standard_chat_model_params`` drops ``timeout``, ``max_retries`` and ``api_key``: a router has no
client of its own (fallbacks and each candidate's client handle failures).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from tests.langchain.fakes import MODELS, GeneralFake
from unirouter_langchain import UniRouteChatModel


class _Setup:
    _router: Any = None

    @pytest.fixture(autouse=True)
    def _fitted(self, fitted_router) -> None:
        type(self)._router = fitted_router

    @property
    def chat_model_class(self) -> type[UniRouteChatModel]:
        return UniRouteChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": self._router, "models": {n: GeneralFake(model_name=n) for n in MODELS}}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0, "max_tokens": 100, "stop": []}

    @property
    def has_tool_choice(self) -> bool:
        return True


class TestUniRouteChatModelUnit(_Setup, ChatModelUnitTests):
    pass


class TestUniRouteChatModelIntegration(_Setup, ChatModelIntegrationTests):
    pass
