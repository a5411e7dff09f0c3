"""UniRouteChatModel / UniRouteRunnable.from_pretrained (issue 16): known names keep their stored
profiles, other chat models are profiled on the bundled validation set, offline, then route."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.output_parsers import StrOutputParser
from replay import BundledReplay, RecordedModel
from unirouter import InvalidInputError, ProfilingCostError, load_dataset
from unirouter.pretrained import load_pretrained
from unirouter.profiling.profiler import TokenPrice

from tests.langchain.fakes import ReplayChatModel
from unirouter_langchain import UniRouteChatModel, UniRouteRunnable

KNOWN = "Llama-2-7b-hf"  # a name the bundle knows: no profiling call


@pytest.fixture(scope="module")
def zeroeval(data_dir):
    return load_dataset(data_dir / "zeroeval_math_code", load_responses=False)


@pytest.fixture()
def chat_models(mmlu, zeroeval):
    replay = BundledReplay.build(mmlu, zeroeval, "gpt-4o-2024-05-13")
    return {
        "my-strong": ReplayChatModel(model_name="my-strong", reply=replay),
        KNOWN: ReplayChatModel(model_name=KNOWN, recorded=RecordedModel.from_dataset(mmlu, KNOWN)),
    }


@pytest.mark.parametrize("cls", [UniRouteChatModel, UniRouteRunnable])
def test_from_pretrained_profiles_new_models_and_routes(cls, chat_models, tmp_path, embedder, monkeypatch, data_dir):
    monkeypatch.setenv("UNIROUTER_DATA", str(tmp_path / "no-shared-data"))
    chat = cls.from_pretrained(
        chat_models,
        costs={"my-strong": TokenPrice(input_per_mtok=5, output_per_mtok=15)},
        response_cache=tmp_path / "responses",
        max_profiling_cost=20.0,
        embedder=embedder,
        profile_kwargs={"progress": False},
    )
    router = chat.pool.router
    assert sorted(router.models_) == sorted(["my-strong", KNOWN]) and chat.pool.names == ["my-strong", KNOWN]
    assert chat_models[KNOWN].calls == []  # stored profile
    n = len(router.validation_set_)
    assert len(chat_models["my-strong"].calls) == n
    stored = load_pretrained(embedder=embedder).get_profile("gpt-4o-2024-05-13")
    assert np.array_equal(router.get_profile("my-strong").scores, stored.scores)

    out = chat.invoke("Janet has 3 apples and buys 4 more. How many apples does she have?")
    assert out.response_metadata["unirouter"]["model"] in {"my-strong", KNOWN}
    assert isinstance((chat | StrOutputParser()).invoke("What is 2 + 2?"), str)

    # Built again with the same cache: no new call (an interrupted run resumes the same way).
    again = cls.from_pretrained(
        {"my-strong": ReplayChatModel(model_name="my-strong", reply=lambda p: "unused")},
        costs={"my-strong": TokenPrice(input_per_mtok=5, output_per_mtok=15)},
        response_cache=tmp_path / "responses",
        embedder=embedder,
        profile_kwargs={"progress": False},
    )
    assert again.pool.router.get_profile("my-strong").stats.calls_cached == n


def test_from_pretrained_cost_guard_and_bad_input(chat_models, tmp_path, embedder):
    with pytest.raises(ProfilingCostError):
        UniRouteChatModel.from_pretrained(
            {"my-strong": chat_models["my-strong"]},
            costs={"my-strong": TokenPrice(input_per_mtok=5, output_per_mtok=15)},
            max_profiling_cost=0.01,
            response_cache=None,
            embedder=embedder,
        )
    assert chat_models["my-strong"].calls == []
    with pytest.raises(InvalidInputError, match="cost"):
        UniRouteChatModel.from_pretrained({"my-strong": chat_models["my-strong"]}, response_cache=None, embedder=embedder)
    with pytest.raises(InvalidInputError, match="provider"):
        UniRouteChatModel.from_pretrained({"x": "no-such-provider:some-model"}, costs={"x": 0.001}, embedder=embedder)
