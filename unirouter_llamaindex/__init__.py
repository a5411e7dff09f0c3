"""LlamaIndex integration for unirouter: a routing selector and a routing LLM.

* :class:`UniRouteSelector` picks the query engine, retriever or tool whose model UniRoute predicts
  best for the query (``RouterQueryEngine``, ``RouterRetriever``).
* :class:`UniRouteLLM` is an LLM that sends each call to the best of several named LLMs; use it as
  ``Settings.llm``, in query engines or in a ``FunctionAgent``.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    msg = "unirouter_llamaindex needs llama-index-core; install it with `pip install 'unirouter[llamaindex]'`."
    raise ImportError(msg) from None

from unirouter_llamaindex._adapters import UniRouteDecisionEvent
from unirouter_llamaindex.llm import UniRouteFunctionCallingLLM, UniRouteLLM
from unirouter_llamaindex.selector import UniRouteSelector

__all__ = ["UniRouteDecisionEvent", "UniRouteFunctionCallingLLM", "UniRouteLLM", "UniRouteSelector"]
