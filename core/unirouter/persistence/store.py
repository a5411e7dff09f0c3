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
or not at all; overwriting needs ``overwrite=True`` and only ever replaces a directory unirouter
wrote: ``unirouter.manifest.json`` lists every file of a saved directory with its SHA-256, and an
overwrite is refused (:class:`PersistenceError`, nothing touched) if the directory holds anything
else or a listed file was changed. The replaced directory is emptied file by file, never ``rmtree``.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from unirouter._files import sha256_file
from unirouter.data.datasets import ValidationSet
from unirouter.embedding.embedders import EmbedderIdentity, as_embedder
from unirouter.exceptions import PersistenceError, ProfileMismatchError, UniRouterError, UniRouterWarning
from unirouter.persistence.registry import router_class
from unirouter.profiles import ModelProfile, ProfilingStats

__all__ = ["MANIFEST", "SCHEMA", "load_router", "read_router_info", "save_router"]

SCHEMA = "unirouter-router/1"
_META = "router.json"


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


def save_router(
    router: Any, path: str | Path, *, overwrite: bool = False, extra_files: Mapping[str, bytes] | None = None
) -> Path:
    """Save a fitted router to the directory ``path`` (atomic; see the module docstring).

    ``extra_files`` (name -> bytes) are written into the same directory before it is put in place and
    listed in its manifest, so a caller's own table (e.g. the plugins' ``candidates.json``) is saved
    in the same atomic step as the router and may be replaced by a later overwrite.

    Overwriting only ever replaces a directory this library wrote: its manifest must list every
    entry in it, each unchanged since it was saved. Anything else (a folder that merely holds a file
    named ``router.json``, a file the user added or edited, a symlink) is refused with
    :class:`PersistenceError` and left untouched.
    """
    router._check_fitted()
    dest = Path(path)
    extra = dict(extra_files or {})
    for name in extra:
        if name in _RESERVED or Path(name).name != name or name.startswith("."):
            msg = f"extra file name {name!r} is not allowed (a plain file name that the router does not use)."
            raise PersistenceError(msg, path=dest / name)
    if dest.is_symlink():
        msg = (
            f"{dest} is a symlink; refusing to replace it with a directory. "
            f"Save to the directory it points to ({os.path.realpath(dest)}) or remove the link."
        )
        raise PersistenceError(msg, path=dest)
    if dest.exists():
        if not overwrite:
            msg = f"{dest} already exists; pass overwrite=True to replace the router saved there."
            raise PersistenceError(msg, path=dest)
        _owned_files(dest)  # refuse early, before writing anything
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    except OSError as e:
        msg = f"cannot create a temporary directory next to {dest}: {e}."
        raise PersistenceError(msg, path=dest) from e
    placed, ours = False, None
    try:
        _write(router, tmp)
        for name, data in extra.items():
            _write_bytes(tmp / name, data)
        _write_manifest(tmp)
        ours = sha256_file(tmp / MANIFEST)
        _fsync_dir(tmp)
        _put_in_place(tmp, dest, overwrite=overwrite)
        placed = True
    except OSError as e:
        msg = f"saving the router to {dest} failed ({type(e).__name__}: {e}); nothing was changed at {dest}."
        raise PersistenceError(msg, path=dest) from e
    finally:
        # Only ever our own temporary directory: after a failed swap-back it could hold the old one.
        if not placed and tmp.is_dir() and (ours is None or _holds_manifest(tmp, ours)):
            shutil.rmtree(tmp, ignore_errors=True)
    _fsync_dir(dest.parent)
    return dest


# -- what the library wrote: the manifest ------------------------------------------------------
MANIFEST = "unirouter.manifest.json"
_MANIFEST_SCHEMA = "unirouter-manifest/1"
_RESERVED = {MANIFEST, _META}


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _holds_manifest(root: Path, digest: str) -> bool:
    try:
        return sha256_file(root / MANIFEST) == digest
    except OSError:
        return False


def _write_manifest(out: Path) -> None:
    """List every file written into ``out`` with its SHA-256: the proof that the library owns them."""
    files = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.name != MANIFEST}
    data = json.dumps({"schema": _MANIFEST_SCHEMA, "files": files}, indent=2).encode("utf-8")
    _write_bytes(out / MANIFEST, data)


