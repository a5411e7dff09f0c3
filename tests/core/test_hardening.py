"""Issue 19: never destroy user files, no races under churn, every failure typed and kept.

Each test here failed on the code before the fix. The concurrency tests are bounded in time (a
fixed number of calls or a deadline of a second or two) so they run in CI.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unirouter import (
    AllModelsFailedError,
    FailedAnswerError,
    InvalidInputError,
    PersistenceError,
    UniRouter,
    UniRouterError,
)
from unirouter.integration import CandidatePool
from unirouter.persistence import MANIFEST

CANDIDATES = (
    "gpt-4o-2024-05-13",
    "gemini-1.5-flash-002",
    "Llama-2-7b-hf",
    "Meta-Llama-3_1-70B-Instruct",
)


# -- 1. overwrite only replaces what the library wrote ---------------------------------------------
def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_refuses_a_directory_that_merely_holds_a_router_json(fitted_router, tmp_path):
    app = tmp_path / "webapp"
    (app / "src").mkdir(parents=True)
    (app / "router.json").write_text(json.dumps({"routes": [{"path": "/", "view": "index"}]}))
    (app / "src" / "app.py").write_text("print('hello')\n")
    before = _tree(app)
    with pytest.raises(PersistenceError, match="not written by unirouter|refusing") as e:
        fitted_router.save(app, overwrite=True)
    assert e.value.path is not None
    assert _tree(app) == before  # nothing touched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".webapp")]  # no temp left behind


def test_overwrite_refuses_a_forged_router_json_next_to_user_files(fitted_router, tmp_path):
    """A copy of a real router.json in a user's folder is not a licence to delete the folder."""
    fitted_router.save(tmp_path / "real")
    user = tmp_path / "user"
    user.mkdir()
    (user / "router.json").write_bytes((tmp_path / "real" / "router.json").read_bytes())
    (user / "thesis.tex").write_text("\\section{Intro}\n")
    before = _tree(user)
    with pytest.raises(PersistenceError):
        fitted_router.save(user, overwrite=True)
    assert _tree(user) == before


def test_overwrite_keeps_extra_files_the_user_put_in_a_router_directory(fitted_router, tmp_path):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    (dest / "notes.md").write_text("why this router\n")
    (dest / "plots").mkdir()
    (dest / "plots" / "a.png").write_bytes(b"\x89PNG")
    before = _tree(dest)
    with pytest.raises(PersistenceError, match="notes.md"):
        fitted_router.save(dest, overwrite=True)
    assert _tree(dest) == before
    UniRouter.load(dest, embedder=fitted_router.embedder_)  # still a loadable router


def test_overwrite_refuses_a_router_file_changed_since_it_was_saved(fitted_router, tmp_path):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    (dest / "validation.jsonl").write_text('{"prompt": "my own edit"}\n')
    before = _tree(dest)
    with pytest.raises(PersistenceError, match="validation.jsonl"):
        fitted_router.save(dest, overwrite=True)
    assert _tree(dest) == before


def test_overwrite_replaces_a_router_the_library_wrote(fitted_router, tmp_path):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    assert set(manifest["files"]) == {p.name for p in dest.iterdir()} - {MANIFEST}
    fitted_router.save(dest, overwrite=True)
    fitted_router.save(dest, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]  # no .old-* or temp left behind
    UniRouter.load(dest, embedder=fitted_router.embedder_)


def test_overwrite_refuses_a_symlink(fitted_router, tmp_path):
    fitted_router.save(tmp_path / "v1")
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "v1", target_is_directory=True)
    with pytest.raises(PersistenceError, match="symlink"):
        fitted_router.save(link, overwrite=True)
    assert link.is_symlink()


