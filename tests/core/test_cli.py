"""The ``unirouter`` command: fit, add-model, route, info; help texts; bad input -> exit 2 + message."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from unirouter import UniRouter
from unirouter.cli import main
from unirouter.data.datasets import MANIFEST_FORMAT

N_MODELS = 6


def write_routing_dataset(ds, root: Path) -> Path:
    """Write a RoutingDataset in the shared on-disk format (plain JSONL + CSV)."""
    root.mkdir(parents=True)
    with open(root / "prompts.jsonl", "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"id": i, "prompt": t, "answer": a}) + "\n"
            for i, t, a in zip(ds.ids, ds.texts, ds.answers)
        )
    for fname, mat in (("correctness.csv", ds.correctness), ("cost.csv", ds.cost)):
        with open(root / fname, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", *ds.model_names])
            for i, row in zip(ds.ids, mat):
                w.writerow([i, *("" if np.isnan(v) else repr(float(v)) for v in row)])
    manifest = {
        "name": "mini_mmlu",
        "format": MANIFEST_FORMAT,
        "prompts": "prompts.jsonl",
        "id_field": "id",
        "text_field": "prompt",
        "answer_field": "answer",
        "correctness": "correctness.csv",
        "cost": "cost.csv",
    }
    (root / "dataset.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def mini(mmlu, mmlu_small, tmp_path_factory):
    """~300 MMLU-Pro rows (already embedded by the conftest slice) of complete models, on disk."""
    train, val = mmlu_small["train"], mmlu_small["val"]
    models = train.model_names[:N_MODELS]
    ids = set(train.ids[:200] + val.ids[:100])
    rows = [i for i, x in enumerate(mmlu.ids) if x in ids]
    ds = mmlu.subset(rows, models=models)
    return write_routing_dataset(ds, tmp_path_factory.mktemp("cli") / "mini_mmlu"), ds


@pytest.fixture(scope="module")
def fitted_dir(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_router") / "router"
    assert (
        main(
            [
                "fit",
                "--data",
                str(mini[0]),
                "--out",
                str(out),
                "--n-clusters",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    return out


@pytest.fixture()
def router_dir(fitted_dir, tmp_path) -> Path:
    """A private copy of the CLI-fitted router directory."""
    return Path(shutil.copytree(fitted_dir, tmp_path / "router"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fails(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert f"unirouter {argv[0]}: error: " in err and "Traceback" not in err
    return err


# -- happy paths ----------------------------------------------------------------------------------
def test_fit_from_a_routing_dataset(fitted_dir, mini):
    _, ds = mini
    r = UniRouter.load(fitted_dir)
    assert r.n_clusters == 4 and r.method == "kmeans" and r.random_state == 0
    assert r.models_ == ds.model_names
    assert r.n_validation_ == 30  # --val-fraction 0.1 of 300
    assert r.validation_set_.references is not None


def test_fit_prints_a_summary_and_refuses_to_overwrite(mini, fitted_dir, capsys):
    before = (fitted_dir / "router.json").read_bytes()
    err = fails(
        capsys,
        "fit",
        "--data",
        str(mini[0]),
        "--out",
        str(fitted_dir),
        "--n-clusters",
        "4",
        "--quiet",
    )
    assert "already exists; pass overwrite=True" in err
    assert (fitted_dir / "router.json").read_bytes() == before


def test_fit_from_prompt_files(mmlu_small, tmp_path, capsys):
    train, val = mmlu_small["train"], mmlu_small["val"]
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in train.texts[:60])
    with open(tmp_path / "val.jsonl", "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"id": i, "prompt": t, "reference": a}) + "\n"
            for i, t, a in zip(val.ids[:20], val.texts[:20], val.answers[:20])
        )
    code, out, _ = run(
        capsys,
        "fit",
        "--prompts",
        str(tmp_path / "train.jsonl"),
        "--validation",
        str(tmp_path / "val.jsonl"),
        "--out",
        str(tmp_path / "r"),
        "--n-clusters",
        "3",
        "--quiet",
    )
    assert code == 0 and "saved to" in out
    r = UniRouter.load(tmp_path / "r")
    assert (
        r.models_ == []
        and r.n_validation_ == 20
        and r.validation_set_.ids == val.ids[:20]
    )


def test_add_model_from_a_correctness_file(router_dir, capsys):
    n = UniRouter.load(router_dir).n_validation_
    scores = np.tile([1.0, 0.0, 0.5], n)[:n]
    (router_dir.parent / "c.txt").write_text("\n".join(map(str, scores)) + "\n")
    code, out, _ = run(
        capsys,
        "add-model",
        str(router_dir),
        "newbie",
        "--correctness",
        str(router_dir.parent / "c.txt"),
        "--cost",
        "0.0003",
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["name"] == "newbie" and summary["cost_per_query"] == 0.0003
    assert summary["validation_accuracy"] == pytest.approx(scores.mean(), abs=1e-4)
    r = UniRouter.load(router_dir)
    assert "newbie" in r.models_
    np.testing.assert_array_equal(r.get_profile("newbie").scores, scores)


def test_add_model_with_csv_by_id_and_per_prompt_costs(router_dir, capsys):
    r = UniRouter.load(router_dir)
    ids = list(reversed(r.validation_set_.ids))  # rows in another order: aligned by id
    with open(router_dir.parent / "c.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "correctness", "cost"])
        for k, i in enumerate(ids):
            w.writerow([i, k % 2, 0.001 * (k + 1)])
    c = str(router_dir.parent / "c.csv")
    code, _, _ = run(
        capsys,
        "add-model",
        str(router_dir),
        "csvmodel",
        "--correctness",
        c,
        "--costs",
        c,
    )
    assert code == 0
    p = UniRouter.load(router_dir).get_profile("csvmodel")
    pos = {i: k for k, i in enumerate(ids)}
    expect = [pos[i] % 2 for i in r.validation_set_.ids]
    np.testing.assert_array_equal(p.scores, expect)
    assert p.costs is not None and p.costs[0] == pytest.approx(
        0.001 * (pos[r.validation_set_.ids[0]] + 1)
    )


def test_add_model_replace_flag(router_dir, capsys):
    name = UniRouter.load(router_dir).models_[0]
    n = UniRouter.load(router_dir).n_validation_
    (router_dir.parent / "c.json").write_text(json.dumps([1] * n))
    before = (router_dir / "router.json").read_bytes()
    err = fails(
        capsys,
        "add-model",
        str(router_dir),
        name,
        "--correctness",
        str(router_dir.parent / "c.json"),
        "--cost",
        "1",
    )
    assert "already registered" in err and "replace" in err
    assert (
        router_dir / "router.json"
    ).read_bytes() == before  # nothing written on failure
    code, _, _ = run(
        capsys,
        "add-model",
        str(router_dir),
        name,
        "--correctness",
        str(router_dir.parent / "c.json"),
        "--cost",
        "1",
        "--replace",
    )
    assert (
        code == 0 and UniRouter.load(router_dir).get_profile(name).cost_per_query == 1.0
    )


def test_route_prints_decisions_and_json(fitted_dir, mini, embedder, capsys):
    _, ds = mini
    prompts = ds.texts[:2]
    code, out, _ = run(capsys, "route", str(fitted_dir), *prompts, "--cost-weight", "0")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    r = UniRouter.load(fitted_dir, embedder=embedder)
    expected = [d.model for d in r.route_batch(prompts, cost_weight=0.0)]
    assert [ln.split("\t")[0] for ln in lines] == expected
    assert "predicted error" in lines[0]
    code, out, _ = run(
        capsys,
        "route",
        str(fitted_dir),
        prompts[0],
        "--json",
        "--cost-weight",
        "1e9",
        "--exclude",
        ds.model_names[0],
    )
    rec = json.loads(out)
    assert code == 0 and rec["prompt"] == prompts[0] and rec["cost_weight"] == 1e9
    assert ds.model_names[0] not in rec["ranked"] and rec["model"] == rec["ranked"][0]
    assert rec["expected_cost"][rec["model"]] == min(rec["expected_cost"].values())
    code, out, _ = run(
        capsys,
        "route",
        str(fitted_dir),
        prompts[0],
        "--json",
        "--models",
        ",".join(ds.model_names[1:3]),
    )
    assert set(json.loads(out)["ranked"]) == set(ds.model_names[1:3])


def test_route_reads_prompts_from_stdin(fitted_dir, mini, capsys, monkeypatch):
    prompts = [t.replace("\n", " ") for t in mini[1].texts[:3]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(prompts) + "\n\n"))
    code, out, _ = run(capsys, "route", str(fitted_dir), "-", "--json")
    assert (
        code == 0
        and [json.loads(x)["prompt"] for x in out.strip().splitlines()] == prompts
    )


def test_info_describes_the_saved_router(fitted_dir, mini, capsys):
    code, out, _ = run(capsys, "info", str(fitted_dir))
    assert code == 0
    assert (
        "UniRouter" in out
        and "K=4" in out
        and "all-MiniLM-L6-v2" in out
        and "validation 30 prompts" in out
    )
    assert all(m in out for m in mini[1].model_names)
    code, out, _ = run(capsys, "info", str(fitted_dir), "--json")
    meta = json.loads(out)
    assert (
        code == 0
        and meta["schema"] == "unirouter-router/1"
        and len(meta["models"]) == N_MODELS
    )


@pytest.mark.parametrize("command", [None, "fit", "add-model", "route", "info"])
def test_help_of_each_command(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert out.startswith(f"usage: unirouter{'' if command is None else ' ' + command}")
    if command is None:
        assert all(c in out for c in ("fit", "add-model", "route", "info"))


def _console_script(name: str) -> str:
    """The console script installed with *this* interpreter's environment.

    The README runs the tests as ``.venv/bin/python -m pytest`` without activating the venv, so the
    venv's ``bin`` is not on ``PATH``; looking the script up on ``PATH`` would find nothing on a fresh
    machine, or worse, a ``unirouter`` installed elsewhere by hand.
    """
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, scripts / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    raise AssertionError(f"the `{name}` console script is not installed in {scripts}")


def test_installed_entry_point_runs(fitted_dir):
    exe = _console_script("unirouter")
    done = subprocess.run(
        [exe, "info", str(fitted_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["class"] == "UniRouter"
    bad = subprocess.run(
        [exe, "info", str(fitted_dir.parent / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        bad.returncode == 2
        and "unirouter info: error:" in bad.stderr
        and "Traceback" not in bad.stderr
    )


# -- bad input ------------------------------------------------------------------------------------
def test_fit_bad_input_exits_2(mini, tmp_path, capsys):
    data, out = str(mini[0]), str(tmp_path / "r")
    assert "give --data DIR" in fails(capsys, "fit", "--out", out)
    assert "does not exist" in fails(
        capsys, "fit", "--data", str(tmp_path / "nowhere"), "--out", out
    )
    assert "n_clusters must be an int >= 1" in fails(
        capsys, "fit", "--data", data, "--out", out, "--n-clusters", "0", "--quiet"
    )
    assert "larger than the number of training prompts" in fails(
        capsys, "fit", "--data", data, "--out", out, "--n-clusters", "5000", "--quiet"
    )
    assert "fractions must be positive" in fails(
        capsys, "fit", "--data", data, "--out", out, "--val-fraction", "1.5"
    )
    assert not (tmp_path / "r").exists()  # nothing written on failure


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--data", "x"], "the following arguments are required: --out"),
        (["fit", "--out", "x", "--method", "magic"], "invalid choice: 'magic'"),
        (["route"], "the following arguments are required: router, prompt"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_add_model_bad_input_exits_2(router_dir, capsys):
    n = UniRouter.load(router_dir).n_validation_
    d = router_dir.parent
    (d / "short.txt").write_text("1\n" * (n - 1))
    (d / "big.txt").write_text("2\n" * n)
    (d / "words.txt").write_text("yes\n" * n)
    (d / "broken.json").write_text("[1, 0,")
    (d / "ok.txt").write_text("1\n" * n)
    before = (router_dir / "router.json").read_bytes()
    r = str(router_dir)
    assert f"has {n - 1} entries but the validation set has {n} prompts" in fails(
        capsys,
        "add-model",
        r,
        "m",
        "--correctness",
        str(d / "short.txt"),
        "--cost",
        "1",
    )
    assert "must lie in [0, 1]. Got 2.0 at position 0" in fails(
        capsys, "add-model", r, "m", "--correctness", str(d / "big.txt"), "--cost", "1"
    )
    assert "'yes' is not a number" in fails(
        capsys,
        "add-model",
        r,
        "m",
        "--correctness",
        str(d / "words.txt"),
        "--cost",
        "1",
    )
    assert "broken.json: could not read correctness values" in fails(
        capsys,
        "add-model",
        r,
        "m",
        "--correctness",
        str(d / "broken.json"),
        "--cost",
        "1",
    )
    assert "does not exist" in fails(
        capsys, "add-model", r, "m", "--correctness", str(d / "none.txt"), "--cost", "1"
    )
    assert "exactly one of --cost" in fails(
        capsys, "add-model", r, "m", "--correctness", str(d / "ok.txt")
    )
    assert "finite number >= 0. Got -1.0" in fails(
        capsys, "add-model", r, "m", "--correctness", str(d / "ok.txt"), "--cost", "-1"
    )
    assert "router.json is missing" in fails(
        capsys,
        "add-model",
        str(d),
        "m",
        "--correctness",
        str(d / "ok.txt"),
        "--cost",
        "1",
    )
    assert (router_dir / "router.json").read_bytes() == before


def test_route_and_info_bad_input_exits_2(fitted_dir, tmp_path, capsys):
    r = str(fitted_dir)
    assert "is not registered" in fails(
        capsys, "route", r, "Which option?", "--models", "ghost-model"
    )
    assert "cost_weight must be a finite number >= 0" in fails(
        capsys, "route", r, "Which option?", "--cost-weight", "-1"
    )
    assert "empty or whitespace" in fails(capsys, "route", r, "   ")
    assert "not a directory holding a saved router" in fails(
        capsys, "route", str(tmp_path / "nope"), "hi"
    )
    assert "not a directory holding a saved router" in fails(
        capsys, "info", str(tmp_path / "nope")
    )
