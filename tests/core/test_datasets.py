"""unirouter.data.datasets: routing datasets on disk, splits, validation sets and their fingerprints."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from unirouter import (
    DatasetError,
    InvalidInputError,
    RoutingDataset,
    ValidationSet,
    load_dataset,
)
from unirouter.data.datasets import MANIFEST_FORMAT, split_indices

SHARED = ("mmlu_pro", "routerbench_subset", "zeroeval_math_code")


def write_dataset(
    root: Path,
    *,
    ids=("a", "b", "c"),
    texts=("What is 2+2?", "Name a prime.", "Capital of France?"),
    models=("m1", "m2"),
    correctness=(("1", "0"), ("0", ""), ("1", "1")),
    cost=None,
    matrix_ids=None,
    manifest_update=None,
) -> Path:
    """A tiny routing dataset folder in the shared format (plain, not gzipped)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "prompts.jsonl", "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"qid": i, "text": t, "answer": "x"}) + "\n"
            for i, t in zip(ids, texts)
        )

    def matrix(name: str, rows) -> None:
        with open(root / name, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["qid", *models])
            for i, r in zip(matrix_ids or ids, rows):
                w.writerow([i, *r])

    matrix("correctness.csv", correctness)
    manifest = {
        "name": "tiny",
        "format": MANIFEST_FORMAT,
        "prompts": "prompts.jsonl",
        "id_field": "qid",
        "text_field": "text",
        "answer_field": "answer",
        "correctness": "correctness.csv",
    }
    if cost is not None:
        matrix("cost.csv", cost)
        manifest["cost"] = "cost.csv"
    manifest.update(manifest_update or {})
    (root / "dataset.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


# -- the shared datasets ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHARED)
def test_load_dataset_reads_every_shared_dataset(data_dir, mmlu, name):
    ds = (
        mmlu
        if name == "mmlu_pro"
        else load_dataset(data_dir / name, load_responses=False)
    )
    manifest = json.loads((data_dir / name / "dataset.json").read_text())
    n, m = ds.correctness.shape
    assert n == len(ds.ids) == len(ds.texts) > 1000
    assert m == len(ds.model_names) >= 10
    assert len(set(ds.ids)) == n
    assert ds.cost is not None and ds.cost.shape == (n, m)
    assert all(isinstance(t, str) and t.strip() for t in ds.texts)
    observed = ds.correctness[~np.isnan(ds.correctness)]
    assert ((observed >= 0) & (observed <= 1)).all()
    assert ds.name == manifest["name"]
    # first prompt's id and text come from the manifest's fields
    with gzip.open(data_dir / name / manifest["prompts"], "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert ds.ids[0] == str(first[manifest["id_field"]])
    assert ds.texts[0] == first[manifest["text_field"]]
    if manifest.get("models"):
        assert [row["model"] for row in ds.models] == ds.model_names


def test_missing_cell_is_nan_never_zero(data_dir, mmlu):
    """A known-missing DeepSeek-Coder-V2 cell of mmlu_pro (question 94) reads as NaN."""
    with gzip.open(data_dir / "mmlu_pro" / "correctness.csv.gz", "rt") as f:
        reader = csv.reader(f)
        header = next(reader)
        j_raw = header.index("DeepSeek-Coder-V2")
        raw = {row[0]: row[j_raw] for row in reader}
    assert raw["94"] == ""  # the cell is empty on disk
    i, j = mmlu.ids.index("94"), mmlu.model_names.index("DeepSeek-Coder-V2")
    assert np.isnan(mmlu.correctness[i, j])
    n_empty = sum(v == "" for v in raw.values())
    assert np.isnan(mmlu.correctness[:, j]).sum() == n_empty > 1000
    # and a present 0 stays 0
    zero_id = next(k for k, v in raw.items() if v == "0")
    assert mmlu.correctness[mmlu.ids.index(zero_id), j] == 0.0
    assert "DeepSeek-Coder-V2" not in mmlu.complete_models()


def test_complete_models_and_rows(mmlu):
    models = mmlu.complete_models()
    assert "DeepSeek-Coder-V2" not in models and len(models) >= 15
    cols = mmlu.model_index(models)
    assert not np.isnan(mmlu.correctness[:, cols]).any()
    rows = mmlu.complete_rows(["DeepSeek-Coder-V2", models[0]])
    j = mmlu.model_names.index("DeepSeek-Coder-V2")
    assert not np.isnan(mmlu.correctness[rows, j]).any()
    assert len(rows) == int(
        (~np.isnan(mmlu.correctness[:, j]) & ~np.isnan(mmlu.cost[:, j])).sum()
    )
    assert len(mmlu.complete_models(min_coverage=0.5)) > len(models)


def test_subset_keeps_rows_and_models_aligned(mmlu):
    rows = [5, 1, 300]
    models = ["gpt-4o-2024-05-13", "Llama-2-7b-hf"]
    sub = mmlu.subset(rows, models=models)
    assert sub.ids == [mmlu.ids[i] for i in rows]
    assert sub.model_names == models
    cols = mmlu.model_index(models)
    np.testing.assert_array_equal(sub.correctness, mmlu.correctness[np.ix_(rows, cols)])
    np.testing.assert_array_equal(sub.cost, mmlu.cost[np.ix_(rows, cols)])
    assert (
        sub.responses.shape == (3, 2)
        and sub.responses[0, 0] == mmlu.responses[5, cols[0]]
    )
    assert [m["model"] for m in sub.models] == models
    with pytest.raises(InvalidInputError, match="not in dataset"):
        mmlu.subset(rows, models=["no-such-model"])


def test_split_is_deterministic_and_disjoint(mmlu):
    small = mmlu.subset(range(500))
    a = small.split((0.6, 0.1, 0.3), random_state=3)
    b = small.split((0.6, 0.1, 0.3), random_state=3)
    c = small.split((0.6, 0.1, 0.3), random_state=4)
    assert [len(p) for p in a] == [300, 50, 150]
    assert [p.ids for p in a] == [p.ids for p in b]
    assert a[0].ids != c[0].ids
    all_ids = [i for p in a for i in p.ids]
    assert len(set(all_ids)) == len(all_ids) == 500


def test_split_indices_refuses_bad_fractions():
    with pytest.raises(InvalidInputError, match="fractions"):
        split_indices(10, (0.8, 0.5))
    with pytest.raises(InvalidInputError, match="too few"):
        split_indices(3, (0.1, 0.9))


def test_validation_set_from_dataset_carries_answers(mmlu):
    vs = mmlu.validation_set([0, 1, 2])
    assert vs.prompts == mmlu.texts[:3]
    assert vs.references == mmlu.answers[:3]
    assert vs.ids == mmlu.ids[:3]


# -- ValidationSet --------------------------------------------------------------------------------
def test_fingerprint_is_stable_and_order_sensitive():
    a = ValidationSet(["p1", "p2", "p3"], references=["A", "B", "C"])
    same = ValidationSet(
        ["p1", "p2", "p3"], references=["A", "B", "C"], ids=["x", "y", "z"]
    )
    reordered = ValidationSet(["p2", "p1", "p3"], references=["B", "A", "C"])
    other_ref = ValidationSet(["p1", "p2", "p3"], references=["A", "B", "D"])
    assert a.fingerprint == same.fingerprint
    assert len({a.fingerprint, reordered.fingerprint, other_ref.fingerprint}) == 3
    assert a.subset([1, 0, 2]).fingerprint == reordered.fingerprint


def test_validation_set_refuses_duplicates_and_empty_prompts():
    with pytest.raises(InvalidInputError, match="unique"):
        ValidationSet(["same", "other", "same"])
    with pytest.raises(InvalidInputError, match="empty or whitespace"):
        ValidationSet(["ok", "   "])
    with pytest.raises(InvalidInputError, match="at least one"):
        ValidationSet([])
    with pytest.raises(InvalidInputError, match="must be a string"):
        ValidationSet(["ok", 3])
    with pytest.raises(InvalidInputError, match="references has 1 entries"):
        ValidationSet(["a", "b"], references=["A"])
    keep = ValidationSet.deduplicate(["a", "b", "a", "c"])
    assert keep == [0, 1, 3]


def test_validation_set_jsonl_round_trip(tmp_path):
    vs = ValidationSet(
        ["q1?", "q2 ü", "q3\nline"],
        references=["A", "B", 3],
        ids=["i1", "i2", "i3"],
        groups=["g", "g", "h"],
    )
    vs.to_jsonl(tmp_path / "val.jsonl")
    back = ValidationSet.from_jsonl(tmp_path / "val.jsonl")
    assert (
        back.prompts == vs.prompts and back.ids == vs.ids and back.groups == vs.groups
    )
    assert back.fingerprint == vs.fingerprint


def test_validation_set_from_csv(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text(
        "id,question,reference\n7,first?,A\n8,second?,B\n", encoding="utf-8"
    )
    vs = ValidationSet.from_csv(path, prompt_field="question")
    assert (
        vs.prompts == ["first?", "second?"]
        and vs.ids == ["7", "8"]
        and vs.references == ["A", "B"]
    )
    with pytest.raises(InvalidInputError, match="field 'prompt'"):
        ValidationSet.from_csv(path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        ValidationSet.from_csv(tmp_path / "nope.csv")


# -- small datasets on disk ---------------------------------------------------------------------------
def test_tiny_dataset_loads_with_nan_for_empty_cells(tmp_path):
    ds = load_dataset(
        write_dataset(
            tmp_path / "d", cost=(("0.1", "0.2"), ("0.1", ""), ("0.3", "0.2"))
        )
    )
    assert isinstance(ds, RoutingDataset) and ds.name == "tiny" and len(ds) == 3
    assert ds.model_names == ["m1", "m2"]
    assert np.isnan(ds.correctness[1, 1]) and ds.correctness[1, 0] == 0.0
    assert np.isnan(ds.cost[1, 1])
    assert ds.answers == ["x", "x", "x"]
    assert ds.complete_models() == ["m1"]
    np.testing.assert_array_equal(ds.complete_rows(), [0, 2])


def _dataset_error(root: Path, match: str) -> DatasetError:
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(root)
    return info.value


def test_dataset_without_manifest_is_refused(tmp_path):
    root = write_dataset(tmp_path / "d")
    (root / "dataset.json").unlink()
    err = _dataset_error(root, "no dataset.json manifest")
    assert err.path == root / "dataset.json"
    assert (
        _dataset_error(tmp_path / "missing", "does not exist").path
        == tmp_path / "missing"
    )


def test_dataset_with_wrong_format_is_refused(tmp_path):
    root = write_dataset(tmp_path / "d", manifest_update={"format": "something-else/2"})
    assert _dataset_error(root, "format must be").path.name == "dataset.json"
    (root / "dataset.json").write_text("{not json", encoding="utf-8")
    _dataset_error(root, "not valid JSON")


def test_dataset_with_ids_that_do_not_match_is_refused(tmp_path):
    root = write_dataset(tmp_path / "d", matrix_ids=("a", "c", "b"))
    err = _dataset_error(root, "row 2 has id 'c'")
    assert err.path.name == "correctness.csv"
    root2 = write_dataset(tmp_path / "d2", correctness=(("1", "0"), ("0", "1")))
    _dataset_error(root2, "has 2 rows but the prompts file has 3")


def test_dataset_with_non_numeric_cell_is_refused(tmp_path):
    root = write_dataset(
        tmp_path / "d", correctness=(("1", "0"), ("yes", "1"), ("1", "1"))
    )
    assert _dataset_error(root, "not a number").path.name == "correctness.csv"


def test_dataset_with_correctness_outside_unit_interval_is_refused(tmp_path):
    root = write_dataset(
        tmp_path / "d", correctness=(("1", "0"), ("1.5", "1"), ("1", "1"))
    )
    _dataset_error(root, r"\[0, 1\]; got 1.5 for model 'm1', id 'b'")


def test_dataset_with_bad_costs_or_columns_is_refused(tmp_path):
    neg = write_dataset(
        tmp_path / "neg", cost=(("0.1", "-1"), ("0.1", "0.1"), ("0.1", "0.1"))
    )
    assert _dataset_error(neg, "finite and >= 0").path.name == "cost.csv"
    other = write_dataset(
        tmp_path / "other", cost=(("0.1", "0.1"), ("0.1", "0.1"), ("0.1", "0.1"))
    )
    text = (other / "cost.csv").read_text().replace("qid,m1,m2", "qid,m2,m1")
    (other / "cost.csv").write_text(text)
    _dataset_error(other, "model columns differ")


def test_dataset_with_missing_or_bad_prompts_is_refused(tmp_path):
    root = write_dataset(tmp_path / "d", manifest_update={"prompts": "nope.jsonl"})
    _dataset_error(root, "prompts file 'nope.jsonl'")
    dup = write_dataset(tmp_path / "dup", ids=("a", "a", "c"))
    _dataset_error(dup, "not unique")
    blank = write_dataset(tmp_path / "blank", texts=("ok", "  ", "fine"))
    assert _dataset_error(blank, "empty or whitespace").path.name == "prompts.jsonl"
    nomatrix = write_dataset(
        tmp_path / "nomatrix", manifest_update={"correctness": "gone.csv"}
    )
    _dataset_error(nomatrix, "does not exist")