def test_pool_save_writes_router_and_candidate_table_in_one_atomic_step(router_copy, tmp_path):
    pool = CandidatePool(router_copy)
    for name in CANDIDATES:
        pool.add(name, object(), None, cost=router_copy.get_profile(name).cost_per_query)
    dest = tmp_path / "pool"
    pool.save(dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    assert "candidates.json" in manifest["files"]
    pool.save(dest, overwrite=True)  # a pool directory is the library's too
    (dest / "mine.txt").write_text("x")
    with pytest.raises(PersistenceError, match="mine.txt"):
        pool.save(dest, overwrite=True)
    assert (dest / "mine.txt").read_text() == "x"


# -- 2. one consistent snapshot under churn --------------------------------------------------------
def test_route_excluding_an_unregistered_name_is_not_an_error(router_copy, mmlu_small):
    text = mmlu_small["test"].texts[0]
    plain = router_copy.route(text)
    assert router_copy.route(text, exclude=["no-such-model"]).model == plain.model
    router_copy.remove_model(plain.model)
    assert router_copy.route(text, exclude=[plain.model]).model != plain.model


def test_route_with_handle_unknown_ignore(router_copy, mmlu_small):
    text = mmlu_small["test"].texts[0]
    with pytest.raises(UniRouterError):
        router_copy.route(text, models=["gone", CANDIDATES[0]])
    d = router_copy.route(text, models=["gone", CANDIDATES[0]], handle_unknown="ignore")
    assert d.candidates == (CANDIDATES[0],)
    with pytest.raises(InvalidInputError):
        router_copy.route(text, handle_unknown="maybe")


class _Echo:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, prompt: str) -> str:
        return f"{self.name}: ok"

    async def acall(self, prompt: str) -> str:
        await asyncio.sleep(0)
        return self(prompt)


def _churn_pool(router_copy):
    pool = CandidatePool(router_copy, defaults={"max_fallbacks": 0})
    for name in CANDIDATES:
        pool.add(name, _Echo(name), None, cost=router_copy.get_profile(name).cost_per_query)
    profiles = {n: router_copy.get_profile(n) for n in CANDIDATES[1:]}
    return pool, profiles


def _churn(pool, profiles, stop: threading.Event) -> None:
    """Remove and re-add every candidate but the first, over and over, until stopped."""
    while not stop.is_set():
        for name, prof in profiles.items():
            pool.remove(name)
            pool.router.add_profile(prof)
            pool.add(name, _Echo(name), None, cost=prof.cost_per_query)


def test_sync_calls_under_add_remove_churn_never_fail(router_copy, mmlu_small):
    pool, profiles = _churn_pool(router_copy)
    texts = mmlu_small["test"].texts[:20]
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(k: int) -> None:
        deadline = time.monotonic() + 2.0
        i = 0
        while time.monotonic() < deadline:
            try:
                d = pool.decide(texts[(k + i) % len(texts)])
                pool.run_with_fallbacks(d, None, lambda n: pool.get(n).model("q"))
                pool.decide(texts[i % len(texts)], {"excluded_models": [CANDIDATES[1]]})
            except Exception as e:  # noqa: BLE001 - counted
                errors.append(e)
            i += 1

    churner = threading.Thread(target=_churn, args=(pool, profiles, stop))
    churner.start()
    try:
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(worker, range(4)))
    finally:
        stop.set()
        churner.join(10)
    assert errors == []


def test_async_calls_under_add_remove_churn_never_fail(router_copy, mmlu_small):
    pool, profiles = _churn_pool(router_copy)
    texts = mmlu_small["test"].texts[:20]
    stop = threading.Event()

    async def one(i: int):
        d = await pool.adecide(texts[i % len(texts)])
        out, _ = await pool.arun_with_fallbacks(d, None, lambda n: pool.get(n).model.acall("q"))
        return out

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True), 60)

    churner = threading.Thread(target=_churn, args=(pool, profiles, stop))
    churner.start()
    try:
        results = asyncio.run(main())
    finally:
        stop.set()
        churner.join(10)
    assert [r for r in results if isinstance(r, BaseException)] == []


# -- 3. choose(): thread-safe, bounded memo, validated ---------------------------------------------
def test_choose_is_thread_safe(router_copy, mmlu_embeddings):
    x = mmlu_embeddings["test"][:4]
    lams = np.linspace(0.0, 50.0, 400)
    expected = {float(lam): router_copy.choose(x, float(lam)).tolist() for lam in lams[:20]}
    router_copy.remove_model(CANDIDATES[-1])  # a fresh snapshot: empty memo
    router_copy.add_profile(router_copy.profiles_[CANDIDATES[0]].model_copy(update={"name": CANDIDATES[-1]}))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(_: int) -> None:
        barrier.wait()
        for lam in lams:
            try:
                router_copy.choose(x, float(lam))
            except Exception as e:  # noqa: BLE001 - counted
                errors.append(e)

    for _ in range(3):
        router_copy.remove_model(CANDIDATES[-1])
        router_copy.add_profile(router_copy.profiles_[CANDIDATES[0]].model_copy(update={"name": CANDIDATES[-1]}))
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(worker, range(8)))
        barrier.reset()
    assert errors == []
    assert expected  # the fast path still works after the churn
    d = router_copy.route_batch(embeddings=x, cost_weight=3.0)
    names = router_copy.models_
    assert [names[i] for i in router_copy.choose(x, 3.0)] == [r.model for r in d]