def _owned_files(root: Path) -> list[str]:
    """The entries of ``root`` if this library wrote all of them, unchanged; else PersistenceError.

    A directory saved before manifests existed is accepted when it holds exactly ``router.json`` (of
    this schema), the files it lists with matching checksums, and optionally ``candidates.json``.
    """
    if root.is_symlink() or not root.is_dir():
        msg = f"{root} exists and is not a directory saved by unirouter; refusing to overwrite it."
        raise PersistenceError(msg, path=root)
    try:
        entries = {p.name: p for p in root.iterdir()}
    except OSError as e:
        msg = f"cannot list {root} to check that unirouter wrote it: {e}."
        raise PersistenceError(msg, path=root) from e
    expected = _manifest_files(root) if MANIFEST in entries else _legacy_files(root)
    if expected is None:
        msg = (
            f"{root} exists and is not a saved unirouter router (not written by unirouter: no valid "
            f"{MANIFEST}); refusing to overwrite it. Save elsewhere or remove it yourself."
        )
        raise PersistenceError(msg, path=root)
    unknown = sorted(set(entries) - set(expected) - {MANIFEST})
    if unknown:
        msg = (
            f"{root} holds entries unirouter did not write: {unknown}; refusing to overwrite it (they would be lost). "
            "Move them out of the router directory, or save elsewhere."
        )
        raise PersistenceError(msg, path=root / unknown[0])
    for name, digest in expected.items():
        p = entries.get(name)
        if p is None:
            continue  # a file the library wrote is already gone: nothing of the user's is at stake
        if p.is_symlink() or not p.is_file() or (digest is not None and sha256_file(p) != digest):
            msg = (
                f"{p} was changed since unirouter saved it; refusing to overwrite {root} "
                "(the change would be lost). Move the file out or save elsewhere."
            )
            raise PersistenceError(msg, path=p)
    return [*expected, MANIFEST] if MANIFEST in entries else list(expected)


def _manifest_files(root: Path) -> dict[str, str | None] | None:
    try:
        man = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = man.get("files") if isinstance(man, dict) and man.get("schema") == _MANIFEST_SCHEMA else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and Path(k).name == k and not k.startswith(".") and isinstance(v, str) for k, v in files.items()
    ):
        return None
    return dict(files)


