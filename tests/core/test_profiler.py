"""Profiling by calling models: exact profiles from replayed MMLU-Pro answers, fault injection,
resume after a kill, timeouts, bad responses, costs, the response cache and the Profiler itself."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time

import numpy as np
import pytest
from replay import RecordedModel

from unirouter import CallableEmbedder, ProfilingError, UniRouter, ValidationSet
from unirouter.exceptions import InvalidInputError, ProfileMismatchError
from unirouter.profiling.profiler import Profiler, ResponseCache, TokenPrice, profile_model, usage_tokens
from unirouter.profiling.scorers import LLMJudgeScorer, MultipleChoiceScorer

REPLAYED = ["gpt-4o-2024-05-13", "Llama-2-7b-hf", "Qwen1.5-72B-Chat"]
FAST = {"progress": False, "backoff_base": 0.001, "backoff_max": 0.01, "random_state": 0}


class RateLimited(Exception):
    """What an SDK's 429 looks like to the profiler."""

    is_retryable = True


class Abort(BaseException):
    """A kill that is not an ``Exception`` (like KeyboardInterrupt)."""


def _unit(p: float, *parts: object) -> float:
    h = hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
    return int(h, 16) / 16**12 < p


class Flaky:
    """An async replay model whose every attempt fails with probability ``rate`` (deterministic)."""

    def __init__(self, inner, rate: float, *, delay: float = 0.0, error=RateLimited) -> None:
        self.inner, self.rate, self.delay, self.error = inner, rate, delay, error
        self.calls = 0
        self.completed = 0
        self.attempt: dict[str, int] = {}

    async def __call__(self, prompt: str) -> str:
        self.calls += 1
        k = self.attempt[prompt] = self.attempt.get(prompt, 0) + 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if _unit(self.rate, prompt, k):
            raise self.error("429 Too Many Requests")
        self.completed += 1
        return self.inner(prompt)


def _column(ds, name):
    return ds.correctness[:, ds.model_index([name])[0]]


# -- tiny router on synthetic prompts (no embedding model) --------------------------------------
N_TINY = 40


def _rand_embed(texts):
    return np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=8) for t in texts])


@pytest.fixture()
def tiny():
    """A fitted UniRouter (K=4) on 40 synthetic arithmetic prompts with numeric references."""
    prompts = [f"What is {i} + {2 * i}?" for i in range(N_TINY)]
    vs = ValidationSet(prompts, references=[str(3 * i) for i in range(N_TINY)])
    emb = CallableEmbedder(_rand_embed, name="rand8", dim=8)
    router = UniRouter(n_clusters=4, random_state=0, embedder=emb)
    train = [f"train prompt {i}" for i in range(60)]
    return router.fit(train, validation=vs)


def _answer(prompt: str) -> str:
    a, b = (int(x) for x in prompt.removeprefix("What is ").rstrip("?").split(" + "))
    return f"{a} + {b} = {a + b}. The answer is {a + b}."


class Counting:
    def __init__(self, fn=_answer):
        self.fn = fn
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, prompt):
        with self.lock:
            self.calls.append(prompt)
        return self.fn(prompt)


# -- exact profiles from real recorded answers --------------------------------------------------
@pytest.mark.parametrize("name", REPLAYED)
def test_replayed_models_reproduce_recorded_correctness(router_copy, mmlu_small, name):
    val = mmlu_small["val"]
    model = RecordedModel.from_dataset(val, name)
    profile = router_copy.add_model(f"replay:{name}", model=model, scorer=MultipleChoiceScorer(), cost=0.002, progress=False)
    np.testing.assert_array_equal(profile.scores, _column(val, name))
    direct = router_copy.build_profile("direct", _column(val, name), cost=0.002)
    np.testing.assert_array_equal(profile.cluster_error, direct.cluster_error)
    assert profile.cost_per_query == 0.002
    assert profile.stats.calls_made == len(val) == len(model.calls)
    assert profile.stats.calls_failed == 0 and profile.stats.calls_cached == 0
    assert profile.stats.unparsed == int(sum(r is None or r == "" for r in val.responses[:, val.model_index([name])[0]]))
    assert f"replay:{name}" in router_copy.models_


