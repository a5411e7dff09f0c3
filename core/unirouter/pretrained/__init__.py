"""Pre-trained routers and the bundled validation set: a universal router out of the box.

The package ships, in ``unirouter/data/bundle`` (read by :mod:`unirouter.data.bundled`; built by :mod:`unirouter.pretrained.build`
from the shared routing data, never read at run time):

* a validation set of about 500 prompts stratified over MMLU-Pro's 14 categories, GSM8K, MATH
  level 5 and CRUXEval-O, each with its reference answer and answer format (letter, number, Python
  literal), so :func:`scorer` grades each answer with the right scorer;
* three fitted routers (``"kmeans"``, ``"learned"``, ``"difficulty"``) holding the profiles of about
  80 known models on that set (names and list prices in each profile's metadata);
* a manifest with the version and the SHA-256 of every file, checked on every load.

Everything loads offline, without ``../shared``::

    from unirouter.pretrained import load_pretrained
    router = load_pretrained("kmeans", models=[])          # no known model: bring your own
    router.add_model("mine", model=my_fn, cost=TokenPrice(input_per_mtok=0.15, output_per_mtok=0.6),
                     max_profiling_cost=0.50)                # profiled on the bundled set, graded per prompt
    router.route("What is 17 * 23?").model
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from unirouter.data.bundled import (
    DATA_DIR,
    _records,
    _verified,
    answer_formats,
    manifest,
    typical_output_tokens,
    validation_embeddings,
    validation_set,
)
from unirouter.data.datasets import ValidationSet
from unirouter.exceptions import InvalidInputError, PersistenceError, UnknownModelError

__all__ = [
    "DATA_DIR",
    "METHODS",
    "answer_formats",
    "known_models",
    "load_pretrained",
    "refit_clusters",
    "manifest",
    "router_for",
    "scorer",
    "typical_output_tokens",
    "validation_embeddings",
    "validation_set",
]

METHODS = ("kmeans", "learned", "difficulty")


def scorer(*, data_dir: str | Path | None = None) -> Any:
    """A :class:`~unirouter.profiling.scorers.PerPromptScorer` grading each bundled prompt by its format."""
    from unirouter.profiling.scorers import PerPromptScorer

    root = Path(data_dir) if data_dir is not None else DATA_DIR
    _verified(root)
    rows = _records(root)
    return PerPromptScorer([r["prompt"] for r in rows], [r["format"] for r in rows])


def known_models(method: str = "kmeans", *, data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The known models of a pre-trained router: name, families, list prices, bundled-set accuracy."""
    router = load_pretrained(method, data_dir=data_dir)
    out = []
    for name, p in router.profiles_.items():
        out.append({"name": name, "validation_accuracy": round(p.accuracy, 4), "cost_per_query": p.cost_per_query, **p.metadata})
    return out


def load_pretrained(
    method: str = "kmeans",
    *,
    models: Iterable[str] | None = None,
    embedder: Any = None,
    cost_weight: float | None = None,
    data_dir: str | Path | None = None,
) -> Any:
    """A fitted router with the known models' profiles, loaded offline from the package data.

    Parameters
    ----------
    method : {"kmeans", "learned", "difficulty"}, default="kmeans"
        UniRoute with the K-means map, UniRoute with the learned map, or :class:`DifficultyRouter`.
    models : list of str, optional
        Keep only these known models (``[]`` keeps none: add your own). Default: all of them. A
        known model lacking a task family has no score there (NaN, never 0), so for prompts of that
        family its predicted error falls back to its overall error: prefer your own models.
    embedder : Embedder, optional
        Must be the embedder the routers were fitted with (default all-MiniLM-L6-v2).
    cost_weight : float, optional
        Default lambda for routing.
    data_dir : path, optional
        Another bundle (tests); defaults to the package's own.

    Raises
    ------
    PersistenceError
        A bundled file is missing or does not match its checksum.
    UnknownModelError
        ``models`` names a model the bundle does not know.
    """
    from unirouter.persistence import load_router

    if method not in METHODS:
        msg = f"method must be one of {METHODS}. Got {method!r}."
        raise InvalidInputError(msg)
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    _verified(root)
    vs = validation_set(data_dir=root)
    router = load_router(root / "routers" / method, embedder=embedder)
    if router.validation_fingerprint_ != vs.fingerprint:
        msg = f"{root / 'routers' / method} was built on another validation set than validation.jsonl; reinstall unirouter."
        raise PersistenceError(msg, path=root / "routers" / method)
    router.validation_set_ = vs
    _prime_embeddings(router, vs, root)
    if models is not None:
        keep = [models] if isinstance(models, str) else list(models)
        known = set(router.models_)
        unknown = [m for m in keep if m not in known]
        if unknown:
            msg = f"models {unknown} are not known to the pre-trained router; known: {sorted(known)}."
            raise UnknownModelError(msg, model=unknown[0])
        for name in list(router.models_):
            if name not in keep:
                router.remove_model(name)
    if cost_weight is not None:
        router.cost_weight = cost_weight
    return router


