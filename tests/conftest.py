"""Shared fixtures: the real data, one real embedder (cached on disk), real fitted routers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.append(str(Path(__file__).resolve().parent))  # so tests can `import replay` (appended: tests/langchain must not shadow langchain)

from unirouter import (  # noqa: E402
    RoutingDataset,
    SentenceTransformerEmbedder,
    UniRouter,
    default_data_dir,
    load_dataset,
)
from unirouter.embedding.embedders import default_cache_dir  # noqa: E402

SEED = 0
# Models with complete MMLU-Pro data (DeepSeek-Coder-V2 covers only part of it).
N_TRAIN, N_VAL, N_TEST = 400, 150, 150


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if not (d / "mmlu_pro" / "dataset.json").is_file():
        pytest.fail(f"shared routing data not found at {d}; set UNIROUTER_DATA")
    return d


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real default embedder; embeddings persist in the on-disk cache between runs."""
    return SentenceTransformerEmbedder(cache=default_cache_dir())


@pytest.fixture(scope="session")
def mmlu(data_dir: Path) -> RoutingDataset:
    return load_dataset(data_dir / "mmlu_pro")


@pytest.fixture(scope="session")
def mmlu_small(mmlu: RoutingDataset) -> dict[str, RoutingDataset]:
    """A fixed 700-prompt slice of MMLU-Pro (complete models, unique prompts) split 400/150/150."""
    models = mmlu.complete_models(min_coverage=0.99)
    rows = mmlu.complete_rows(models)
    texts = [mmlu.texts[i] for i in rows]
    first = {}
    for i, t in zip(rows, texts):
        first.setdefault(t, i)
    rows = np.array(sorted(first.values()))
    rng = np.random.default_rng(SEED)
    pick = rng.choice(rows, size=N_TRAIN + N_VAL + N_TEST, replace=False)
    sub = mmlu.subset(pick, models=models)
    return {
        "train": sub.subset(range(N_TRAIN)),
        "val": sub.subset(range(N_TRAIN, N_TRAIN + N_VAL)),
        "test": sub.subset(range(N_TRAIN + N_VAL, N_TRAIN + N_VAL + N_TEST)),
    }


@pytest.fixture(scope="session")
def mmlu_embeddings(mmlu_small, embedder) -> dict[str, np.ndarray]:
    return {k: embedder.embed(v.texts) for k, v in mmlu_small.items()}


@pytest.fixture(scope="session")
def fitted_router(mmlu_small, mmlu_embeddings, embedder) -> UniRouter:
    """A K-means UniRouter (K=8) with every model added from its validation labels and costs."""
    router = UniRouter(n_clusters=8, random_state=SEED, embedder=embedder)
    router.fit_dataset(
        mmlu_small["train"],
        mmlu_small["val"],
        embeddings=mmlu_embeddings["train"],
        validation_embeddings=mmlu_embeddings["val"],
    )
    return router


@pytest.fixture()
def router_copy(fitted_router, tmp_path) -> UniRouter:
    """A private copy of the fitted router (through save/load) that a test may change."""
    fitted_router.save(tmp_path / "router")
    return UniRouter.load(tmp_path / "router", embedder=fitted_router.embedder_)