def test_flaky_model_with_retryable_errors_gives_the_exact_profile(router_copy, mmlu_small):
    val, name = mmlu_small["val"], REPLAYED[0]
    model = Flaky(RecordedModel.from_dataset(val, name), 0.3)
    kw = {"scorer": "multiple_choice", "cost": 0.001, "max_retries": 8, "max_concurrency": 16, **FAST}
    profile = router_copy.add_model("flaky", model=model, **kw)
    np.testing.assert_array_equal(profile.scores, _column(val, name))
    assert profile.stats.calls_failed == 0
    assert model.calls > len(val) and profile.metadata["attempts"] == model.calls  # retries happened


async def test_cancelled_run_resumes_with_only_the_missing_calls(router_copy, mmlu_small, tmp_path):
    val, name = mmlu_small["val"], REPLAYED[1]
    n = len(val)
    first = Flaky(RecordedModel.from_dataset(val, name), 0.0, delay=0.002)
    kw = {"scorer": MultipleChoiceScorer(), "cost": 0.001, "max_concurrency": 4, **FAST}
    task = asyncio.create_task(router_copy.aadd_model("resumed", model=first, cache=ResponseCache(tmp_path / "c"), **kw))
    while first.completed < n // 2 and not task.done():
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "resumed" not in router_copy.models_
    stored = ResponseCache(tmp_path / "c").count("resumed")  # read back from disk
    assert n // 2 <= stored < n

    second = Counting(RecordedModel.from_dataset(val, name))
    profile = await router_copy.aadd_model("resumed", model=second, cache=ResponseCache(tmp_path / "c"), **kw)
    assert len(second.calls) == n - stored
    assert (profile.stats.calls_made, profile.stats.calls_cached) == (n - stored, stored)
    np.testing.assert_array_equal(profile.scores, _column(val, name))


def test_aborted_sync_run_keeps_responses_and_resumes(router_copy, mmlu_small, tmp_path):
    val, name = mmlu_small["val"], REPLAYED[2]
    inner = RecordedModel.from_dataset(val, name)
    count = {"n": 0}

    def dies_after_60(prompt):
        count["n"] += 1
        if count["n"] > 60:
            raise Abort
        return inner(prompt)

    kw = {"scorer": "multiple_choice", "cost": 0.001, "cache": tmp_path / "c", "max_concurrency": 1, **FAST}
    with pytest.raises(Abort):
        router_copy.add_model("killed", model=dies_after_60, **kw)
    assert "killed" not in router_copy.models_
    assert ResponseCache(tmp_path / "c").count("killed") == 60
    again = Counting(inner)
    profile = router_copy.add_model("killed", model=again, **kw)
    assert len(again.calls) == len(val) - 60
    np.testing.assert_array_equal(profile.scores, _column(val, name))
    zero = Counting(inner)  # re-adding with the cache costs nothing
    router_copy.add_model("killed", model=zero, replace=True, **kw)
    assert zero.calls == []


# -- failures -----------------------------------------------------------------------------------
def test_hanging_calls_time_out_and_are_reported(tiny):
    async def sometimes_hangs(prompt):
        if prompt.startswith("What is 3 +") or prompt.startswith("What is 7 +"):
            await asyncio.sleep(3600)
        return _answer(prompt)

    t0 = time.perf_counter()
    profile = tiny.add_model("hangs", model=sometimes_hangs, scorer="numeric", cost=0.01, timeout=0.05, max_retries=1, **FAST)
    assert time.perf_counter() - t0 < 5
    assert profile.stats.calls_failed == 2
    assert profile.stats.failure_causes == {"TimeoutError: no response within 0.05 s": 2}
    assert np.isnan(profile.scores[[3, 7]]).all() and np.nansum(profile.scores) == N_TINY - 2


def test_hanging_sync_model_fails_with_profiling_error(tiny):
    def hangs(prompt):
        time.sleep(0.5)
        return "late"

    with pytest.raises(ProfilingError, match="TimeoutError") as info:
        tiny.add_model("hangs", model=hangs, scorer="numeric", cost=0.01, timeout=0.02, max_retries=0, max_concurrency=40, **FAST)
    assert info.value.failures == N_TINY and "hangs" not in tiny.models_


def test_all_failing_model_raises_and_registers_nothing(tiny, tmp_path):
    def broken(prompt):
        raise ConnectionError("connection refused by api.example.com")

    with pytest.raises(ProfilingError, match="40 of 40 calls failed") as info:
        tiny.add_model("broken", model=broken, scorer="numeric", cost=0.01, cache=tmp_path, **FAST)
    assert info.value.causes == {"ConnectionError: connection refused by api.example.com": N_TINY}
    assert "broken" not in tiny.models_ and len(ResponseCache(tmp_path)) == 0