def test_choose_memo_is_bounded(router_copy, mmlu_embeddings):
    x = mmlu_embeddings["test"][:2]
    router_copy.choose(x, 0.0)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for lam in np.linspace(0.0, 10.0, 20_000):
            router_copy.choose(x, float(lam))
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000, f"memo grew by {grown / 1e6:.1f} MB over 20,000 cost weights"


@pytest.mark.parametrize(
    ("embeddings", "lam"),
    [
        ("abc", 0.0),
        ([["a", "b"]], 0.0),
        (np.zeros((0, 16)), 0.0),
        (np.zeros((2, 16)), 0.0),
        (np.full((2, 384), np.nan), 0.0),
        (np.zeros((2, 384)), float("nan")),
        (np.zeros((2, 384)), -1.0),
        (np.zeros((2, 384)), "cheap"),
    ],
)
def test_choose_validates_its_input(router_copy, embeddings, lam):
    with pytest.raises(InvalidInputError):
        router_copy.choose(embeddings, lam)
    with pytest.raises(InvalidInputError):
        router_copy.choose(embeddings, lam, models=list(CANDIDATES))
    assert router_copy.choose(np.zeros((0, 384)), 1.0).shape == (0,)  # no rows: no choices


# -- 4. every attempt's failure kept; failed answers fall back -------------------------------------
class _Provider:
    def __init__(self, exc: BaseException | None = None, answer: str = "fine") -> None:
        self.exc, self.answer, self.calls = exc, answer, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return self.answer


@pytest.fixture()
def pool(router_copy) -> CandidatePool:
    p = CandidatePool(router_copy, defaults={"max_fallbacks": 3})
    for name in CANDIDATES:
        p.add(name, object(), None, cost=router_copy.get_profile(name).cost_per_query)
    return p


def test_all_fallbacks_failing_raises_one_typed_error_with_every_cause(pool, mmlu_small):
    d = pool.decide(mmlu_small["test"].texts[0])
    errs = [RuntimeError("429 rate limited"), TimeoutError("timeout"), ConnectionError("reset"), OSError("500")]
    providers = dict(zip(d.ranked, (_Provider(e) for e in errs)))
    with pytest.raises(AllModelsFailedError) as info:
        pool.run_with_fallbacks(d, None, lambda n: providers[n]())
    e = info.value
    assert isinstance(e, UniRouterError) and isinstance(e, ExceptionGroup)
    assert list(e.exceptions) == errs
    assert [a["model"] for a in e.attempts] == list(d.ranked)
    assert e.__cause__ is errs[-1]
    for name in d.ranked:
        assert name in str(e)
    with pytest.raises(AllModelsFailedError) as info:
        asyncio.run(pool.arun_with_fallbacks(d, None, lambda n: _async(providers[n])))
    assert list(info.value.exceptions) == errs


async def _async(fn):
    await asyncio.sleep(0)
    return fn()


@pytest.mark.parametrize("bad", ["", "   \n\t", "\x00\x00", " \x00 "])
def test_an_empty_answer_is_a_failure_and_falls_back(pool, mmlu_small, bad):
    d = pool.decide(mmlu_small["test"].texts[0])
    providers = {n: _Provider(answer=f"{n} says B") for n in d.ranked}
    providers[d.ranked[0]].answer = bad
    out, attempts = pool.run_with_fallbacks(d, None, lambda n: providers[n]())
    assert out == f"{d.ranked[1]} says B"
    assert attempts[0]["ok"] is False and "FailedAnswerError" in attempts[0]["error"]
    for n in d.ranked:
        providers[n].answer = bad
    with pytest.raises(AllModelsFailedError) as info:
        pool.run_with_fallbacks(d, None, lambda n: providers[n]())
    assert all(isinstance(x, FailedAnswerError) for x in info.value.exceptions)
    assert info.value.exceptions[0].model == d.ranked[0]


