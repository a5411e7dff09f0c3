"""Prices, token usage and the on-disk response cache used by the profiler.

Split out of :mod:`unirouter.profiling.profiler` (one module, one job); import these names from
``unirouter.profiling.profiler``, which re-exports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from unirouter.exceptions import InvalidInputError

__all__ = ["CachedResponse", "ResponseCache", "TokenPrice", "settings_key", "usage_tokens"]

# -- prices and usage --------------------------------------------------------------------------
class TokenPrice(BaseModel):
    """A price per million input and output tokens (USD, or any currency used consistently).

    >>> TokenPrice(input_per_mtok=0.15, output_per_mtok=0.6).cost(1000, 500)
    0.00045
    """

    model_config = ConfigDict(frozen=True)

    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    """Price of one million prompt tokens."""
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    """Price of one million generated tokens."""

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


_IN_KEYS = ("input_tokens", "prompt_tokens")
_OUT_KEYS = ("output_tokens", "completion_tokens")


def usage_tokens(usage: Any) -> tuple[float | None, float | None]:
    """``(input_tokens, output_tokens)`` from a usage mapping or object (``None`` where unknown).

    Understands ``input_tokens``/``output_tokens`` (LangChain ``usage_metadata``),
    ``prompt_tokens``/``completion_tokens`` (OpenAI), and the same nested under ``usage_metadata``,
    ``token_usage`` or ``usage``.
    """
    if usage is None:
        return None, None
    get = usage.get if isinstance(usage, Mapping) else (lambda k, d=None: getattr(usage, k, d))
    for nested in ("usage_metadata", "token_usage", "usage"):
        inner = get(nested)
        if inner is not None and inner is not usage:
            return usage_tokens(inner)

    def first(keys: tuple[str, ...]) -> float | None:
        for k in keys:
            v = get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
                return float(v)
        return None

    return first(_IN_KEYS), first(_OUT_KEYS)


# -- the cache ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CachedResponse:
    """One stored response and the token usage the model reported with it."""

    text: str
    input_tokens: float | None = None
    output_tokens: float | None = None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def settings_key(settings: Any) -> str:
    """A short stable hash of generation settings (``None`` and ``{}`` are the same)."""
    return _sha(json.dumps(settings or {}, sort_keys=True, default=repr))[:16]


class ResponseCache:
    """Successful model responses on disk, keyed by (model identity, prompt hash, settings hash).

    Each model identity has its own append-only JSONL file in ``path``; a record is written and
    flushed as soon as its response arrives (``fsync`` every ``fsync_every`` records and on
    :meth:`flush`/:meth:`close`), so a killed process loses nothing it was told about. A torn last
    line left by a crash is skipped on reading. Failed calls are never stored, so a resumed run
    retries them. Prompts are stored as hashes only.

    Parameters
    ----------
    path : str or Path
        Directory for the files (created if missing).
    fsync_every : int, default=16
        Records between ``fsync`` calls (1 = every record).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync_every: int = 16) -> None:
        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            msg = f"ResponseCache path {self.path} is a file; give a directory."
            raise InvalidInputError(msg)
        self.path.mkdir(parents=True, exist_ok=True)
        self.fsync_every = max(1, int(fsync_every))
        self._index: dict[str, dict[tuple[str, str], CachedResponse]] = {}
        self._torn: dict[str, bool] = {}
        self._handles: dict[str, Any] = {}
        self._unsynced: dict[str, int] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def file_for(self, model_id: str) -> Path:
        """The JSONL file holding ``model_id``'s responses."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._")[:60] or "model"
        return self.path / f"{slug}-{_sha(model_id)[:10]}.jsonl"

    def _entries(self, model_id: str) -> dict[tuple[str, str], CachedResponse]:
        if model_id in self._index:
            return self._index[model_id]
        entries: dict[tuple[str, str], CachedResponse] = {}
        file = self.file_for(model_id)
        raw = file.read_bytes() if file.is_file() else b""
        for line in raw.split(b"\n"):
            try:
                rec = json.loads(line)
                key, value = (rec["prompt_sha256"], rec["settings"]), CachedResponse(
                    rec["text"], rec.get("input_tokens"), rec.get("output_tokens")
                )
            except (ValueError, KeyError, TypeError):
                continue  # blank, torn or foreign line
            if rec.get("model") == model_id and isinstance(value.text, str):
                entries[key] = value
        self._torn[model_id] = bool(raw) and not raw.endswith(b"\n")
        self._index[model_id] = entries
        return entries

    def get(self, model_id: str, prompt: str, *, settings: Any = None) -> CachedResponse | None:
        """The stored response of ``model_id`` to ``prompt`` under ``settings``, or ``None``."""
        with self._lock:
            return self._entries(model_id).get((_sha(prompt), settings_key(settings)))

    def put(
        self,
        model_id: str,
        prompt: str,
        text: str,
        *,
        usage: Any = None,
        settings: Any = None,
    ) -> None:
        """Store a response (appended and flushed to disk before returning)."""
        if not isinstance(text, str):
            msg = f"only text responses are cached. Got {type(text).__name__}."
            raise InvalidInputError(msg)
        tin, tout = usage_tokens(usage)
        key = (_sha(prompt), settings_key(settings))
        record = {"model": model_id, "prompt_sha256": key[0], "settings": key[1], "text": text,
                  "input_tokens": tin, "output_tokens": tout, "time": round(time.time(), 3)}  # fmt: skip
        try:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (truncated emoji): \u-escaped, read back exactly
            line = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            entries = self._entries(model_id)
            handle = self._handles.get(model_id)
            if handle is None:
                handle = self._handles[model_id] = open(self.file_for(model_id), "ab")  # noqa: SIM115
            if self._torn.pop(model_id, False):
                line = b"\n" + line  # never glue a record onto a torn line
            handle.write(line)
            handle.flush()
            self._unsynced[model_id] = self._unsynced.get(model_id, 0) + 1
            if self._unsynced[model_id] >= self.fsync_every:
                os.fsync(handle.fileno())
                self._unsynced[model_id] = 0
            entries[key] = CachedResponse(text, tin, tout)

    def count(self, model_id: str) -> int:
        """Number of stored responses for ``model_id``."""
        with self._lock:
            return len(self._entries(model_id))

    def model_ids(self) -> list[str]:
        """Model identities with a file in this cache."""
        ids = set(self._index)
        for file in self.path.glob("*.jsonl"):
            with open(file, "rb") as fh:
                for line in fh:
                    try:
                        ids.add(json.loads(line)["model"])
                        break
                    except (ValueError, KeyError, TypeError):
                        continue
        return sorted(i for i in ids if self.count(i))

    def __len__(self) -> int:
        return sum(self.count(m) for m in self.model_ids())

    def flush(self) -> None:
        """``fsync`` every open file."""
        with self._lock:
            for model_id, handle in self._handles.items():
                if self._unsynced.get(model_id):
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._unsynced[model_id] = 0

    def close(self) -> None:
        """Flush and close the files (the cache stays usable; files reopen on the next put)."""
        with self._lock:
            self.flush()
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()

    def clear(self, model_id: str | None = None) -> None:
        """Delete the responses of ``model_id`` (all models when ``None``)."""
        with self._lock:
            ids = [model_id] if model_id is not None else self.model_ids()
            for mid in ids:
                handle = self._handles.pop(mid, None)
                if handle is not None:
                    handle.close()
                self.file_for(mid).unlink(missing_ok=True)
                self._index.pop(mid, None)
                self._torn.pop(mid, None)
                self._unsynced.pop(mid, None)

    @contextlib.asynccontextmanager
    async def model_lock(self, model_id: str, *, poll: float = 0.05) -> AsyncIterator[None]:
        """Hold ``model_id``'s cache for one profiling run, across processes (an advisory ``flock``).

        A second process (or a second run in this one) profiling the same model into the same cache
        waits here, without blocking its event loop, then re-reads the file and calls only what is
        still missing: no paid call is made twice. No-op where ``fcntl`` is missing (Windows).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        lock_path = self.file_for(model_id).with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(poll)
            with self._lock:  # what other holders wrote meanwhile is read again
                handle = self._handles.pop(model_id, None)
                if handle is not None:
                    handle.close()
                self._index.pop(model_id, None)
                self._unsynced.pop(model_id, None)
            yield
        finally:
            with self._lock:
                handle = self._handles.get(model_id)
                if handle is not None:
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._unsynced[model_id] = 0
            os.close(fd)  # releases the lock

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _as_cache(cache: Any) -> ResponseCache | None:
    if cache is None or isinstance(cache, ResponseCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return ResponseCache(cache)
    msg = f"cache must be a ResponseCache, a directory path or None. Got {type(cache).__name__}."
    raise InvalidInputError(msg)
