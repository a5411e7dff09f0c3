"""Run by .ci/check_wheel.sh in a venv holding only the built wheel: pre-trained routing, end to end.

Two replay chat models answer the bundled validation prompts the way real models do (free text
with the answer in it): "strong" answers every prompt correctly, "mathy" only the math and code
prompts. Both are profiled through UniRouteChatModel.from_pretrained, then a prompt is routed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

import unirouter
from unirouter.pretrained import answer_formats, load_pretrained, validation_set
from unirouter_langchain import UniRouteChatModel

here = Path(unirouter.__file__).resolve()
assert str(here).startswith(str(Path(sys.prefix).resolve())), f"unirouter imported from {here}, not the wheel in {sys.prefix}"
assert not Path(os.environ["UNIROUTER_DATA"]).exists(), "the shared data must not be reachable"

VS = validation_set()
FORMATS = dict(zip(VS.prompts, answer_formats()))
REFS = dict(zip(VS.prompts, VS.references))


def answer(prompt: str, correct: bool) -> str:
    ref, fmt = REFS[prompt], FORMATS[prompt]
    if fmt == "letter":
        letter = ref if correct else ("B" if ref != "B" else "C")
        return f"Let me think step by step. The answer is ({letter})."
    if fmt == "number":
        return f"Working it out gives {ref if correct else '-987654'}.\nThe answer is {ref if correct else '-987654'}."
    return f"[ANSWER]assert f(...) == {ref if correct else 'None'}[/ANSWER]" if correct else "[ANSWER]assert f(...) == 'wrong'[/ANSWER]"


class Replay(BaseChatModel):
    skill: str

    @property
    def _llm_type(self) -> str:
        return "replay"

    def _generate(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        text = messages[-1].content
        fmt = FORMATS.get(text, "letter")
        correct = self.skill == "all" or fmt != "letter"
        body = answer(text, correct) if text in REFS else "The answer is (A)."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=body, usage_metadata={"input_tokens": len(text) // 4, "output_tokens": 20, "total_tokens": len(text) // 4 + 20}))])


router = load_pretrained("kmeans")
print(f"pre-trained router: {len(router.models_)} known models, {len(VS)} validation prompts")
chat = UniRouteChatModel.from_pretrained(
    {"strong": Replay(skill="all"), "mathy": Replay(skill="math"), "gpt-4o-2024-05-13": Replay(skill="all")},
    costs={"strong": 0.01, "mathy": 0.0001},
    max_profiling_cost=10.0,
    profile_kwargs={"progress": False},
)
profiles = chat.pool.router.profiles_
assert set(profiles) == {"strong", "mathy", "gpt-4o-2024-05-13"}, profiles
assert profiles["strong"].accuracy == 1.0, profiles["strong"]
assert 0.25 < profiles["mathy"].accuracy < 0.45, profiles["mathy"]
assert profiles["gpt-4o-2024-05-13"].stats.calls_made == 0  # stored profile, no call
msg = chat.invoke("What is 12 * 7? Give the number.", unirouter={"cost_weight": 50.0, "allowed_models": ["strong", "mathy"]})
decision = msg.response_metadata["unirouter"]
print("routed a math prompt to", decision["model"])
assert decision["model"] == "mathy", decision
print("wheel check passed", file=sys.stderr)
