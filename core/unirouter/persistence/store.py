"""Saving and loading routers: a directory of JSON metadata and ``.npy`` arrays, never pickle.

Layout of a saved router::

    router.json        schema version, class, parameters, embedder identity, validation fingerprint,
                       model table (name, cost, dates, stats), and the SHA-256 and shape of every array
    <state>.npy        the router's learned arrays (centroids, learned map, ...)
    scores.npy         (M, n_val) per-prompt validation quality of every model (NaN = unknown)
    costs.npy          (M, n_val) per-prompt validation costs (NaN where only a flat cost is known)
    validation.jsonl   the validation prompts (and references), when the router has them

Loading checks the schema version, each file's hash and shape, and reads arrays with
``allow_pickle=False``; any problem raises :class:`PersistenceError` naming the file. Saving writes
to a sibling temporary directory and renames it into place, so an existing router is replaced whole
or not at all; overwriting needs ``overwrite=True`` and only ever replaces a unirouter directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from unirouter.data.datasets import ValidationSet
from unirouter.embedding.embedders import EmbedderIdentity, as_embedder
from unirouter.exceptions import PersistenceError, ProfileMismatchError, UniRouterError
from unirouter.persistence.registry import router_class
from unirouter.profiles import ModelProfile, ProfilingStats

__all__ = ["SCHEMA", "load_router", "read_router_info", "save_router"]

SCHEMA = "unirouter-router/1"
_META = "router.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if k == "embedder":
            out[k] = v if isinstance(v, str) or v is None else None  # objects are given again at load
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (np.integer, np.floating)):
            out[k] = v.item()
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)
        else:
            msg = f"parameter {k}={v!r} cannot be saved as JSON; use a plain value."
            raise PersistenceError(msg)
    return out


def save_router(router: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save a fitted router to the directory ``path`` (atomic; see the module docstring)."""
    router._check_fitted()
    dest = Path(path)
    if dest.exists():
        if not overwrite:
            msg = f"{dest} already exists; pass overwrite=True to replace the router saved there."
            raise PersistenceError(msg, path=dest)
        if not (dest.is_dir() and (dest / _META).is_file()):
            msg = f"{dest} exists and is not a saved unirouter router; refusing to overwrite it."
            raise PersistenceError(msg, path=dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _write(router, tmp)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _write(router: Any, out: Path) -> None:
    pool = router._pool
    names = list(pool.names)
    arrays: dict[str, np.ndarray] = {f"state_{k}": np.asarray(v) for k, v in router._state_arrays().items()}
    n_val = router.n_validation_
    scores = np.full((len(names), n_val), np.nan)
    costs = np.full((len(names), n_val), np.nan)
    models = []
    for i, n in enumerate(names):
        p = pool.profiles[n]
        scores[i] = p.scores
        if p.costs is not None:
            costs[i] = p.costs
        models.append(
            {
                "name": n,
                "cost_per_query": p.cost_per_query,
                "per_prompt_costs": p.costs is not None,
                "created_at": p.created_at.isoformat(),
                "stats": p.stats.model_dump(),
                "metadata": p.metadata,
            }
        )
    arrays["validation_labels"] = np.asarray(router.validation_labels_, dtype=np.int64)
    arrays["scores"] = scores
    arrays["costs"] = costs
    files = {}
    for key, arr in arrays.items():
        if arr.dtype == object:
            msg = f"array {key!r} has dtype object and cannot be saved without pickle."
            raise PersistenceError(msg)
        fname = f"{key}.npy"
        with open(out / fname, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        files[key] = {"file": fname, "sha256": _sha256(out / fname), "shape": list(arr.shape), "dtype": str(arr.dtype)}
    vs: ValidationSet | None = router.validation_set_
    if vs is not None:
        vs.to_jsonl(out / "validation.jsonl")
        files["validation"] = {"file": "validation.jsonl", "sha256": _sha256(out / "validation.jsonl")}
    from unirouter._version import __version__

    meta = {
        "schema": SCHEMA,
        "unirouter_version": __version__,
        "class": type(router).__name__,
        "params": _jsonable_params(router.get_params()),
        "embedder": router.embedder_identity_.model_dump(),
        "validation": {
            "fingerprint": router.validation_fingerprint_,
            "n": n_val,
            "n_parts": router.n_parts_,
            "has_prompts": vs is not None,
        },
        "models": models,
        "arrays": files,
        "saved_at": datetime.now().astimezone().isoformat(),
    }
    with open(out / _META, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def read_router_info(path: str | Path) -> dict[str, Any]:
    """The metadata of a saved router (``router.json``), validated for schema only."""
    root = Path(path)
    meta_path = root / _META
    if not root.is_dir():
        msg = f"{root} is not a directory holding a saved router."
        raise PersistenceError(msg, path=root)
    if not meta_path.is_file():
        msg = f"{meta_path} is missing; {root} does not hold a saved router (or it was damaged)."
        raise PersistenceError(msg, path=meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = f"{meta_path} is not valid JSON (truncated or edited?): {e}."
        raise PersistenceError(msg, path=meta_path) from e
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        got = meta.get("schema") if isinstance(meta, dict) else None
        msg = f"{meta_path}: schema must be {SCHEMA!r}. Got {got!r}; this router was saved by an incompatible version."
        raise PersistenceError(msg, path=meta_path)
    for key in ("class", "params", "embedder", "validation", "models", "arrays"):
        if key not in meta:
            msg = f"{meta_path} lacks the key {key!r}."
            raise PersistenceError(msg, path=meta_path)
    return meta


def _load_array(root: Path, key: str, spec: dict[str, Any]) -> np.ndarray:
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
        msg = f"{root / _META}: the entry for array {key!r} lacks its file name."
        raise PersistenceError(msg, path=root / _META)
    fpath = root / spec["file"]
    if not fpath.is_file():
        msg = f"{fpath} is missing."
        raise PersistenceError(msg, path=fpath)
    if _sha256(fpath) != spec.get("sha256"):
        msg = f"{fpath} does not match the checksum in router.json (truncated, corrupted or modified)."
        raise PersistenceError(msg, path=fpath)
    try:
        arr = np.load(fpath, allow_pickle=False)
    except ValueError as e:
        msg = f"{fpath} could not be read as a plain numpy array: {e}."
        raise PersistenceError(msg, path=fpath) from e
    if list(arr.shape) != list(spec.get("shape", arr.shape)):
        msg = f"{fpath} has shape {list(arr.shape)} but router.json says {spec['shape']}."
        raise PersistenceError(msg, path=fpath)
    return arr


def load_router(path: str | Path, *, embedder: Any = None) -> Any:
    """Load a router saved by :func:`save_router`.

    Parameters
    ----------
    embedder : Embedder, str, callable or None
        The embedder to route with; it must have the saved identity (name and dimension), else
        :class:`ProfileMismatchError`. ``None`` rebuilds the saved default.
    """
    root = Path(path)
    meta = read_router_info(root)
    cls = router_class(meta["class"], path=root / _META)
    arrays = {key: _load_array(root, key, spec) for key, spec in meta["arrays"].items() if key != "validation"}
    vs = None
    if "validation" in meta["arrays"]:
        spec = meta["arrays"]["validation"]
        fpath = root / spec["file"]
        if not fpath.is_file() or _sha256(fpath) != spec.get("sha256"):
            msg = f"{fpath} is missing or does not match its checksum."
            raise PersistenceError(msg, path=fpath)
        vs = ValidationSet.from_jsonl(fpath)
        if vs.fingerprint != meta["validation"]["fingerprint"]:
            msg = f"{fpath}: the validation prompts do not match the saved fingerprint."
            raise PersistenceError(msg, path=fpath)

    ident = EmbedderIdentity(**meta["embedder"])
    try:
        router = cls(**meta["params"])
    except (TypeError, UniRouterError) as e:
        msg = f"{root / _META}: parameters do not fit {cls.__name__}: {e}."
        raise PersistenceError(msg, path=root / _META) from e
    emb = as_embedder(embedder if embedder is not None else meta["params"].get("embedder"))
    if emb.name != ident.name:
        msg = (
            f"{root} was fitted with embedder {ident.name!r} (dim {ident.dim}) but {emb.name!r} was given; "
            "load it with the same embedder."
        )
        raise ProfileMismatchError(msg)
    router.embedder = embedder if embedder is not None else router.embedder
    router._embedder = emb

    state = {k[len("state_") :]: v for k, v in arrays.items() if k.startswith("state_")}
    n_val = int(meta["validation"]["n"])
    scores, costs = arrays.get("scores"), arrays.get("costs")
    if scores is None or costs is None or scores.shape != (len(meta["models"]), n_val) or costs.shape != scores.shape:
        msg = f"{root}: scores.npy/costs.npy must have shape ({len(meta['models'])}, {n_val})."
        raise PersistenceError(msg, path=root)
    labels = arrays.get("validation_labels")
    n_parts = int(meta["validation"]["n_parts"])
    if labels is None or labels.shape != (n_val,):
        msg = f"{root}: validation_labels.npy must have shape ({n_val},)."
        raise PersistenceError(msg, path=root / "validation_labels.npy")
    if labels.size and (labels.min() < 0 or labels.max() >= n_parts):
        msg = f"{root}: validation_labels.npy holds parts outside [0, {n_parts})."
        raise PersistenceError(msg, path=root / "validation_labels.npy")
    try:
        router._load_state_arrays(state)
    except (KeyError, ValueError) as e:
        msg = f"{root}: the saved state arrays do not fit {cls.__name__}: {e}."
        raise PersistenceError(msg, path=root) from e
    router.validation_set_ = vs
    router.validation_fingerprint_ = meta["validation"]["fingerprint"]
    router.n_validation_ = n_val
    router.n_parts_ = n_parts
    router.validation_labels_ = labels.astype(np.int64)
    router.embedder_identity_ = ident
    router._init_state()
    for i, m in enumerate(meta["models"]):
        try:
            cost = costs[i] if m.get("per_prompt_costs") else float(m["cost_per_query"])
            profile: ModelProfile = router.build_profile(
                m["name"], scores[i], cost=cost, stats=ProfilingStats(**m.get("stats", {})), metadata=m.get("metadata", {})
            )
            profile = profile.model_copy(update={"created_at": datetime.fromisoformat(m["created_at"])})
        except (KeyError, TypeError, ValueError) as e:
            msg = f"{root / _META}: model entry {i} cannot be restored ({type(e).__name__}: {e})."
            raise PersistenceError(msg, path=root / _META) from e
        router._register(profile, replace=False)
    return router