def test_too_many_failures_keep_the_successes_in_the_cache(tiny, tmp_path):
    calls = Counting(lambda p: (_ for _ in ()).throw(ValueError("bad request")) if int(p.split()[2]) % 2 else _answer(p))
    with pytest.raises(ProfilingError, match=r"20 of 40 calls failed \(50%") as info:
        tiny.add_model("half", model=calls, scorer="numeric", cost=0.01, cache=tmp_path, **FAST)
    assert len(calls.calls) == N_TINY  # non-retryable: one attempt each
    assert info.value.causes == {"ValueError: bad request": 20}
    assert ResponseCache(tmp_path).count("half") == 20
    profile = tiny.add_model("half", model=calls, scorer="numeric", cost=0.01, cache=tmp_path, max_failure_rate=0.5, **FAST)
    assert profile.stats.calls_cached == 20 and profile.stats.calls_failed == 20  # failures were retried


def test_empty_and_non_text_responses_are_failures_not_wrong_answers(tiny):
    def odd(prompt):
        i = int(prompt.split()[2])
        return "" if i == 1 else 123 if i == 2 else "   " if i == 3 else _answer(prompt)

    profile = tiny.add_model("odd", model=odd, scorer="numeric", cost=0.01, max_failure_rate=0.1, **FAST)
    assert profile.stats.failure_causes == {"empty response": 2, "non-text response of type int": 1}
    assert np.isnan(profile.scores[[1, 2, 3]]).all()
    with pytest.raises(ProfilingError, match="empty response"):
        tiny.add_model("mute", model=lambda p: "", scorer="numeric", cost=0.01, **FAST)


def test_retry_policy(tiny):
    class Custom(Exception):
        pass

    flaky = Flaky(_answer, 0.5, error=Custom)
    with pytest.raises(ProfilingError):  # not retryable by default
        tiny.add_model("a", model=flaky, scorer="numeric", cost=0.01, **FAST)
    assert flaky.calls == N_TINY
    for retry_on in (Custom, (Custom,), lambda e: isinstance(e, Custom)):
        profile = tiny.add_model("b", model=Flaky(_answer, 0.5, error=Custom), scorer="numeric", cost=0.01,
                                 max_retries=10, retry_on=retry_on, replace=True, **FAST)  # fmt: skip
        assert profile.stats.calls_failed == 0 and np.all(profile.scores == 1.0)


# -- costs ----------------------------------------------------------------------------------------
def test_token_price_uses_reported_usage_in_every_style(tiny):
    class Usage:  # OpenAI-style object
        def __init__(self, i):
            self.prompt_tokens, self.completion_tokens = 100 + i, 10 + i

    def reports(prompt):
        i = int(prompt.split()[2])
        langchain_style = {"input_tokens": 100 + i, "output_tokens": 10 + i}
        usage = [langchain_style, {"usage_metadata": langchain_style}, Usage(i)][i % 3]
        return _answer(prompt), usage

    price = TokenPrice(input_per_mtok=2.0, output_per_mtok=8.0)
    profile = tiny.add_model("priced", model=reports, scorer="numeric", cost=price, **FAST)
    want = np.array([(2.0 * (100 + i) + 8.0 * (10 + i)) / 1e6 for i in range(N_TINY)])
    np.testing.assert_allclose(profile.costs, want)
    direct = tiny.build_profile("d", np.ones(N_TINY), cost=want)
    np.testing.assert_allclose(profile.cluster_cost, direct.cluster_cost)
    assert profile.metadata["tokens_estimated_from_chars"] == 0


def test_token_price_falls_back_to_chars_over_four_and_nan_for_failures(tiny):
    def plain(prompt):
        if prompt == "What is 5 + 10?":
            raise RateLimited("slow down")
        return _answer(prompt)

    price = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
    profile = tiny.add_model("chars", model=plain, scorer="numeric", cost=price, max_retries=0, **FAST)
    vs = tiny.validation_set_
    want = np.array([(len(p) / 4 * 1.0 + len(_answer(p)) / 4 * 4.0) / 1e6 for p in vs.prompts])
    want[5] = np.nan
    np.testing.assert_allclose(profile.costs, want)
    assert profile.cost_per_query == pytest.approx(np.nanmean(want))


def test_cost_is_required_before_any_call(tiny):
    model = Counting()
    with pytest.raises(InvalidInputError, match="cost="):
        tiny.add_model("free", model=model, scorer="numeric", **FAST)
    with pytest.raises(InvalidInputError, match="cost"):
        tiny.add_model("neg", model=model, scorer="numeric", cost=-1.0, **FAST)
    assert model.calls == []