def _legacy_files(root: Path) -> dict[str, str | None] | None:
    try:
        meta = json.loads((root / _META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA or not isinstance(meta.get("arrays"), dict):
        return None
    out: dict[str, str | None] = {_META: None}
    for spec in meta["arrays"].values():
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or Path(spec["file"]).name != spec["file"]:
            return None
        out[spec["file"]] = spec.get("sha256") if isinstance(spec.get("sha256"), str) else None
    if (root / "candidates.json").is_file():
        out["candidates.json"] = None
    return out


def _remove_owned(root: Path, names: list[str]) -> None:
    """Delete the files the library wrote in ``root``, then ``root`` if it is empty (never rmtree)."""
    for name in names:
        try:
            (root / name).unlink()
        except OSError:
            pass
    try:
        root.rmdir()
    except OSError:
        try:
            left = sorted(p.name for p in root.iterdir())
        except OSError:
            left = []
        warnings.warn(
            f"the replaced router was kept at {root} because it holds entries unirouter did not write: {left}.",
            UniRouterWarning,
            stacklevel=3,
        )


def _remove_stale_temporaries(dest: Path) -> None:
    """Temporary directories of saves to ``dest`` whose process died (killed mid-save)."""
    prefix = f".{dest.name}.tmp-"
    for p in dest.parent.glob(f"{glob.escape(prefix)}*"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)) or p.is_symlink() or not p.is_dir():
            continue
        shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- putting a finished directory in place ---------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux ``renameat2``: True if done, False if the platform or file system lacks it."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - old glibc
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # file system without the flag
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _put_in_place(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``dest``; an existing library-owned ``dest`` is swapped out whole.

    On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``: at every instant ``dest`` holds either
    the old router or the new one. The old one is checked again *after* the swap (a file added in
    the meantime is never deleted: the swap is undone and :class:`PersistenceError` raised).
    """
    if not dest.exists() and not dest.is_symlink():
        try:
            if not _renameat2(tmp, dest, _RENAME_NOREPLACE):
                os.rename(tmp, dest)  # refuses a non-empty directory created meanwhile
        except FileExistsError as e:
            msg = f"{dest} was created by someone else while this router was being saved; nothing was changed."
            raise PersistenceError(msg, path=dest) from e
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                msg = f"{dest} was created by someone else while this router was being saved; nothing was changed."
                raise PersistenceError(msg, path=dest) from e
            raise
        return
    if not overwrite:  # created meanwhile
        msg = f"{dest} already exists; pass overwrite=True to replace the router saved there."
        raise PersistenceError(msg, path=dest)
    if _renameat2(tmp, dest, _RENAME_EXCHANGE):
        old = tmp  # now holds what was at dest
        try:
            owned = _owned_files(old)
        except PersistenceError:
            if not _renameat2(tmp, dest, _RENAME_EXCHANGE):  # put the user's directory back, untouched
                msg = f"{dest} changed while saving; the directory that was there is now at {tmp}."
                raise PersistenceError(msg, path=tmp) from None
            raise
        _remove_owned(old, owned)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(dest, old)
    try:
        owned = _owned_files(old)
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    _remove_owned(old, owned)


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
        files[key] = {"file": fname, "sha256": sha256_file(out / fname), "shape": list(arr.shape), "dtype": str(arr.dtype)}
    vs: ValidationSet | None = router.validation_set_
    if vs is not None:
        vs.to_jsonl(out / "validation.jsonl")
        files["validation"] = {"file": "validation.jsonl", "sha256": sha256_file(out / "validation.jsonl")}
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
    fpath = _inside(root, spec["file"])
    if not fpath.is_file():
        msg = f"{fpath} is missing."
        raise PersistenceError(msg, path=fpath)
    if sha256_file(fpath) != spec.get("sha256"):
        msg = f"{fpath} does not match the checksum in router.json (truncated, corrupted or modified)."
        raise PersistenceError(msg, path=fpath)
    _check_npy_header(fpath)
    try:
        arr = np.load(fpath, allow_pickle=False)
    except ValueError as e:
        msg = f"{fpath} could not be read as a plain numpy array: {e}."
        raise PersistenceError(msg, path=fpath) from e
    if list(arr.shape) != list(spec.get("shape", arr.shape)):
        msg = f"{fpath} has shape {list(arr.shape)} but router.json says {spec['shape']}."
        raise PersistenceError(msg, path=fpath)
    return arr


def _check_npy_header(fpath: Path) -> None:
    """The shape an .npy file declares must fit in the file (no allocation of a forged huge shape)."""
    try:
        with open(fpath, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        msg = f"{fpath} is not a readable .npy file: {e}."
        raise PersistenceError(msg, path=fpath) from e
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize if dtype.itemsize else 0
    if need > data_bytes:
        msg = f"{fpath} declares shape {shape} ({need} bytes) but holds {data_bytes} bytes of data."
        raise PersistenceError(msg, path=fpath)


def load_router(path: str | Path, *, embedder: Any = None) -> Any:
    """Load a router saved by :func:`save_router`; see :func:`_load_router`.

    Any malformed value in the files gives :class:`PersistenceError` naming the directory (never a
    raw ``KeyError``/``TypeError``/pydantic/numpy error, never ``MemoryError``).
    """
    root = Path(path)
    try:
        return _load_router(root, embedder=embedder)
    except UniRouterError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, MemoryError) as e:
        msg = f"{root / _META} holds a malformed value ({type(e).__name__}: {str(e)[:200]}); save the router again."
        raise PersistenceError(msg, path=root / _META) from e


def _load_router(path: str | Path, *, embedder: Any = None) -> Any:
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
        fpath = _inside(root, spec.get("file") if isinstance(spec, dict) else None)
        if not fpath.is_file() or sha256_file(fpath) != spec.get("sha256"):
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
    for key, arr in state.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            msg = f"{root}: state_{key}.npy holds NaN or inf; the router cannot route with it."
            raise PersistenceError(msg, path=root / f"state_{key}.npy")
    centroids = state.get("centroids")
    if centroids is not None and (centroids.ndim != 2 or centroids.shape[1] != ident.dim):
        msg = f"{root}: state_centroids.npy has shape {centroids.shape} but the embedder has dimension {ident.dim}."
        raise PersistenceError(msg, path=root / "state_centroids.npy")
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
    verify_manifest(root)
    return router


def _inside(root: Path, name: Any) -> Path:
    """``root / name`` for a plain file name; a path elsewhere (``../x``, ``/etc/x``) is refused."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        msg = f"{root / _META} names the file {name!r}; only plain file names inside the router directory are allowed."
        raise PersistenceError(msg, path=root / _META)
    return root / name


def verify_manifest(root: str | Path) -> None:
    """Check every file the manifest lists against its SHA-256 (router.json and candidates.json too).

    The arrays' checksums live in ``router.json``, so without this an edited ``router.json`` (two
    model names swapped, a cost changed) would load silently. Directories saved before manifests
    existed have none and are not checked.
    """
    root = Path(root)
    if not (root / MANIFEST).exists():
        return
    files = _manifest_files(root)
    if files is None:
        msg = f"{root / MANIFEST} is not a valid unirouter manifest (truncated or edited?)."
        raise PersistenceError(msg, path=root / MANIFEST)
    for name, digest in files.items():
        fpath = root / name
        if not fpath.is_file():
            msg = f"{fpath} is missing ({MANIFEST} lists it: the directory was saved with it)."
            raise PersistenceError(msg, path=fpath)
        if sha256_file(fpath) != digest:
            msg = (
                f"{fpath} does not match the checksum in {MANIFEST} (missing, truncated, corrupted or edited "
                "after saving); save the router again instead of editing its files."
            )
            raise PersistenceError(msg, path=fpath)
