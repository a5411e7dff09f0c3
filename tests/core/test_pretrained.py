"""The bundled validation set and pre-trained routers (issue 16): offline loading, checksums,
tamper detection, routing, profiling a replayed known model on the bundled set, the cost guard,
the per-format scorers and a reproducible build on a small subset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from replay import BundledReplay

import unirouter
from unirouter import (
    DifficultyRouter,
    InvalidInputError,
    PersistenceError,
    ProfilingCostError,
    UniRouter,
    UnknownModelError,
    load_dataset,
)
from unirouter.pretrained import (
    DATA_DIR,
    METHODS,
    answer_formats,
    known_models,
    load_pretrained,
    manifest,
    refit_clusters,
    router_for,
    scorer,
    typical_output_tokens,
    validation_embeddings,
    validation_set,
)
from unirouter.pretrained.build import build
from unirouter.profiling.profiler import TokenPrice, estimate_profiling_cost
from unirouter.profiling.scorers import PerPromptScorer, PythonLiteralScorer, get_scorer

MMLU_CATEGORIES = 14


@pytest.fixture(scope="module")
def zeroeval(data_dir):
    return load_dataset(data_dir / "zeroeval_math_code", load_responses=False)


@pytest.fixture()
def no_shared(data_dir, monkeypatch, tmp_path):
    """The shared data is unreachable: UNIROUTER_DATA points at a folder that does not exist.

    (``data_dir`` is resolved first: other fixtures of the session read the real data.)"""
    monkeypatch.setenv("UNIROUTER_DATA", str(tmp_path / "no-shared-data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the bundle ----------------------------------------------------------------------------------
def test_manifest_lists_every_file_with_its_checksum():
    meta = manifest()
    assert meta["version"] == unirouter.__version__
    files = {str(p.relative_to(DATA_DIR)) for p in DATA_DIR.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(meta["files"]) == files
    for rel, digest in meta["files"].items():
        assert hashlib.sha256((DATA_DIR / rel).read_bytes()).hexdigest() == digest
    assert not any(p.suffix in {".pkl", ".pickle"} for p in DATA_DIR.rglob("*"))
    assert sum(p.stat().st_size for p in DATA_DIR.rglob("*") if p.is_file()) < 8e6  # compressed in the wheel: ~2 MB


def test_validation_set_is_stratified_with_references_and_formats(no_shared):
    vs = validation_set()
    formats = answer_formats()
    assert 450 <= len(vs) <= 550
    groups = {g: vs.groups.count(g) for g in set(vs.groups)}
    assert len([g for g in groups if g.startswith("mmlu_pro/")]) == MMLU_CATEGORIES
    assert {g for g in groups if g.startswith("zeroeval_math_code/")} == {
        "zeroeval_math_code/gsm",
        "zeroeval_math_code/math-l5",
        "zeroeval_math_code/crux",
    }
    assert all(r is not None for r in vs.references)
    assert set(formats) == {"letter", "number", "python_literal"}
    for g, f in zip(vs.groups, formats):
        assert f == {"mmlu_pro": "letter"}.get(g.split("/")[0], "python_literal" if g.endswith("crux") else "number")
    assert vs.fingerprint == manifest()["validation"]["fingerprint"]
    x = validation_embeddings()
    assert x.shape == (len(vs), 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-2)
    assert (typical_output_tokens() > 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_loads_offline_and_routes(no_shared, embedder, method):
    router = load_pretrained(method, embedder=embedder)
    assert not (Path(unirouter.default_data_dir()) / "mmlu_pro").exists()
    assert len(router.models_) >= 70
    assert router.validation_set_.fingerprint == manifest()["validation"]["fingerprint"]
    d = router.route("Solve for x: 3x + 5 = 20. Give the number.", cost_weight=0.0)
    assert d.model in router.models_
    cheap = router.route("Solve for x: 3x + 5 = 20. Give the number.", cost_weight=1e6)
    costs = {n: router.get_profile(n).cost_per_query for n in router.models_}
    assert costs[cheap.model] <= np.median(list(costs.values()))


def test_classmethods(no_shared, embedder):
    assert isinstance(UniRouter.pretrained(embedder=embedder), UniRouter)
    learned = UniRouter.pretrained("learned", embedder=embedder, models=["gpt-4o-2024-05-13"])
    assert learned.theta_ is not None and learned.models_ == ["gpt-4o-2024-05-13"]
    assert isinstance(DifficultyRouter.pretrained(embedder=embedder, models=[]), DifficultyRouter)
    with pytest.raises(InvalidInputError, match="DifficultyRouter.pretrained"):
        UniRouter.pretrained("difficulty")
    with pytest.raises(InvalidInputError, match="method must be one of"):
        load_pretrained("knn")
    with pytest.raises(UnknownModelError, match="not known"):
        load_pretrained(models=["no-such-model"], embedder=embedder)


def test_known_models_lacking_a_family_are_nan_not_zero(embedder):
    router = load_pretrained(embedder=embedder)
    vs = router.validation_set_
    mmlu_rows = np.array([g.startswith("mmlu_pro/") for g in vs.groups])
    claude = router.get_profile("claude-3-5-sonnet-20241022")  # ZeroEval only
    assert np.isnan(claude.scores[mmlu_rows]).all() and not np.isnan(claude.scores[~mmlu_rows]).any()
    llama2 = router.get_profile("Llama-2-7b-hf")  # MMLU-Pro only
    assert np.isnan(llama2.scores[~mmlu_rows]).all() and not np.isnan(llama2.scores[mmlu_rows]).any()
    both = router.get_profile("gpt-4o-2024-05-13")
    assert not np.isnan(both.scores).any()
    assert sorted(both.metadata["families"]) == ["mmlu_pro", "zeroeval_math_code"]
    assert both.metadata["price_in_usd_per_mtok"] == 5.0 and both.metadata["price_out_usd_per_mtok"] == 15.0
    # The two spellings of Llama-3.1-70B-Instruct are one model.
    assert "Meta-Llama-3_1-70B-Instruct" not in router.models_
    assert sorted(router.get_profile("Meta-Llama-3.1-70B-Instruct").metadata["families"]) == ["mmlu_pro", "zeroeval_math_code"]


def test_known_models_table(no_shared):
    table = {m["name"]: m for m in known_models()}
    assert len(table) == manifest()["known_models"]
    gpt = table["gpt-4o-2024-05-13"]
    assert 0.5 < gpt["validation_accuracy"] <= 1 and gpt["cost_per_query"] > 0 and gpt["known"]


# -- tampering -----------------------------------------------------------------------------------
@pytest.fixture()
def bundle_copy(tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(DATA_DIR, dest)
    return dest


@pytest.mark.parametrize("victim", ["routers/kmeans/scores.npy", "validation.jsonl", "routers/difficulty/router.json"])
def test_tampered_file_is_refused(bundle_copy, embedder, victim):
    path = bundle_copy / victim
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PersistenceError, match="checksum") as err:
        load_pretrained("kmeans" if "difficulty" not in victim else "difficulty", data_dir=bundle_copy, embedder=embedder)
    assert err.value.path == path
    with pytest.raises(PersistenceError):
        validation_set(data_dir=bundle_copy)


def test_missing_file_or_manifest_is_refused(bundle_copy, embedder):
    (bundle_copy / "routers" / "learned" / "state_theta.npy").unlink()
    with pytest.raises(PersistenceError, match="missing"):
        load_pretrained("learned", data_dir=bundle_copy, embedder=embedder)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(PersistenceError, match="not installed"):
        load_pretrained(data_dir=bundle_copy)


# -- profiling on the bundled set ----------------------------------------------------------------
@pytest.mark.parametrize("method", ["kmeans", "difficulty"])
def test_replayed_known_model_profiles_to_its_recorded_labels(no_shared, mmlu, zeroeval, embedder, method):
    """A model answering like gpt-4o did is graded on the bundled set exactly as recorded."""
    router = load_pretrained(method, embedder=embedder)
    stored = router.get_profile("gpt-4o-2024-05-13")
    model = BundledReplay.build(mmlu, zeroeval, "gpt-4o-2024-05-13")
    profile = router.add_model(
        "my-gpt-4o", model=model, cost=TokenPrice(input_per_mtok=5, output_per_mtok=15), progress=False, max_profiling_cost=20.0
    )  # no scorer=: the bundled per-prompt scorer is used
    assert len(model.calls) == len(router.validation_set_)
    assert np.array_equal(profile.scores, stored.scores)
    no_letter = [c for c in list(model.calls) if model.formats[c] == "letter" and not model.mmlu.find(c)]
    assert profile.stats.unparsed == len(no_letter)
    assert "PerPromptScorer" in profile.metadata["scorer"]
    np.testing.assert_allclose(profile.cluster_error, stored.cluster_error, atol=1e-9)
    assert router.route("What is 7 * 6?", models=["my-gpt-4o", "gpt-4o-2024-05-13"]).model in {"my-gpt-4o", "gpt-4o-2024-05-13"}


def test_cost_estimate_and_guard_before_any_call(no_shared, embedder, capsys):
    router = load_pretrained(models=[], embedder=embedder)
    price = TokenPrice(input_per_mtok=5, output_per_mtok=15)
    est = estimate_profiling_cost(router, price)
    n = len(router.validation_set_)
    assert est.calls == n and est.cached == 0
    tin = sum(len(p) / 4 for p in router.validation_set_.prompts)
    expected = (tin * 5 + typical_output_tokens().sum() * 15) / 1e6
    assert est.cost == pytest.approx(expected)
    assert estimate_profiling_cost(router, 0.002).cost == pytest.approx(0.002 * n)

    calls = []
    with pytest.raises(ProfilingCostError, match="max_profiling_cost") as err:
        router.add_model("pricey", model=lambda p: calls.append(p) or "The answer is (A)", cost=price, max_profiling_cost=est.cost / 2)
    assert calls == [] and router.models_ == []
    assert err.value.estimate == pytest.approx(est.cost) and err.value.calls == n
    assert "calls" in capsys.readouterr().err  # the estimate is printed before any call
    with pytest.raises(InvalidInputError, match="max_profiling_cost"):
        router.add_model("x", model=lambda p: "A", cost=0.001, max_profiling_cost=-1)


def test_router_for_keeps_known_names_and_reprices(no_shared, embedder):
    router = router_for(["gpt-4o-2024-05-13", "my-model"], costs={"gpt-4o-2024-05-13": 0.5}, embedder=embedder)
    assert router.models_ == ["gpt-4o-2024-05-13"]
    p = router.get_profile("gpt-4o-2024-05-13")
    assert p.cost_per_query == 0.5 and p.metadata["repriced"]
    r2 = router_for(["gpt-4o-2024-05-13"], costs={"gpt-4o-2024-05-13": TokenPrice(input_per_mtok=1, output_per_mtok=1)}, embedder=embedder)
    assert r2.get_profile("gpt-4o-2024-05-13").costs is not None


def test_refit_clusters_on_own_prompts_keeps_profiles(no_shared, embedder):
    router = load_pretrained(models=["gpt-4o-2024-05-13", "Llama-2-7b-hf"], embedder=embedder)
    rng = np.random.default_rng(0)
    mine = rng.normal(size=(200, 384)).astype(np.float32)
    mine /= np.linalg.norm(mine, axis=1, keepdims=True)
    new = refit_clusters(router, embeddings=mine, n_clusters=6)
    assert new.models_ == router.models_ and new.n_clusters == 6
    for name in new.models_:
        assert np.array_equal(new.get_profile(name).scores, router.get_profile(name).scores, equal_nan=True)
    assert new.get_profile("gpt-4o-2024-05-13").cluster_error.shape == (6,)
    assert router.n_clusters == manifest()["settings"]["n_clusters"]  # the original is unchanged
    with pytest.raises(InvalidInputError, match="bundled validation set"):
        refit_clusters(UniRouter(2, embedder=embedder).fit(["a b", "c d", "e f"], validation=["x y", "z w"]), embeddings=mine)


# -- scorers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("response", "reference", "expected"),
    [
        ('{"reasoning": "...", "answer": "[(4, 1), (2, 3)]"}', "[(4, 1), (2, 3)]", 1.0),
        ("assert f([1, 2]) == [(4,1),(2,3)]", "[(4, 1), (2, 3)]", 1.0),
        ("[ANSWER]assert f('a') == 'abc'[/ANSWER]", "'abc'", 1.0),
        ('The output is "abc"', "'abc'", 1.0),
        ("The output is True", "1", 0.0),  # same value, other type
        ("```python\n{'a': 1}\n```", "{'a': 1}", 1.0),
        ("The answer is [1, 2, 3]", "[1, 2]", 0.0),
    ],
)
def test_python_literal_scorer(response, reference, expected):
    assert PythonLiteralScorer().score("p", response, reference) == expected


def test_python_literal_scorer_unparsed_and_alias():
    s = get_scorer("python_literal")
    assert isinstance(s, PythonLiteralScorer)
    assert s.score("p", "I could not work it out.\nSorry.", "[1]") is None and s.unparsed == 1


def test_per_prompt_scorer_dispatches_on_format():
    s = PerPromptScorer(["q1", "q2", "q3"], ["letter", "number", "python_literal"])
    assert s.score("q1", "The answer is (C).", "C") == 1.0
    assert s.score("q2", "So she makes $18 a day.", "18") == 1.0
    assert s.score("q3", "[ANSWER]f(1) == [1, 2][/ANSWER]", "[1,2]") == 1.0
    assert s.score("q1", "The answer is 18.", "C") is None
    with pytest.raises(InvalidInputError, match="no answer format"):
        s.score("other", "x", "C")
    with pytest.raises(InvalidInputError, match="no scorer"):
        PerPromptScorer(["q"], ["essay"])
    bundled = scorer()
    vs = validation_set()
    assert bundled.score(vs.prompts[0], f"The answer is ({vs.references[0]})", vs.references[0]) == 1.0


# -- the build -----------------------------------------------------------------------------------
def test_build_is_reproducible_on_a_small_subset(data_dir, embedder, tmp_path):
    kw = {
        "per_category": 2,
        "per_task": 3,
        "max_train": {"mmlu_pro": 140, "zeroeval_math_code": 120},
        "k_grid": (3, 5),
        "learned_epochs": 4,
        "embedder": embedder,
        "progress": False,
    }
    a = build(data_dir, tmp_path / "a", **kw)
    b = build(data_dir, tmp_path / "b", **kw)
    assert a["files"] == b["files"]
    assert a["validation"]["n"] == 2 * MMLU_CATEGORIES + 3 * 3
    assert a["settings"]["n_clusters"] in (3, 5) and set(a["settings"]["k_scores"]) == {"3", "5"}
    vs = validation_set(data_dir=tmp_path / "a")
    router = load_pretrained("learned", data_dir=tmp_path / "a", embedder=embedder)
    assert router.validation_set_.fingerprint == vs.fingerprint
    assert router.route("What is 2 + 2?").model in router.models_
    train_ids = json.loads((tmp_path / "a" / "manifest.json").read_text())["training"]["n"]
    assert train_ids > 200


def test_bundled_validation_embeddings_are_primed(no_shared, monkeypatch):
    """A budget or quality floor calibrates on the bundled prompts: loading puts their shipped
    vectors in the embedder's memory, so they are not embedded again (~30 s on 2 cores)."""
    from unirouter.embedding.embedders import SentenceTransformerEmbedder
    from unirouter.pretrained import validation_embeddings

    fresh = SentenceTransformerEmbedder(cache=None)  # no disk cache: only priming can avoid the model
    router = load_pretrained("kmeans", embedder=fresh)

    def refuse(texts):
        raise AssertionError(f"{len(texts)} bundled prompts were embedded again")

    monkeypatch.setattr(fresh, "_compute", refuse)
    vs = router.validation_set_
    np.testing.assert_array_equal(fresh.embed(vs.prompts), validation_embeddings())
    gamma, _, _ = router.predict(vs.prompts[:20])
    assert gamma.shape[0] == 20
    # An embedder without an in-memory cache is left alone (nothing to prime) and still loads.
    plain = load_pretrained("kmeans", embedder=SentenceTransformerEmbedder(cache=None, memory_cache=0))
    assert plain.embedder_.memory_cache_ is None
