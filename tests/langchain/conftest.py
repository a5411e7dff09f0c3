"""Fixtures for the LangChain plugin tests: replay chat models and the real fitted router."""

from __future__ import annotations

import pytest

from replay import RecordedModel

from tests.langchain.fakes import MODELS, ReplayChatModel, make_models


@pytest.fixture(scope="session")
def recorded(mmlu) -> dict[str, RecordedModel]:
    return {name: RecordedModel.from_dataset(mmlu, name) for name in MODELS}


@pytest.fixture()
def models(recorded) -> dict[str, ReplayChatModel]:
    return make_models(recorded)


@pytest.fixture()
def lc_router(router_copy):
    """The fitted router (K=8, real MiniLM) keeping only the profiles of ``MODELS``."""
    for name in list(router_copy.models_):
        if name not in MODELS:
            router_copy.remove_model(name)
    return router_copy


@pytest.fixture()
def questions(mmlu_small) -> list[str]:
    """Held-out MMLU-Pro questions (the router's test split)."""
    return list(mmlu_small["test"].texts)