def test_usage_tokens_styles():
    assert usage_tokens(None) == (None, None)
    assert usage_tokens({"prompt_tokens": 3, "completion_tokens": 4}) == (3.0, 4.0)
    assert usage_tokens({"token_usage": {"input_tokens": 1, "output_tokens": 2}}) == (1.0, 2.0)
    assert usage_tokens({"output_tokens": 2}) == (None, 2.0)


# -- inputs -----------------------------------------------------------------------------------------
def test_other_validation_set_is_refused(tiny):
    other = ValidationSet([f"What is {i} + {2 * i}?" for i in range(N_TINY - 1)], references=["0"] * (N_TINY - 1))
    with pytest.raises(ProfileMismatchError, match="fingerprint"):
        tiny.add_model("x", model=_answer, scorer="numeric", cost=0.01, validation_set=other, **FAST)
    profile = tiny.add_model("x", model=_answer, scorer="numeric", cost=0.01, validation_set=tiny.validation_set_, **FAST)
    assert np.all(profile.scores == 1.0)


@pytest.mark.filterwarnings("ignore::unirouter.UniRouterWarning")
def test_scorer_inferred_from_references_or_required(tiny):
    profile = tiny.add_model("inferred", model=_answer, cost=0.01, **FAST)  # numeric references
    assert profile.metadata["scorer"].startswith("NumericScorer")
    router = UniRouter(n_clusters=2, random_state=0, embedder=CallableEmbedder(_rand_embed, name="rand8", dim=8))
    router.fit([f"t{i}" for i in range(10)], validation=ValidationSet(["a?", "b?", "c?"]))
    with pytest.raises(InvalidInputError, match="scorer="):
        router.add_model("m", model=lambda p: "x", cost=0.01, **FAST)
    with pytest.raises(InvalidInputError, match="needs a reference"):
        router.add_model("m", model=lambda p: "x", scorer="exact", cost=0.01, **FAST)


def test_llm_judge_scorer_without_references(tiny):
    async def judge(prompt):
        response = prompt.split("Response to grade:\n")[1].split("\n\nRubric")[0]
        return "Score: 10" if "The answer is" in response else "Score: 2"

    def model(prompt):
        return _answer(prompt) if int(prompt.split()[2]) % 4 else "I do not know."

    profile = tiny.add_model("judged", model=model, scorer=LLMJudgeScorer(judge), cost=0.01, **FAST)
    want = np.array([1.0 if i % 4 else 0.2 for i in range(N_TINY)])
    np.testing.assert_allclose(profile.scores, want)


# -- sync / async entry points ----------------------------------------------------------------------
async def test_sync_api_works_inside_a_running_loop(tiny):
    async def amodel(prompt):
        await asyncio.sleep(0)
        return _answer(prompt)

    profile = profile_model(tiny, "in-loop", amodel, scorer="numeric", cost=0.01, **FAST)
    assert np.all(profile.scores == 1.0)
    profile = await tiny.aadd_model("async", model=Counting(), scorer="numeric", cost=0.01, **FAST)  # sync model, async API
    assert profile.stats.calls_made == N_TINY and "async" in tiny.models_


def test_concurrency_limit_is_respected_for_sync_and_async_models():
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def track(delta):
        with lock:
            state["now"] += delta
            state["peak"] = max(state["peak"], state["now"])

    def sync_model(prompt):
        track(1)
        time.sleep(0.02)
        track(-1)
        return "ok"

    async def async_model(prompt):
        track(1)
        await asyncio.sleep(0.02)
        track(-1)
        return "ok"

    prompts = [f"p{i}" for i in range(60)]
    for model in (sync_model, async_model):
        state["peak"] = 0
        t0 = time.perf_counter()
        run = Profiler(max_concurrency=6, progress=False).run(model, prompts)
        wall = time.perf_counter() - t0
        assert state["peak"] == 6 and run.calls_made == 60 and run.texts == ["ok"] * 60
        assert wall < 60 * 0.02 / 2  # far below serial time