def test_users_declare_what_a_failed_answer_is(pool, mmlu_small):
    d = pool.decide(mmlu_small["test"].texts[0])
    providers = {n: _Provider(answer=f"{n} says B") for n in d.ranked}
    providers[d.ranked[0]].answer = "I'm sorry, I can't help with that."
    refusal = {"is_failed_answer": lambda text: text.startswith("I'm sorry")}
    out, attempts = asyncio.run(pool.arun_with_fallbacks(d, refusal, lambda n: _async(providers[n])))
    assert out == f"{d.ranked[1]} says B" and [a["ok"] for a in attempts] == [False, True]
    out, _ = pool.run_with_fallbacks(d, None, lambda n: providers[n]())  # default: a refusal is an answer
    assert out.startswith("I'm sorry")
    with pytest.raises(InvalidInputError, match="is_failed_answer"):
        pool.run_with_fallbacks(d, {"is_failed_answer": "empty"}, lambda n: providers[n]())


def test_tool_call_messages_with_empty_text_are_answers(pool, mmlu_small):
    """An empty text next to tool calls is a real answer (LangChain AIMessage shape)."""

    class Msg:
        content = ""
        tool_calls = [{"name": "search", "args": {}, "id": "1"}]

    d = pool.decide(mmlu_small["test"].texts[0])
    msg = Msg()
    out, attempts = pool.run_with_fallbacks(d, None, lambda n: msg)
    assert out is msg and attempts == [{"model": d.ranked[0], "ok": True}]


# -- 5. lone surrogates ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.text(max_size=20),
    surrogate=st.integers(0xD800, 0xDFFF).map(chr),
    suffix=st.text(max_size=20),
)
def test_prompts_with_lone_surrogates_get_a_typed_error(fitted_router, prefix, surrogate, suffix):
    prompt = "What is 2+2? " + prefix + surrogate + suffix
    with pytest.raises(InvalidInputError, match="surrogate"):
        fitted_router.route(prompt)
    with pytest.raises(InvalidInputError, match="surrogate"):
        fitted_router.route_batch(["fine", prompt])


def test_a_lone_surrogate_in_a_response_does_not_break_cached_profiling(router_copy, mmlu_small, tmp_path):
    """A truncated emoji in a model's answer is stored and read back; no paid call is lost."""
    from replay import RecordedModel
    from unirouter.profiling.profiler import ResponseCache
    from unirouter.profiling.scorers import MultipleChoiceScorer

    val, name = mmlu_small["val"], CANDIDATES[0]
    recorded = RecordedModel.from_dataset(val, name)
    calls = []

    def model(prompt: str) -> str:
        calls.append(prompt)
        return recorded(prompt) + " \ud83d"  # half of a surrogate pair

    kw = {"scorer": MultipleChoiceScorer(), "cost": 0.001, "progress": False}
    first = router_copy.add_model("s1", model=model, cache=ResponseCache(tmp_path), **kw)
    assert len(calls) == len(val) and first.stats.calls_failed == 0
    again = router_copy.add_model("s2", model=model, cache=ResponseCache(tmp_path), model_id="s1", **kw)
    assert len(calls) == len(val) and again.stats.calls_cached == len(val)  # all read back from disk
    np.testing.assert_array_equal(first.scores, again.scores)


