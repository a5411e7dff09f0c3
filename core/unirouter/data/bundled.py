"""The validation set bundled with the package (``unirouter/data/bundle``), read offline.

About 500 labelled prompts (MMLU-Pro's 14 categories, GSM8K, MATH level 5, CRUXEval-O) with their
references, answer formats and typical answer lengths, plus the pre-trained routers' files; a
manifest holds the version and the SHA-256 of every file, checked on every read. Written by
:mod:`unirouter.pretrained.build`; the routers are loaded by :mod:`unirouter.pretrained`. This module
is pure data access (layer 1): the profiler uses it to grade the bundled set per prompt.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from unirouter._files import sha256_file
from unirouter.data.datasets import ValidationSet
from unirouter.exceptions import PersistenceError

__all__ = [
    "DATA_DIR",
    "answer_formats",
    "formats_for",
    "manifest",
    "typical_output_tokens",
    "validation_embeddings",
    "validation_set",
]

DATA_DIR = Path(__file__).resolve().parent / "bundle"
FORMAT = "unirouter-pretrained/1"


def _verified(root: Path) -> dict[str, Any]:
    """The manifest of ``root`` after checking its format and every file's SHA-256."""
    path = root / "manifest.json"
    if not path.is_file():
        msg = (
            f"{path} is missing: the pre-trained routers are not installed with this copy of unirouter. "
            "Reinstall the package, or build them with `python -m unirouter.pretrained.build --data ../shared/data`."
        )
        raise PersistenceError(msg, path=path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = f"{path} is not valid JSON (truncated or edited?): {e}."
        raise PersistenceError(msg, path=path) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        got = meta.get("format") if isinstance(meta, dict) else None
        msg = f"{path}: format must be {FORMAT!r}. Got {got!r}; reinstall unirouter."
        raise PersistenceError(msg, path=path)
    for rel, digest in meta["files"].items():
        f = root / rel
        if not f.is_file():
            msg = f"bundled file {f} is missing; reinstall unirouter."
            raise PersistenceError(msg, path=f)
        if sha256_file(f) != digest:
            msg = f"bundled file {f} does not match its checksum in manifest.json (corrupted or modified); reinstall unirouter."
            raise PersistenceError(msg, path=f)
    return meta


@functools.lru_cache(maxsize=4)
def _records(root: Path) -> tuple[dict[str, Any], ...]:
    rows = []
    with open(root / "validation.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return tuple(rows)


def manifest(*, data_dir: str | Path | None = None) -> dict[str, Any]:
    """The bundled manifest (version, sizes, chosen settings, checksums), after verifying every file."""
    return _verified(Path(data_dir) if data_dir is not None else DATA_DIR)


def validation_set(*, data_dir: str | Path | None = None) -> ValidationSet:
    """The bundled validation set: prompts, references, ids and groups (``"mmlu_pro/law"``, ...)."""
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    meta = _verified(root)
    rows = _records(root)
    vs = ValidationSet(
        [r["prompt"] for r in rows],
        references=[r["reference"] for r in rows],
        ids=[r["id"] for r in rows],
        groups=[r["group"] for r in rows],
    )
    if vs.fingerprint != meta["validation"]["fingerprint"]:
        msg = f"{root / 'validation.jsonl'} does not match the fingerprint in manifest.json; reinstall unirouter."
        raise PersistenceError(msg, path=root / "validation.jsonl")
    return vs


def answer_formats(*, data_dir: str | Path | None = None) -> list[str]:
    """The answer format of each bundled prompt: ``"letter"``, ``"number"`` or ``"python_literal"``."""
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    _verified(root)
    return [r["format"] for r in _records(root)]


def typical_output_tokens(*, data_dir: str | Path | None = None) -> np.ndarray:
    """A typical answer length (tokens) per bundled prompt: the known models' median, for cost estimates."""
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    _verified(root)
    return np.array([float(r["typical_output_tokens"]) for r in _records(root)])


def validation_embeddings(*, data_dir: str | Path | None = None) -> np.ndarray:
    """The MiniLM embeddings of the bundled prompts (stored as float16, returned as float32)."""
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    _verified(root)
    return np.load(root / "validation_embeddings.npy", allow_pickle=False).astype(np.float32)


def formats_for(vs: ValidationSet) -> list[str] | None:
    """The bundled answer formats if ``vs`` is the bundled validation set, else ``None``.

    The profiler uses it to pick the per-prompt scorer and typical answer lengths when none are given.
    """
    meta_path = DATA_DIR / "manifest.json"
    if not meta_path.is_file():
        return None
    try:
        fingerprint = json.loads(meta_path.read_text(encoding="utf-8"))["validation"]["fingerprint"]
    except (KeyError, TypeError, ValueError):
        return None
    return answer_formats() if vs.fingerprint == fingerprint else None
