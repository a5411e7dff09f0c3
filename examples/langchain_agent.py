"""A LangChain agent (``create_agent``) with two tools whose chat model is a UniRoute router.

    python examples/langchain_agent.py           # offline, about a minute

The router is fitted on 400 MMLU-Pro questions (real MiniLM embeddings). Its two candidates stand in
for a strong, expensive model and a cheap one: their profiles are the recorded MMLU-Pro validation
results and prices of GPT-4o and Llama-3.1-8B-Instruct, and offline they are scripted tool-calling
chat models (``ScriptedToolModel``). Swap in real chat models (``ChatOpenAI(...)``, ...) and profile
them with ``add_model(name, model, cost=...)`` to run it for real.

The agent routes at every model call. With the default ``routing_input="last_user"`` each step
routes on the user's request, so a run stays on one model (unless it fails and falls back); the
``unirouter_decision`` callback event shows each step's decision.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mmlu_replay import load_mmlu
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from unirouter import SentenceTransformerEmbedder, UniRouter, ValidationSet
from unirouter.embedding.embedders import default_cache_dir

from unirouter_langchain import DECISION_EVENT, UniRouteChatModel

STAND_INS = {"strong": "gpt-4o-2024-05-13", "cheap": "Meta-Llama-3_1-8B-Instruct"}


def compound_interest(principal: float, rate_percent: float, years: int) -> float:
    """Value of ``principal`` after ``years`` at ``rate_percent`` interest compounded yearly."""
    return round(principal * (1 + rate_percent / 100) ** years, 2)


def convert_currency(amount: float, rate: float) -> float:
    """Convert ``amount`` with the exchange ``rate``."""
    return round(amount * rate, 2)


class ScriptedToolModel(BaseChatModel):
    """An offline stand-in for a tool-calling chat model.

    It calls each bound tool named in the user's request once, in order, with the numbers in the
    request as arguments (a later tool gets the previous result first), then answers with the
    tool results.
    """

    model_name: str

    def _generate(self, messages, stop=None, run_manager=None, tools=None, **kwargs):
        request = next(m.text for m in reversed(messages) if m.type == "human")
        results = [m for m in messages if m.type == "tool"]
        done = {m.name for m in results}
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", request)]
        for tool in tools or []:
            fn = tool["function"]
            if fn["name"] in request and fn["name"] not in done:
                params = list(fn["parameters"]["properties"])
                # chained call: the previous result comes first, then the request's last numbers
                values = [float(results[-1].text), *numbers[-(len(params) - 1) :]] if results else numbers
                args = dict(zip(params, values))
                call = {"name": fn["name"], "args": args, "id": f"call_{len(done)}", "type": "tool_call"}
                return _result(AIMessage(content="", tool_calls=[call]), self.model_name)
        summary = "; ".join(f"{m.name} -> {m.text}" for m in results) or "no tools needed"
        return _result(AIMessage(content=f"[{self.model_name}] {summary}"), self.model_name)

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools])

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-model"


def _result(message: AIMessage, name: str) -> ChatResult:
    message.usage_metadata = {"input_tokens": 50, "output_tokens": 20, "total_tokens": 70}
    message.response_metadata = {"model_name": name}
    return ChatResult(generations=[ChatGeneration(message=message)])


class StepPrinter(BaseCallbackHandler):
    """Prints every routing decision (the ``unirouter_decision`` custom event)."""

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == DECISION_EVENT:
            errors = ", ".join(f"{m} {e:.2f}" for m, e in data["predicted_error"].items())
            print(f"    step routed to {data['answered_by']:<6} (predicted error: {errors}; cost weight {data['cost_weight']:.0f})")


def fitted_router() -> UniRouter:
    """K-means router on 400 MMLU-Pro questions; the two candidates get real models' profiles."""
    mmlu = load_mmlu()
    ds = mmlu.dataset
    rows = np.random.default_rng(0).permutation(ds.complete_rows(list(STAND_INS.values())))
    train, val = rows[:250], rows[250:400]
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir())
    router = UniRouter(n_clusters=6, random_state=0, embedder=embedder)
    router.fit([ds.texts[i] for i in train], validation=ValidationSet([ds.texts[i] for i in val], references=[ds.answers[i] for i in val]))
    for name, real in STAND_INS.items():
        j = ds.model_index([real])[0]
        router.add_model(name, correctness=ds.correctness[val, j], cost=ds.cost[val, j])
    return router


def main() -> None:
    print("Fitting the router (400 MMLU-Pro questions) ...")
    router = fitted_router()
    chat = UniRouteChatModel(router, {name: ScriptedToolModel(model_name=name) for name in STAND_INS})
    agent = create_agent(chat, tools=[compound_interest, convert_currency], system_prompt="Use the tools.")

    requests = [
        "Use compound_interest for 1000 dollars at 5 percent for 10 years, then convert_currency at rate 0.92.",
        "What is convert_currency of 250 at rate 1.1?",
    ]
    for routing in ({}, {"cost_weight": 2000.0}):
        label = "quality first" if not routing else f"cost weight {routing['cost_weight']:.0f}"
        print(f"\n=== {label} ===")
        for request in requests:
            print(f"  user: {request}")
            state = agent.invoke(
                {"messages": [("user", request)]},
                config={"callbacks": [StepPrinter()], "configurable": {"unirouter": routing}},
            )
            final = state["messages"][-1]
            steps = sum(m.type == "ai" for m in state["messages"])
            print(f"  agent ({steps} model steps): {final.content}")


if __name__ == "__main__":
    main()