# -- 7. atomic, typed, self-cleaning saves ---------------------------------------------------------
def test_a_failed_swap_without_renameat2_leaves_the_old_router_in_place(fitted_router, tmp_path, monkeypatch):
    """Where the atomic exchange is unavailable, a failure between the two renames is undone."""
    import os

    from unirouter.persistence import store as persistence

    dest = tmp_path / "saved"
    fitted_router.save(dest)
    before = _tree(dest)
    monkeypatch.setattr(persistence, "_renameat2", lambda *a: False)
    real = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # dest -> .old worked; tmp -> dest fails
            raise OSError(28, "No space left on device (simulated)")
        return real(src, dst)

    monkeypatch.setattr(persistence.os, "rename", flaky)
    with pytest.raises(PersistenceError, match="No space left") as info:
        fitted_router.save(dest, overwrite=True)
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert _tree(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_a_killed_save_leaves_no_temporary_directory_behind(fitted_router, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".saved.tmp-{pid}-abc123"
    stale.mkdir()
    (stale / "scores.npy").write_bytes(b"\0" * 1000)
    live = tmp_path / f".saved.tmp-{1}-def456"  # pid 1 is alive: maybe a save in progress elsewhere
    live.mkdir()
    fitted_router.save(tmp_path / "saved")
    assert not stale.exists() and live.exists()


def test_concurrent_saves_to_one_path_are_typed_and_leave_one_whole_router(fitted_router, tmp_path):
    dest = tmp_path / "saved"
    barrier = threading.Barrier(4)

    def save(_):
        barrier.wait()
        try:
            fitted_router.save(dest)
            return "ok"
        except PersistenceError:
            return "refused"

    with ThreadPoolExecutor(4) as ex:
        outcomes = list(ex.map(save, range(4)))
    assert outcomes.count("ok") >= 1 and set(outcomes) <= {"ok", "refused"}
    UniRouter.load(dest, embedder=fitted_router.embedder_)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


# -- 6. a profiler timeout that cannot be defeated -------------------------------------------------
def test_a_model_that_swallows_cancellation_cannot_hang_profiling(router_copy, mmlu_small):
    """A retry wrapper that catches BaseException (CancelledError included) around a hung call."""
    from replay import RecordedModel

    val = mmlu_small["val"]
    recorded = RecordedModel.from_dataset(val, CANDIDATES[0])
    hung = set(val.texts[:3])

    async def stubborn(prompt: str) -> str:
        for _ in range(5):  # retries on *anything*, cancellation included
            try:
                if prompt in hung:
                    await asyncio.sleep(3600)
                return recorded(prompt)
            except BaseException:  # noqa: BLE001, S112 - the bug under test
                continue
        return recorded(prompt)

    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["profile"] = router_copy.add_model(
                "stubborn", model=stubborn, scorer="multiple_choice", cost=0.001, timeout=0.2,
                max_retries=0, max_failure_rate=0.1, progress=False,
            )
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    t.start()
    t.join(30)
    assert not t.is_alive(), "profiling hung on a model that swallows CancelledError"
    assert "error" not in out, out.get("error")
    assert time.monotonic() - started < 30
    stats = out["profile"].stats
    assert stats.calls_failed == 3 and all("Timeout" in c for c in stats.failure_causes)


# -- 8. the loader does not trust an edited router.json --------------------------------------------
def test_swapping_model_names_in_router_json_is_refused(fitted_router, tmp_path):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    meta = json.loads((dest / "router.json").read_text())
    meta["models"][0]["name"], meta["models"][1]["name"] = meta["models"][1]["name"], meta["models"][0]["name"]
    (dest / "router.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(PersistenceError, match="router.json does not match the checksum") as info:
        UniRouter.load(dest, embedder=fitted_router.embedder_)
    assert info.value.path == dest / "router.json"


def test_edited_candidate_table_is_refused(router_copy, tmp_path):
    pool = CandidatePool(router_copy)
    for name in CANDIDATES:
        pool.add(name, object(), None, cost=router_copy.get_profile(name).cost_per_query)
    pool.save(tmp_path / "pool")
    table = json.loads((tmp_path / "pool" / "candidates.json").read_text())
    table["candidates"][0]["cost"] = 0.0
    (tmp_path / "pool" / "candidates.json").write_text(json.dumps(table))
    with pytest.raises(PersistenceError, match="candidates.json does not match"):
        CandidatePool.load(tmp_path / "pool", models={n: object() for n in CANDIDATES}, embedder=router_copy.embedder_)


@pytest.mark.parametrize("name", ["../outside.npy", "/etc/passwd", "sub/scores.npy"])
def test_array_paths_outside_the_router_directory_are_refused(fitted_router, tmp_path, name):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    (tmp_path / "outside.npy").write_bytes((dest / "scores.npy").read_bytes())
    meta = json.loads((dest / "router.json").read_text())
    meta["arrays"]["scores"]["file"] = name
    (dest / "router.json").write_text(json.dumps(meta))
    with pytest.raises(PersistenceError, match="plain file names"):
        UniRouter.load(dest, embedder=fitted_router.embedder_)


# -- 9. bad input never reaches numpy/sklearn/torch ------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"n_init": 0},
        {"cost_weight": float("nan")},
        {"cost_weight": -1.0},
        {"method": "learned", "learning_rate": 0.0},
        {"method": "learned", "max_epochs": -1},
        {"method": "learned", "holdout_fraction": 1.5},
        {"method": "learned", "batch_size": 0},
        {"method": "learned", "init_temperature": float("inf")},
        {"method": "learned", "l2": -1.0},
        {"method": "learned", "patience": 0},
    ],
)
def test_bad_parameters_are_refused_at_fit(mmlu_embeddings, params):
    x = mmlu_embeddings["train"][:60]
    with pytest.raises(InvalidInputError, match=next(iter(params)) if next(iter(params)) != "method" else list(params)[1]):
        UniRouter(4, random_state=0, **params).fit(embeddings=x, validation_embeddings=x[:30])


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"embeddings": np.zeros((0, 384)), "validation_embeddings": np.ones((30, 384))}, "embeddings"),
        ({"embeddings": np.ones((60, 384)), "validation_embeddings": np.zeros((0, 384))}, "validation"),
        ({"embeddings": [["a"] * 384] * 60, "validation_embeddings": np.ones((30, 384))}, "numeric"),
    ],
)
def test_empty_or_non_numeric_embeddings_are_refused_at_fit(kwargs, what):
    with pytest.raises(InvalidInputError, match=what):
        UniRouter(4, random_state=0).fit(**kwargs)