def _prime_embeddings(router: Any, vs: ValidationSet, root: Path) -> None:
    """Put the bundled validation embeddings in the embedder's in-memory cache.

    Calibrating a budget or a quality floor predicts on the bundled prompts; without this, the
    first such call embeds all ~500 of them again (about half a minute on a 2-core CPU). Done
    only when the embedder is the one the bundle was embedded with and its cache can hold them.
    """
    from unirouter.embedding.embedders import EmbeddingCache

    emb = router.embedder_
    mem = getattr(emb, "memory_cache_", None)
    if mem is None or mem.maxsize < len(vs.prompts) or getattr(emb, "name", None) != manifest(data_dir=root)["embedder"]:
        return
    vectors = validation_embeddings(data_dir=root)
    mem.put_many([(emb.name, EmbeddingCache.key(p)) for p in vs.prompts], list(vectors))


def _priced(router: Any, cost: Any) -> Any:
    """``cost`` as build_profile takes it: a float, or per-prompt costs from a TokenPrice (prompt
    characters / 4 input tokens, the typical answer length of each bundled prompt as output)."""
    from unirouter.profiling.profiler import TokenPrice

    if isinstance(cost, dict) and set(cost) == {"input_per_mtok", "output_per_mtok"}:
        cost = TokenPrice(**cost)
    if isinstance(cost, TokenPrice):
        vs = router.validation_set_
        tin = np.array([len(p) / 4.0 for p in vs.prompts])
        tout = typical_output_tokens()
        return (tin * cost.input_per_mtok + tout * cost.output_per_mtok) / 1e6
    return cost


def router_for(
    names: Iterable[str],
    *,
    costs: Any = None,
    method: str = "kmeans",
    embedder: Any = None,
) -> Any:
    """The pre-trained router holding the stored profiles of those ``names`` it knows, and no other.

    What the LangChain and LlamaIndex ``from_pretrained`` constructors build on: names the bundle
    knows (e.g. ``"gpt-4o-2024-05-13"``) keep their stored profile (re-priced when ``costs`` gives
    their price: a cost per query or a ``TokenPrice``); every other name is left for profiling on
    the bundled validation set.
    """
    names = list(names)
    router = load_pretrained(method, embedder=embedder)
    keep = set(names)
    for name in list(router.models_):
        if name not in keep:
            router.remove_model(name)
    for name, cost in dict(costs or {}).items():
        if cost is None or name not in router.models_:
            continue
        old = router.get_profile(name)
        new = router.build_profile(name, old.scores, cost=_priced(router, cost), metadata={**old.metadata, "repriced": True})
        router._register(new, replace=True)
    return router


def refit_clusters(
    router: Any,
    prompts: Any = None,
    *,
    embeddings: Any = None,
    n_clusters: int | None = None,
    random_state: int | None = 0,
) -> Any:
    """A K-means UniRouter whose clusters come from *your* unlabelled prompts, keeping every profile.

    The K-means map needs no labels, so it can be refitted on your own traffic; each registered
    model's stored per-prompt scores and costs on the bundled validation set are re-summarised for
    the new clusters (``add_profile``), so no model is profiled again. ``router`` is any router over
    the bundled validation set (e.g. ``load_pretrained()`` after adding your models); it is not
    changed. ``n_clusters`` defaults to the router's own K (or the bundle's).
    """
    # The router classes sit above this module; the registry gives the class without importing upward.
    from unirouter.persistence.registry import router_class

    UniRouter = router_class("UniRouter")
    vs = router.validation_set_
    if vs is None or vs.fingerprint != validation_set().fingerprint:
        msg = "refit_clusters needs a router over the bundled validation set (load_pretrained(...))."
        raise InvalidInputError(msg)
    k = n_clusters if n_clusters is not None else int(getattr(router, "n_clusters", 0) or manifest()["settings"]["n_clusters"])
    new = UniRouter(k, random_state=random_state, embedder=router.embedder, cost_weight=getattr(router, "cost_weight", 0.0))
    new._embedder = router.embedder_
    new.fit(prompts, embeddings=embeddings, validation=vs, validation_embeddings=validation_embeddings())
    for profile in router.profiles_.values():
        new.add_profile(profile)
    return new
