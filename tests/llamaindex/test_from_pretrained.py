"""UniRouteLLM.from_pretrained (issue 16): the LlamaIndex twin of the LangChain constructor."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core.llms import ChatMessage
from replay import BundledReplay, RecordedModel
from unirouter import ProfilingCostError, load_dataset
from unirouter.pretrained import load_pretrained

from tests.llamaindex.fakes import RecordedLLM
from unirouter_llamaindex import UniRouteLLM

KNOWN = "gemini-1.5-flash-002"


@pytest.fixture(scope="module")
def zeroeval(data_dir):
    return load_dataset(data_dir / "zeroeval_math_code", load_responses=False)


def test_from_pretrained_profiles_and_routes(mmlu, zeroeval, tmp_path, embedder, monkeypatch, data_dir):
    monkeypatch.setenv("UNIROUTER_DATA", str(tmp_path / "no-shared-data"))
    strong = RecordedLLM(BundledReplay.build(mmlu, zeroeval, "gpt-4o-2024-05-13"))
    known = RecordedLLM(RecordedModel.from_dataset(mmlu, KNOWN))
    llm = UniRouteLLM.from_pretrained(
        {"mine": strong, KNOWN: known},
        costs={"mine": 0.004},
        method="difficulty",
        response_cache=tmp_path / "responses",
        embedder=embedder,
        profile_kwargs={"progress": False},
    )
    router = llm.pool.router
    assert sorted(router.models_) == sorted(["mine", KNOWN]) and known.calls == []
    stored = load_pretrained("difficulty", embedder=embedder).get_profile("gpt-4o-2024-05-13")
    assert np.array_equal(router.get_profile("mine").scores, stored.scores)
    resp = llm.chat([ChatMessage(role="user", content="What is the derivative of x^3?")])
    assert resp.additional_kwargs["unirouter"]["model"] in {"mine", KNOWN}


def test_from_pretrained_cost_guard(mmlu, zeroeval, embedder):
    strong = RecordedLLM(BundledReplay.build(mmlu, zeroeval, "gpt-4o-2024-05-13"))
    with pytest.raises(ProfilingCostError):
        UniRouteLLM.from_pretrained({"mine": strong}, costs={"mine": 0.01}, max_profiling_cost=0.5, response_cache=None, embedder=embedder)
    assert strong.calls == []