def test_model_lists_must_be_names(router_copy, mmlu_embeddings):
    with pytest.raises(InvalidInputError, match="models"):
        router_copy.route(embedding=mmlu_embeddings["test"][0], models=5)
    with pytest.raises(InvalidInputError, match="exclude"):
        router_copy.route(embedding=mmlu_embeddings["test"][0], exclude=[None])


def test_costs_whose_means_overflow_are_refused(router_copy):
    n = router_copy.n_validation_
    with pytest.raises(InvalidInputError, match="overflow|too large"):
        router_copy.add_model("huge", correctness=np.ones(n), cost=np.full(n, 1e308))


# -- 10. two processes profiling into one cache pay for each call once -----------------------------
_TWO_PROCESS_SCRIPT = r"""
import hashlib, os, sys, time
import numpy as np
from unirouter import CallableEmbedder, UniRouter, ValidationSet
from unirouter.profiling.profiler import ResponseCache

cache_dir, log = sys.argv[1], sys.argv[2]
def embed(texts):
    return np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=8) for t in texts])
prompts = [f"What is {i} + {2 * i}?" for i in range(40)]
router = UniRouter(n_clusters=4, random_state=0, embedder=CallableEmbedder(embed, name="rand8", dim=8))
router.fit([f"train prompt {i}" for i in range(60)], validation=ValidationSet(prompts, references=[str(3 * i) for i in range(40)]))

def model(prompt):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (prompt + "\n").encode())
    os.close(fd)
    time.sleep(0.02)
    a, b = (int(x) for x in prompt.removeprefix("What is ").rstrip("?").split(" + "))
    return f"The answer is {a + b}."

p = router.add_model("m", model=model, scorer="numeric", cost=0.01, cache=ResponseCache(cache_dir), max_concurrency=2, progress=False)
print(p.stats.calls_made, p.stats.calls_cached)
"""


def test_two_processes_profiling_into_one_cache_make_each_call_once(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "profile_one.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / "calls.log")]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(calls) == 40 == len(set(calls)), f"{len(calls)} paid calls for 40 prompts"
    made_cached = sorted(tuple(map(int, o[0].split())) for o in outs)
    assert made_cached == [(0, 40), (40, 0)]


def test_sigkill_mid_profiling_loses_no_more_than_the_calls_in_flight(tmp_path):
    """Responses are on disk as they arrive (a call holds its slot until its answer is written)."""
    import os
    import signal
    import subprocess
    import sys

    from unirouter.profiling.profiler import ResponseCache

    script = tmp_path / "profile_big.py"
    big = _TWO_PROCESS_SCRIPT.replace('return f"The answer is {a + b}."', 'return "x" * 4_000_000 + f" The answer is {a + b}."')
    big = big.replace("time.sleep(0.02)", "time.sleep(0.002)")
    script.write_text(big)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(log)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 16):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    started = len(log.read_text().splitlines())
    stored = ResponseCache(tmp_path / "cache").count("m")
    assert started >= 16
    assert stored >= started - 2 * 2, f"{started} calls started, only {stored} responses stored"  # max_concurrency=2


