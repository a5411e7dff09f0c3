"""Fixtures for the LlamaIndex plugin: recorded-answer LlamaIndex LLMs over a real fitted router."""

from __future__ import annotations

import pytest


from replay import RecordedModel  # noqa: E402

from tests.llamaindex.fakes import RecordedLLM, RecordedToolLLM  # noqa: E402

# A strong expensive model, a strong cheap one and a weak cheap one (real MMLU-Pro records).
STRONG, CHEAP, WEAK = "gpt-4o-2024-05-13", "gemini-1.5-flash-002", "Llama-2-7b-hf"
NAMES = (STRONG, CHEAP, WEAK)


@pytest.fixture(scope="session")
def records(mmlu_small) -> dict[str, RecordedModel]:
    """Each model's recorded answers on the validation and test prompts."""
    out = {}
    for name in NAMES:
        rec = RecordedModel.from_dataset(mmlu_small["val"], name)
        rec.answers.update(RecordedModel.from_dataset(mmlu_small["test"], name).answers)
        out[name] = rec
    return out


@pytest.fixture()
def llms(records) -> dict[str, RecordedLLM]:
    windows = {STRONG: 128_000, CHEAP: 1_000_000, WEAK: 4_096}
    return {n: RecordedLLM(records[n], context_window=windows[n]) for n in NAMES}


@pytest.fixture()
def tool_llms(records) -> dict[str, RecordedToolLLM]:
    return {n: RecordedToolLLM(records[n], context_window=w) for n, w in ((STRONG, 128_000), (CHEAP, 1_000_000))}


@pytest.fixture()
def costs(mmlu_small) -> dict[str, float]:
    val = mmlu_small["val"]
    return {n: float(val.cost[:, val.model_index([n])[0]].mean()) for n in NAMES}


@pytest.fixture()
def router3(router_copy):
    """The fitted router with only the three test models registered (from their validation labels)."""
    for name in list(router_copy.models_):
        if name not in NAMES:
            router_copy.remove_model(name)
    return router_copy