# -- Profiler and ResponseCache ---------------------------------------------------------------------
def test_profiler_plan_run_and_generation_settings(tmp_path):
    cache = ResponseCache(tmp_path)
    prompts = ["What is 1 + 2?", "What is 2 + 4?", "What is 3 + 6?"]
    model = Counting()
    p = Profiler(cache=cache, progress=False, generation_settings={"temperature": 0})
    assert p.plan(prompts, model_id="m").to_call == [0, 1, 2]
    run = p.run(model, prompts, model_id="m")
    assert (run.calls_made, run.calls_cached, run.attempts) == (3, 0, 3) and run.texts[0] == _answer(prompts[0])
    assert p.plan(prompts, model_id="m").to_call == []
    assert p.run(model, prompts, model_id="m").calls_cached == 3 and len(model.calls) == 3
    p.set_params(generation_settings={"temperature": 0.7})  # other settings, other responses
    assert p.plan(prompts, model_id="m").to_call == [0, 1, 2]
    assert "max_concurrency" in p.get_params() and "temperature" in repr(p)
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        Profiler(max_concurrency=0).run(model, prompts)
    with pytest.raises(InvalidInputError, match="timeout"):
        Profiler(timeout=-1).run(model, prompts)


def test_response_cache_survives_a_torn_line_and_clears_per_model(tmp_path):
    cache = ResponseCache(tmp_path, fsync_every=1)
    cache.put("m1", "p1", "r1", usage={"input_tokens": 5, "output_tokens": 7})
    cache.put("m1", "p2", "r2")
    cache.put("m2", "p1", "other")
    cache.close()
    file = cache.file_for("m1")
    with open(file, "ab") as fh:  # a crash in the middle of a write
        fh.write(b'{"model": "m1", "prompt_sha256": "ab')
    fresh = ResponseCache(tmp_path)
    assert fresh.count("m1") == 2 and len(fresh) == 3 and fresh.model_ids() == ["m1", "m2"]
    hit = fresh.get("m1", "p1")
    assert (hit.text, hit.input_tokens, hit.output_tokens) == ("r1", 5.0, 7.0)
    assert fresh.get("m1", "p3") is None and fresh.get("m1", "p1", settings={"t": 1}) is None
    fresh.put("m1", "p3", "r3")  # appended on a fresh line after the torn one
    fresh.close()
    lines = file.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["text"] == "r3"
    assert ResponseCache(tmp_path).count("m1") == 3
    fresh.clear("m1")
    assert ResponseCache(tmp_path).count("m1") == 0 and ResponseCache(tmp_path).count("m2") == 1
    fresh.clear()
    assert len(ResponseCache(tmp_path)) == 0
    with pytest.raises(InvalidInputError, match="text"):
        fresh.put("m", "p", 3)  # type: ignore[arg-type]


def test_framework_style_responses_are_unwrapped(tiny):
    class Message:  # what a LangChain chat model returns: .content and .usage_metadata
        def __init__(self, content, usage=None):
            self.content, self.usage_metadata = content, usage

    def chat(prompt):
        i = int(prompt.split()[2])
        return Message(_answer(prompt), {"input_tokens": 10, "output_tokens": 5}) if i else Message([{"type": "image"}])

    price = TokenPrice(input_per_mtok=1.0, output_per_mtok=1.0)
    profile = tiny.add_model("chat", model=chat, scorer="numeric", cost=price, **FAST)
    assert profile.stats.failure_causes == {"non-text response of type Message": 1}
    np.testing.assert_allclose(profile.costs[1:], 15 / 1e6)


def test_duplicate_or_empty_validation_prompts_are_refused():
    with pytest.raises(InvalidInputError, match="unique"):
        ValidationSet(["What is 1 + 2?", "What is 1 + 2?"])
    with pytest.raises(InvalidInputError, match="empty"):
        ValidationSet(["What is 1 + 2?", "   "])


def test_progress_bar_and_model_type_errors(capsys):
    run = Profiler(progress=True).run(Counting(), ["What is 1 + 2?", "What is 2 + 4?"], desc="bar test")
    assert run.calls_made == 2 and "bar test" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="callable"):
        Profiler(progress=False).run("not a model", ["p"])  # type: ignore[arg-type]


async def test_cancel_stops_promptly_even_with_slow_sync_and_async_models(tiny, tmp_path):
    async def slow_async(prompt):
        await asyncio.sleep(30)
        return _answer(prompt)

    def slow_sync(prompt):
        time.sleep(2)
        return _answer(prompt)

    for model in (slow_async, slow_sync):
        task = asyncio.create_task(tiny.aadd_model("slow", model=model, scorer="numeric", cost=0.01, cache=tmp_path, **FAST))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - t0 < 1.0 and "slow" not in tiny.models_
