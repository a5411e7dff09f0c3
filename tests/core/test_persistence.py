"""unirouter.persistence: JSON + .npy directories, checksums, schema, atomic overwrite, no pickle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from unirouter import PersistenceError, UniRouter
from unirouter.persistence import SCHEMA, load_router, read_router_info, save_router

SEED = 0


@pytest.fixture(scope="module")
def learned_router(mmlu_small, mmlu_embeddings, embedder) -> UniRouter:
    r = UniRouter(
        8,
        method="learned",
        random_state=SEED,
        embedder=embedder,
        max_epochs=10,
        patience=2,
        learning_rate=0.1,
    )
    return r.fit_dataset(
        mmlu_small["train"],
        mmlu_small["val"],
        embeddings=mmlu_embeddings["train"],
        validation_embeddings=mmlu_embeddings["val"],
    )


@pytest.fixture()
def saved(fitted_router, tmp_path) -> Path:
    fitted_router.save(tmp_path / "saved")
    return tmp_path / "saved"


def assert_same_decisions(a, b, x, lams=(0.0, 5.0, 50.0)):
    for lam in lams:
        da, db = (
            a.route_batch(embeddings=x, cost_weight=lam),
            b.route_batch(embeddings=x, cost_weight=lam),
        )
        assert [d.model for d in da] == [d.model for d in db]
        for u, v in zip(da, db):
            assert u.ranked == v.ranked
            np.testing.assert_array_equal(u.predicted_error, v.predicted_error)
            np.testing.assert_array_equal(u.expected_cost, v.expected_cost)
            np.testing.assert_array_equal(u.cluster_weights, v.cluster_weights)


def edit_meta(root: Path, fn) -> None:
    meta = json.loads((root / "router.json").read_text())
    fn(meta)
    (root / "router.json").write_text(json.dumps(meta))


# -- round trip -----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["kmeans", "learned"])
def test_round_trip_gives_identical_decisions(
    which,
    fitted_router,
    learned_router,
    mmlu_small,
    mmlu_embeddings,
    embedder,
    tmp_path,
):
    router = fitted_router if which == "kmeans" else learned_router
    router.save(tmp_path / "r")
    back = UniRouter.load(tmp_path / "r", embedder=embedder)
    assert back.get_params() == router.get_params()
    assert back.models_ == router.models_
    assert back.validation_fingerprint_ == router.validation_fingerprint_
    assert back.validation_set_.prompts == router.validation_set_.prompts
    np.testing.assert_array_equal(back.centroids_, router.centroids_)
    if which == "learned":
        np.testing.assert_array_equal(back.theta_, router.theta_)
    assert_same_decisions(router, back, mmlu_embeddings["test"])
    prompts = mmlu_small["test"].texts[:10]
    assert [d.model for d in back.route_batch(prompts, cost_weight=5.0)] == [
        d.model for d in router.route_batch(prompts, cost_weight=5.0)
    ]
    for name in router.models_:
        p, q = router.get_profile(name), back.get_profile(name)
        assert p.created_at == q.created_at and p.cost_per_query == q.cost_per_query
        np.testing.assert_array_equal(p.cluster_error, q.cluster_error)
        np.testing.assert_array_equal(p.costs, q.costs)


def test_saved_directory_layout_and_info(saved, fitted_router):
    files = {p.name for p in saved.iterdir()}
    assert {
        "router.json",
        "state_centroids.npy",
        "scores.npy",
        "costs.npy",
        "validation_labels.npy",
        "validation.jsonl",
    } <= files
    info = read_router_info(saved)
    assert info["schema"] == SCHEMA and info["class"] == "UniRouter"
    assert info["params"]["n_clusters"] == 8 and info["params"]["embedder"] is None
    assert [m["name"] for m in info["models"]] == fitted_router.models_
    spec = info["arrays"]["scores"]
    assert spec["shape"] == [len(fitted_router.models_), fitted_router.n_validation_]
    assert (
        spec["sha256"]
        == hashlib.sha256((saved / "scores.npy").read_bytes()).hexdigest()
    )


def test_flat_and_per_prompt_costs_survive(router_copy, embedder, tmp_path):
    n = router_copy.n_validation_
    router_copy.add_model("flat", correctness=np.ones(n), cost=0.004)
    router_copy.add_model(
        "graded", correctness=np.linspace(0, 1, n), cost=np.linspace(0.001, 0.002, n)
    )
    router_copy.save(tmp_path / "r2")
    back = UniRouter.load(tmp_path / "r2", embedder=embedder)
    assert (
        back.get_profile("flat").costs is None
        and back.get_profile("flat").cost_per_query == 0.004
    )
    np.testing.assert_allclose(back.get_profile("graded").scores, np.linspace(0, 1, n))
    np.testing.assert_allclose(
        back.get_profile("graded").cluster_cost,
        router_copy.get_profile("graded").cluster_cost,
    )


# -- damaged files --------------------------------------------------------------------------------
def _refused(root: Path, match: str, embedder) -> PersistenceError:
    with pytest.raises(PersistenceError, match=match) as info:
        load_router(root, embedder=embedder)
    return info.value


def test_missing_file_is_named(saved, embedder):
    (saved / "costs.npy").unlink()
    err = _refused(saved, "costs.npy is missing", embedder)
    assert err.path == saved / "costs.npy"


def test_truncated_array_fails_its_checksum(saved, embedder):
    data = (saved / "scores.npy").read_bytes()
    (saved / "scores.npy").write_bytes(data[: len(data) // 2])
    assert _refused(saved, "checksum", embedder).path == saved / "scores.npy"


def test_truncated_metadata_is_refused(saved, embedder):
    text = (saved / "router.json").read_text()
    (saved / "router.json").write_text(text[: len(text) // 2])
    assert _refused(saved, "not valid JSON", embedder).path == saved / "router.json"


def test_tampered_array_fails_its_checksum(saved, embedder):
    arr = np.load(saved / "state_centroids.npy")
    arr[0, 0] += 0.5
    np.save(saved / "state_centroids.npy", arr)
    assert (
        _refused(saved, "does not match the checksum", embedder).path
        == saved / "state_centroids.npy"
    )


def test_tampered_validation_prompts_are_refused(saved, embedder):
    lines = (saved / "validation.jsonl").read_text().splitlines()
    (saved / "validation.jsonl").write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    assert _refused(saved, "checksum", embedder).path == saved / "validation.jsonl"


def test_wrong_schema_version_is_refused(saved, embedder):
    edit_meta(saved, lambda m: m.update(schema="unirouter-router/999"))
    assert (
        _refused(saved, "schema must be 'unirouter-router/1'", embedder).path
        == saved / "router.json"
    )


def test_shape_mismatch_is_refused(saved, embedder):
    edit_meta(saved, lambda m: m["arrays"]["scores"].update(shape=[3, 3]))
    assert (
        _refused(
            saved,
            r"scores.npy has shape \[\d+, 150\] but router.json says \[3, 3\]",
            embedder,
        ).path
        == saved / "scores.npy"
    )


def test_consistently_tampered_centroids_of_wrong_k_are_refused(saved, embedder):
    bad = np.zeros((5, 384), dtype=np.float32)
    np.save(saved / "state_centroids.npy", bad)
    digest = hashlib.sha256((saved / "state_centroids.npy").read_bytes()).hexdigest()
    edit_meta(
        saved,
        lambda m: m["arrays"]["state_centroids"].update(shape=[5, 384], sha256=digest),
    )
    _refused(saved, "state_centroids.npy has shape", embedder)


def test_object_array_is_never_unpickled(saved, embedder):
    np.save(
        saved / "scores.npy",
        np.array([{"evil": 1}, None], dtype=object),
        allow_pickle=True,
    )
    digest = hashlib.sha256((saved / "scores.npy").read_bytes()).hexdigest()
    edit_meta(saved, lambda m: m["arrays"]["scores"].update(sha256=digest, shape=[2]))
    err = _refused(saved, "plain numpy array", embedder)
    assert err.path == saved / "scores.npy"


def test_non_router_directory_is_refused(tmp_path, embedder):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    assert (
        _refused(other, "router.json is missing", embedder).path
        == other / "router.json"
    )
    assert (
        _refused(tmp_path / "nothing", "not a directory", embedder).path
        == tmp_path / "nothing"
    )


# -- saving ---------------------------------------------------------------------------------------
def test_saving_over_an_existing_router_needs_overwrite(saved, router_copy, embedder):
    before = (saved / "router.json").read_text()
    with pytest.raises(PersistenceError, match="overwrite=True") as info:
        router_copy.save(saved)
    assert info.value.path == saved and (saved / "router.json").read_text() == before
    router_copy.remove_model(router_copy.models_[0])
    router_copy.save(saved, overwrite=True)
    assert UniRouter.load(saved, embedder=embedder).models_ == router_copy.models_


def test_overwrite_never_replaces_a_non_router_directory(fitted_router, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(PersistenceError, match="not a saved unirouter router"):
        fitted_router.save(other, overwrite=True)
    assert (other / "todo.txt").read_text() == "keep me" and len(
        list(other.iterdir())
    ) == 1


def test_failed_overwrite_is_atomic(
    saved, router_copy, fitted_router, embedder, monkeypatch, mmlu_embeddings
):
    """np.save fails after the first file: the old router stays whole and no temporary dir is left."""
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real_save = np.save
    calls = {"n": 0}

    def flaky_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("disk full (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", flaky_save)
    router_copy.remove_model(router_copy.models_[0])
    with pytest.raises(PersistenceError, match="disk full"):  # typed, the cause kept
        router_copy.save(saved, overwrite=True)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert [
        p.name for p in saved.parent.iterdir() if p.name.startswith(".")
    ] == []  # no .saved.tmp-* / .old-*
    back = UniRouter.load(saved, embedder=embedder)
    assert back.models_ == fitted_router.models_
    assert_same_decisions(
        fitted_router, back, mmlu_embeddings["test"][:20], lams=(0.0,)
    )


def test_failed_first_save_writes_nothing(fitted_router, tmp_path, monkeypatch):
    monkeypatch.setattr(
        np,
        "save",
        lambda *a, **k: (_ for _ in ()).throw(OSError("read-only (simulated)")),
    )
    with pytest.raises(PersistenceError, match="read-only") as info:
        fitted_router.save(tmp_path / "new")
    assert isinstance(info.value.__cause__, OSError)
    assert list(tmp_path.iterdir()) == []


def test_unfitted_router_cannot_be_saved(tmp_path):
    from unirouter import NotFittedError

    with pytest.raises(NotFittedError):
        save_router(UniRouter(), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_load_refuses_a_router_of_another_class(saved, embedder):
    baselines = pytest.importorskip("unirouter.routers.baselines")
    with pytest.raises(Exception, match="holds a UniRouter, not a"):
        baselines.ZeroRouter.load(saved, embedder=embedder)


# -- the registry of router kinds (persistence never imports a router class) ---------------------------
from unirouter.persistence.store import _write_manifest  # noqa: E402


def test_a_users_router_subclass_loads_by_its_own_name(saved, embedder):
    from unirouter.persistence import registered_router_classes

    class PinnedRouter(UniRouter):  # a user's subclass records itself when it is defined
        pass

    assert registered_router_classes()["PinnedRouter"] is PinnedRouter
    edit_meta(saved, lambda m: m.update({"class": "PinnedRouter"}))
    _write_manifest(saved)  # as if saved by PinnedRouter itself
    loaded = load_router(saved, embedder=embedder)
    assert type(loaded) is PinnedRouter
    assert PinnedRouter.load(saved, embedder=embedder).models_ == loaded.models_


def test_unknown_router_kind_names_the_file_and_what_to_do(saved, embedder):
    edit_meta(saved, lambda m: m.update({"class": "NoSuchRouter"}))
    _write_manifest(saved)
    err = _refused(saved, "unknown router class 'NoSuchRouter'", embedder)
    assert "import the module" in str(err)


def test_a_second_class_cannot_take_a_registered_name_explicitly():
    from unirouter import InvalidInputError
    from unirouter.persistence import register_router_class, router_class

    class UniRouter2(UniRouter):
        pass

    with pytest.raises(InvalidInputError, match="already registered"):
        register_router_class(UniRouter2, "UniRouter")
    assert router_class("UniRouter") is UniRouter

    class ZeroRouter(UniRouter):  # same name as a built-in, defined elsewhere: the built-in keeps its name
        pass

    from unirouter.routers import ZeroRouter as BuiltIn

    assert router_class("ZeroRouter") is BuiltIn
