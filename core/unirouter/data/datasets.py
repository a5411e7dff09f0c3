"""Routing datasets and validation sets.

A *routing dataset* is a folder with a ``dataset.json`` manifest (format
``unirouter-routing-dataset/1``): a prompts file (JSONL, optionally gzipped) and CSV matrices whose
rows are the prompts (first column = id, same order) and whose columns are models. An empty cell means
"no result" and is read as NaN (masked), never as 0. See the README for the full format.

A :class:`ValidationSet` is the small labelled prompt set every model is profiled on. Its
:attr:`~ValidationSet.fingerprint` is stored in each profile, so profiles from another set are never
silently mixed in.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unirouter._validation import as_rng, check_prompt
from unirouter.exceptions import DatasetError, InvalidInputError

__all__ = [
    "MANIFEST_FORMAT",
    "RoutingDataset",
    "ValidationSet",
    "default_data_dir",
    "load_dataset",
    "split_indices",
]

MANIFEST_FORMAT = "unirouter-routing-dataset/1"


def default_data_dir() -> Path:
    """Where the shared routing datasets live: ``$UNIROUTER_DATA``, else ``../shared/data``.

    The relative default is tried from the working directory, then from the repository root of an
    editable install.
    """
    env = os.environ.get("UNIROUTER_DATA")
    if env:
        return Path(env)
    here = Path.cwd() / ".." / "shared" / "data"
    if here.is_dir():
        return here.resolve()
    repo = Path(__file__).resolve().parents[2]  # core/unirouter/datasets.py -> repo root
    return (repo / ".." / "shared" / "data").resolve()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                msg = f"{path}: line {lineno} is not valid JSON ({e.msg})."
                raise DatasetError(msg, path=path) from e
    return rows


def _read_matrix(path: Path, ids: list[str], *, numeric: bool = True) -> tuple[list[str], np.ndarray]:
    """Read an items x models CSV; check its id column against ``ids``; empty cells -> NaN / None."""
    if not path.is_file():
        msg = f"matrix file {path.name!r} named in the manifest does not exist in {path.parent}."
        raise DatasetError(msg, path=path)
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            msg = f"{path.name} is empty; expected a header row (id, model names...)."
            raise DatasetError(msg, path=path) from None
        models = header[1:]
        if not models:
            msg = f"{path.name} has no model columns."
            raise DatasetError(msg, path=path)
        row_ids: list[str] = []
        cells: list[list[str]] = []
        for row in reader:
            if not row:
                continue
            row_ids.append(row[0])
            cells.append(row[1:])
    if len(row_ids) != len(ids):
        msg = f"{path.name} has {len(row_ids)} rows but the prompts file has {len(ids)}; rows must be the prompts, in order."
        raise DatasetError(msg, path=path)
    for i, (a, b) in enumerate(zip(row_ids, ids)):
        if a != b:
            msg = f"{path.name} row {i + 1} has id {a!r} but prompt {i + 1} has id {b!r}; rows must follow the prompts file's order."
            raise DatasetError(msg, path=path)
    width = len(models)
    for i, c in enumerate(cells):
        if len(c) != width:
            msg = f"{path.name} row {i + 1} has {len(c)} values for {width} models."
            raise DatasetError(msg, path=path)
    if not numeric:
        arr = np.array([[v if v != "" else None for v in c] for c in cells], dtype=object).reshape(len(cells), width)
        return models, arr
    try:
        arr = np.array([[float(v) if v != "" else np.nan for v in c] for c in cells], dtype=np.float64)
    except ValueError as e:
        msg = f"{path.name} holds a value that is not a number: {e}."
        raise DatasetError(msg, path=path) from e
    return models, arr.reshape(len(cells), width)


@dataclass
class RoutingDataset:
    """Prompts x models correctness (and cost) matrices, NaN = missing.

    Attributes
    ----------
    name : str
    ids : list of str, length n
    texts : list of str, length n
        The text to embed for each prompt.
    correctness : ndarray of shape (n, M)
        Quality in [0, 1]; NaN where the model has no result.
    model_names : list of str, length M
    cost : ndarray of shape (n, M) or None
        Per-query cost (USD); NaN where missing.
    answers, groups : list or None
    responses : ndarray of object, shape (n, M), or None
        Recorded raw responses (e.g. answer letters), ``None`` where missing.
    models : list of dict
        The models table (prices, sizes, ...), one dict per model, if the folder has one.
    records : list of dict
        The full prompt records.
    """

    name: str
    ids: list[str]
    texts: list[str]
    correctness: np.ndarray
    model_names: list[str]
    cost: np.ndarray | None = None
    answers: list[Any] | None = None
    groups: list[Any] | None = None
    responses: np.ndarray | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_models(self) -> int:
        return len(self.model_names)

    def model_index(self, names: Iterable[str]) -> list[int]:
        pos = {n: i for i, n in enumerate(self.model_names)}
        out = []
        for n in names:
            if n not in pos:
                msg = f"model {n!r} is not in dataset {self.name!r}; known: {', '.join(self.model_names)}."
                raise InvalidInputError(msg)
            out.append(pos[n])
        return out

    def complete_models(self, rows: Sequence[int] | None = None, *, min_coverage: float = 1.0) -> list[str]:
        """Models with at least ``min_coverage`` of the (given) rows observed."""
        y = self.correctness if rows is None else self.correctness[np.asarray(rows)]
        cover = (~np.isnan(y)).mean(axis=0)
        if self.cost is not None:
            c = self.cost if rows is None else self.cost[np.asarray(rows)]
            cover = np.minimum(cover, (~np.isnan(c)).mean(axis=0))
        return [n for n, v in zip(self.model_names, cover) if v >= min_coverage]

    def complete_rows(self, models: Sequence[str] | None = None) -> np.ndarray:
        """Indices of prompts observed for every one of ``models`` (all models when None)."""
        cols = self.model_index(models) if models is not None else list(range(self.n_models))
        ok = ~np.isnan(self.correctness[:, cols]).any(axis=1)
        if self.cost is not None:
            ok &= ~np.isnan(self.cost[:, cols]).any(axis=1)
        return np.flatnonzero(ok)

    def subset(self, rows: Sequence[int] | None = None, models: Sequence[str] | None = None) -> RoutingDataset:
        """A new dataset restricted to ``rows`` (prompt indices) and ``models`` (names)."""
        r = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        cols = list(range(self.n_models)) if models is None else self.model_index(models)

        def pick(seq: list[Any] | None) -> list[Any] | None:
            return None if seq is None else [seq[i] for i in r]

        return RoutingDataset(
            name=self.name,
            ids=[self.ids[i] for i in r],
            texts=[self.texts[i] for i in r],
            correctness=self.correctness[np.ix_(r, cols)],
            model_names=[self.model_names[j] for j in cols],
            cost=None if self.cost is None else self.cost[np.ix_(r, cols)],
            answers=pick(self.answers),
            groups=pick(self.groups),
            responses=None if self.responses is None else self.responses[np.ix_(r, cols)],
            models=[self.models[j] for j in cols] if self.models else [],
            records=pick(self.records) or [],
            path=self.path,
            manifest=self.manifest,
        )

    def split(
        self, fractions: Sequence[float] = (0.6, 0.1, 0.3), *, random_state: int | None = None
    ) -> list[RoutingDataset]:
        """Random disjoint splits of the prompts (default 60/10/30, the paper's train/val/test)."""
        return [self.subset(idx) for idx in split_indices(len(self), fractions, random_state=random_state)]

    def validation_set(self, rows: Sequence[int] | None = None) -> ValidationSet:
        """The prompts (and answers) of ``rows`` as a :class:`ValidationSet`."""
        sub = self if rows is None else self.subset(rows)
        return ValidationSet(sub.texts, references=sub.answers, ids=sub.ids, groups=sub.groups)

    def __repr__(self) -> str:
        return f"RoutingDataset(name={self.name!r}, n_prompts={len(self)}, n_models={self.n_models})"


def split_indices(
    n: int, fractions: Sequence[float] = (0.6, 0.1, 0.3), *, random_state: int | np.random.Generator | None = None
) -> list[np.ndarray]:
    """Shuffle ``range(n)`` and cut it by ``fractions`` (which must sum to at most 1)."""
    fr = np.asarray(fractions, dtype=float)
    if fr.ndim != 1 or (fr <= 0).any() or fr.sum() > 1 + 1e-9:
        msg = f"fractions must be positive and sum to at most 1. Got {list(fractions)}."
        raise InvalidInputError(msg)
    perm = as_rng(random_state).permutation(n)
    cuts = np.floor(np.cumsum(fr) * n + 1e-9).astype(int)
    out, start = [], 0
    for c in cuts:
        out.append(np.sort(perm[start:c]))
        start = c
    if any(len(o) == 0 for o in out):
        msg = f"{n} prompts are too few to split into {list(fractions)}; every part would need at least one prompt."
        raise InvalidInputError(msg)
    return out


def load_dataset(path: str | Path, *, load_responses: bool = True) -> RoutingDataset:
    """Read a routing dataset folder (see the README for the manifest format).

    Raises
    ------
    DatasetError
        No manifest, an unknown format, a missing file, matrix ids that do not match the prompts,
        non-numeric cells or correctness outside [0, 1].
    """
    root = Path(path)
    manifest_path = root / "dataset.json"
    if not root.is_dir():
        msg = f"dataset folder {str(root)!r} does not exist."
        raise DatasetError(msg, path=root)
    if not manifest_path.is_file():
        msg = f"{root} has no dataset.json manifest; see the README's 'Dataset format' section."
        raise DatasetError(msg, path=manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        msg = f"{manifest_path} is not valid JSON ({e.msg})."
        raise DatasetError(msg, path=manifest_path) from e
    fmt = manifest.get("format")
    if fmt != MANIFEST_FORMAT:
        msg = f"{manifest_path}: format must be {MANIFEST_FORMAT!r}. Got {fmt!r}."
        raise DatasetError(msg, path=manifest_path)
    for key in ("prompts", "id_field", "text_field", "correctness"):
        if not manifest.get(key):
            msg = f"{manifest_path}: the manifest must name {key!r}."
            raise DatasetError(msg, path=manifest_path)

    prompts_path = root / manifest["prompts"]
    if not prompts_path.is_file():
        msg = f"prompts file {manifest['prompts']!r} named in the manifest does not exist in {root}."
        raise DatasetError(msg, path=prompts_path)
    records = _read_jsonl(prompts_path)
    idf, tf = manifest["id_field"], manifest["text_field"]
    af, gf = manifest.get("answer_field"), manifest.get("group_field")
    ids, texts = [], []
    for i, r in enumerate(records):
        if idf not in r or tf not in r:
            msg = f"{prompts_path.name} record {i + 1} lacks the id field {idf!r} or the text field {tf!r}."
            raise DatasetError(msg, path=prompts_path)
        ids.append(str(r[idf]))
        texts.append(r[tf])
        try:
            check_prompt(r[tf], what=f"{prompts_path.name} record {i + 1} field {tf!r}")
        except InvalidInputError as e:
            raise DatasetError(str(e), path=prompts_path) from e
    if len(set(ids)) != len(ids):
        msg = f"{prompts_path.name}: ids in field {idf!r} are not unique."
        raise DatasetError(msg, path=prompts_path)

    model_names, correctness = _read_matrix(root / manifest["correctness"], ids)
    bad = ~np.isnan(correctness) & ((correctness < 0) | (correctness > 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        msg = f"{manifest['correctness']}: scores must lie in [0, 1]; got {correctness[i, j]} for model {model_names[j]!r}, id {ids[i]!r}."
        raise DatasetError(msg, path=root / manifest["correctness"])

    def aligned(file_key: str, numeric: bool = True) -> np.ndarray | None:
        name = manifest.get(file_key)
        if not name:
            return None
        names, arr = _read_matrix(root / name, ids, numeric=numeric)
        if names != model_names:
            msg = f"{name}: model columns differ from {manifest['correctness']}; both must list the same models in the same order."
            raise DatasetError(msg, path=root / name)
        return arr

    cost = aligned("cost")
    if cost is not None and (np.isinf(cost).any() or (cost[~np.isnan(cost)] < 0).any()):
        msg = f"{manifest['cost']}: costs must be finite and >= 0."
        raise DatasetError(msg, path=root / manifest["cost"])
    responses = aligned("responses", numeric=False) if load_responses else None

    models: list[dict[str, Any]] = []
    if manifest.get("models") and (root / manifest["models"]).is_file():
        with open(root / manifest["models"], encoding="utf-8") as f:
            table = {row["model"]: row for row in csv.DictReader(f) if "model" in row}
        models = [table.get(n, {"model": n}) for n in model_names]

    return RoutingDataset(
        name=manifest.get("name") or root.name,
        ids=ids,
        texts=texts,
        correctness=correctness,
        model_names=model_names,
        cost=cost,
        answers=[r.get(af) for r in records] if af else None,
        groups=[r.get(gf) for r in records] if gf else None,
        responses=responses,
        models=models,
        records=records,
        path=root,
        manifest=manifest,
    )


class ValidationSet:
    """The labelled prompts every model is profiled on.

    Parameters
    ----------
    prompts : list of str
        Non-empty, unique prompts.
    references : list or None
        Reference answers (one per prompt) for scorers that need them.
    ids : list of str or None
        Stable ids; default ``"0", "1", ...``.
    groups : list or None
        Optional group/category labels.

    The :attr:`fingerprint` hashes prompts and references in order, so any change (including
    reordering) gives another fingerprint.
    """

    def __init__(
        self,
        prompts: Sequence[str],
        *,
        references: Sequence[Any] | None = None,
        ids: Sequence[Any] | None = None,
        groups: Sequence[Any] | None = None,
    ) -> None:
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            msg = f"prompts must be a list of strings. Got {type(prompts).__name__}."
            raise InvalidInputError(msg)
        if len(prompts) == 0:
            msg = "a validation set needs at least one prompt."
            raise InvalidInputError(msg)
        for i, p in enumerate(prompts):
            check_prompt(p, what=f"validation prompt {i}")
        n = len(prompts)
        for what, seq in (("references", references), ("ids", ids), ("groups", groups)):
            if seq is not None and len(seq) != n:
                msg = f"{what} has {len(seq)} entries for {n} prompts; give one per prompt."
                raise InvalidInputError(msg)
        seen: dict[str, int] = {}
        for i, p in enumerate(prompts):
            if p in seen:
                msg = (
                    f"validation prompts must be unique: prompt {i} repeats prompt {seen[p]} "
                    f"({p[:60]!r}...). Remove duplicates (ValidationSet.deduplicate helps)."
                )
                raise InvalidInputError(msg)
            seen[p] = i
        self.prompts = list(prompts)
        self.references = None if references is None else list(references)
        self.ids = [str(i) for i in (ids if ids is not None else range(n))]
        if len(set(self.ids)) != n:
            msg = "validation ids must be unique."
            raise InvalidInputError(msg)
        self.groups = None if groups is None else list(groups)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self):
        return iter(self.prompts)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the prompts and references, in order (hex, 16 chars)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for i, p in enumerate(self.prompts):
                ref = None if self.references is None else self.references[i]
                h.update(json.dumps([p, None if ref is None else str(ref)], ensure_ascii=False).encode("utf-8"))
                h.update(b"\n")
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def subset(self, rows: Sequence[int]) -> ValidationSet:
        rows = list(rows)
        return ValidationSet(
            [self.prompts[i] for i in rows],
            references=None if self.references is None else [self.references[i] for i in rows],
            ids=[self.ids[i] for i in rows],
            groups=None if self.groups is None else [self.groups[i] for i in rows],
        )

    @staticmethod
    def deduplicate(prompts: Sequence[str]) -> list[int]:
        """Indices of the first occurrence of each distinct prompt (use with ``subset``)."""
        seen: set[str] = set()
        keep = []
        for i, p in enumerate(prompts):
            if p not in seen:
                seen.add(p)
                keep.append(i)
        return keep

    @classmethod
    def from_jsonl(
        cls,
        path: str | Path,
        *,
        prompt_field: str = "prompt",
        reference_field: str | None = "reference",
        id_field: str | None = "id",
        group_field: str | None = "group",
    ) -> ValidationSet:
        """Read one JSON object per line; missing optional fields are allowed."""
        path = Path(path)
        if not path.is_file():
            msg = f"validation file {str(path)!r} does not exist."
            raise InvalidInputError(msg)
        rows = _read_jsonl(path)
        return cls._from_rows(rows, path, prompt_field, reference_field, id_field, group_field)

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        prompt_field: str = "prompt",
        reference_field: str | None = "reference",
        id_field: str | None = "id",
        group_field: str | None = "group",
    ) -> ValidationSet:
        """Read a CSV with a header row."""
        path = Path(path)
        if not path.is_file():
            msg = f"validation file {str(path)!r} does not exist."
            raise InvalidInputError(msg)
        with _open_text(path) as f:
            rows = list(csv.DictReader(f))
        return cls._from_rows(rows, path, prompt_field, reference_field, id_field, group_field)

    @classmethod
    def _from_rows(cls, rows, path, prompt_field, reference_field, id_field, group_field) -> ValidationSet:
        if not rows:
            msg = f"{path} holds no rows."
            raise InvalidInputError(msg)
        if any(prompt_field not in r for r in rows):
            msg = f"{path}: every row needs the field {prompt_field!r} (set prompt_field= to use another)."
            raise InvalidInputError(msg)

        def col(field: str | None) -> list[Any] | None:
            if field is None or not any(field in r for r in rows):
                return None
            return [r.get(field) for r in rows]

        return cls(
            [r[prompt_field] for r in rows],
            references=col(reference_field),
            ids=col(id_field),
            groups=col(group_field),
        )

    def to_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, p in enumerate(self.prompts):
                row: dict[str, Any] = {"id": self.ids[i], "prompt": p}
                if self.references is not None:
                    row["reference"] = self.references[i]
                if self.groups is not None:
                    row["group"] = self.groups[i]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def __repr__(self) -> str:
        return f"ValidationSet(n={len(self)}, fingerprint={self.fingerprint!r})"
