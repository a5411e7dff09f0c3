"""LangChain plugin for unirouter: a routing Runnable and a drop-in routing chat model.

```python
from unirouter_langchain import UniRouteChatModel, UniRouteRunnable
```
Install with ``pip install 'unirouter[langchain]'``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    msg = "unirouter_langchain needs langchain-core: pip install 'unirouter[langchain]'"
    raise ImportError(msg) from None

from unirouter_langchain._adapters import (
    CONFIG_NAMESPACE,
    DECISION_EVENT,
    PROFILING_TAG,
    profiling_call,
    routing_text,
)
from unirouter_langchain.chat_model import UniRouteChatModel
from unirouter_langchain.runnable import UniRouteRunnable

__all__ = [
    "CONFIG_NAMESPACE",
    "DECISION_EVENT",
    "PROFILING_TAG",
    "UniRouteChatModel",
    "UniRouteRunnable",
    "profiling_call",
    "routing_text",
]