def _consistent_edit(dest: Path, fn) -> None:
    """Edit router.json and re-sign the manifest: what a careless tool (or an attacker) would do."""
    from unirouter.persistence.store import _write_manifest

    meta = json.loads((dest / "router.json").read_text())
    fn(meta)
    (dest / "router.json").write_text(json.dumps(meta))
    _write_manifest(dest)


def _resave_array(dest: Path, key: str, arr: np.ndarray) -> None:
    import hashlib

    np.save(dest / f"{key}.npy", arr)
    digest = hashlib.sha256((dest / f"{key}.npy").read_bytes()).hexdigest()
    _consistent_edit(dest, lambda m: m["arrays"][key].update(sha256=digest, shape=list(arr.shape)))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(models=5),
        lambda m: m.update(models=[5]),
        lambda m: m["models"][0].update(per_prompt_costs=False, cost_per_query="cheap"),
        lambda m: m["models"][0].update(created_at=12),
        lambda m: m["models"][0].update(stats={"calls_made": "many"}),
        lambda m: m["validation"].update(n="many"),
        lambda m: m["validation"].update(n_parts=None),
        lambda m: m.update(embedder={"name": 3}),
        lambda m: m.update(params=[1, 2]),
        lambda m: m["arrays"].update(scores=None),
        lambda m: m["arrays"]["scores"].update(shape="big"),
        lambda m: m.update(arrays=[]),
    ],
)
def test_malformed_router_json_values_give_persistence_errors(fitted_router, tmp_path, edit):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    _consistent_edit(dest, edit)
    with pytest.raises(PersistenceError):
        UniRouter.load(dest, embedder=fitted_router.embedder_)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 16), dtype=np.float32),  # another embedder's dimension
        np.full((8, 384), np.nan, dtype=np.float32),
    ],
)
def test_centroids_that_cannot_route_are_refused_at_load(fitted_router, tmp_path, bad):
    dest = tmp_path / "saved"
    fitted_router.save(dest)
    _resave_array(dest, "state_centroids", bad)
    with pytest.raises(PersistenceError, match="state_centroids"):
        UniRouter.load(dest, embedder=fitted_router.embedder_)


def test_a_huge_declared_shape_is_refused_before_allocating(fitted_router, tmp_path):
    import hashlib

    dest = tmp_path / "saved"
    fitted_router.save(dest)
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }".ljust(117) + "\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64
    (dest / "costs.npy").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    _consistent_edit(dest, lambda m: m["arrays"]["costs"].update(sha256=digest, shape=[100000000000]))
    with pytest.raises(PersistenceError, match="costs.npy"):
        UniRouter.load(dest, embedder=fitted_router.embedder_)


def test_routed_calls_have_a_per_call_timeout_and_fall_back(pool, mmlu_small):
    d = pool.decide(mmlu_small["test"].texts[0])
    release = threading.Event()

    def sync_call(name):
        if name == d.ranked[0]:
            release.wait(10)  # hung provider
        return f"{name} says B"

    async def async_call(name):
        if name == d.ranked[0]:
            try:
                await asyncio.sleep(3600)
            except BaseException:  # noqa: BLE001 - swallows the cancel, then hangs again
                await asyncio.sleep(0.5)
        return f"{name} says B"

    started = time.monotonic()
    out, attempts = pool.run_with_fallbacks(d, {"call_timeout": 0.2}, sync_call)
    assert out == f"{d.ranked[1]} says B" and "TimeoutError" in attempts[0]["error"]
    out, attempts = asyncio.run(pool.arun_with_fallbacks(d, {"call_timeout": 0.2}, async_call))
    assert out == f"{d.ranked[1]} says B" and "TimeoutError" in attempts[0]["error"]
    assert time.monotonic() - started < 5
    release.set()
    with pytest.raises(InvalidInputError, match="call_timeout"):
        pool.run_with_fallbacks(d, {"call_timeout": 0}, sync_call)
