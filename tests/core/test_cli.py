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
from unirouter.cli.commands import main
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
    assert "already exists; pass --overwrite" in err
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
    assert "predicted quality" in lines[0] and "expected cost" in lines[0]
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


@pytest.mark.parametrize("command", [None, "fit", "add-model", "validation-set", "route", "info"])
def test_help_of_each_command(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert out.startswith(f"usage: unirouter{'' if command is None else ' ' + command}")
    if command is None:
        assert all(c in out for c in ("fit", "add-model", "validation-set", "route", "info"))


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
    assert "--n-clusters must be an int >= 1" in fails(
        capsys, "fit", "--data", data, "--out", out, "--n-clusters", "0", "--quiet"
    )
    assert "larger than the number of training prompts" in fails(
        capsys, "fit", "--data", data, "--out", out, "--n-clusters", "5000", "--quiet"
    )
    assert "--val-fraction must lie strictly between 0 and 1" in fails(
        capsys, "fit", "--data", data, "--out", out, "--val-fraction", "1.5"
    )
    assert not (tmp_path / "r").exists()  # nothing written on failure


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--data", "x"], "the following arguments are required: --out"),
        (["fit", "--out", "x", "--method", "magic"], "invalid choice: 'magic'"),
        (["route"], "the following arguments are required: router"),
        (["route", "r", "hi", "--budget", "1", "--cost-weight", "2"], "not allowed with argument"),
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
    assert "--cost-weight must be a finite number >= 0" in fails(
        capsys, "route", r, "Which option?", "--cost-weight", "-1"
    )
    assert "empty or whitespace" in fails(capsys, "route", r, "   ")
    assert "not a directory holding a saved router" in fails(
        capsys, "route", str(tmp_path / "nope"), "hi"
    )
    assert "not a directory holding a saved router" in fails(
        capsys, "info", str(tmp_path / "nope")
    )


# -- issue 13: budgets, operating points, pre-flight checks, wording, pipes ------------------------
def _route_json(capsys, *argv: str) -> list[dict]:
    code, out, err = run(capsys, "route", *argv, "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.strip().splitlines()]


def test_route_budget_is_calibrated_on_the_validation_prompts(fitted_dir, mini, embedder, capsys):
    r = UniRouter.load(fitted_dir, embedder=embedder)
    gamma, cost, _ = r.predict(r.validation_set_.prompts)
    most = float(cost[np.arange(len(cost)), gamma.argmin(1)].mean())  # lambda = 0
    budget = 0.5 * most
    prompts = [t.replace("\n", " ") for t in mini[1].texts[:3]]
    recs = _route_json(capsys, str(fitted_dir), *prompts, "--budget", str(budget))
    lam = r.calibrate(budget=budget)
    assert lam > 0 and all(rec["cost_weight"] == pytest.approx(lam) for rec in recs)
    assert all(rec["calibrated_for"] == {"budget": budget} for rec in recs)
    expected = r.route_batch(prompts, cost_weight=lam)
    assert [rec["model"] for rec in recs] == [d.model for d in expected]
    for rec, d in zip(recs, expected):
        assert rec["predicted_quality"] == pytest.approx(1 - d.chosen_predicted_error, abs=1e-6)
        assert rec["chosen_expected_cost"] == pytest.approx(d.chosen_expected_cost)
    # the calibrated weight meets the budget on the validation prompts (what the user asked for)
    rows = np.arange(len(cost))
    pick = np.argmin(gamma + lam * cost + 1e-9 * cost / cost.max(), axis=1)
    assert cost[rows, pick].mean() <= budget * (1 + 1e-9)
    # the stderr line says what the weight gives; --quiet keeps only the decisions
    code, out, err = run(capsys, "route", str(fitted_dir), prompts[0], "--budget", str(budget))
    assert code == 0 and f"meets --budget {budget:g}" in err and "predicted quality" in err
    assert out.count("\n") == 1 and "\tpredicted quality " in out and "\texpected cost " in out
    code, out, err = run(capsys, "route", str(fitted_dir), prompts[0], "--budget", str(budget), "--quiet")
    assert code == 0 and err == "" and out.count("\n") == 1


def test_route_quality_floor_and_top_share(fitted_dir, embedder, capsys):
    r = UniRouter.load(fitted_dir, embedder=embedder)
    rec = _route_json(capsys, str(fitted_dir), "Which gas do plants absorb?", "--quality-floor", "0.5")[0]
    assert rec["cost_weight"] == pytest.approx(r.calibrate(quality_floor=0.5))
    rest = ",".join(m for m in r.models_ if m != r.models_[0])
    rec = _route_json(capsys, str(fitted_dir), "Which gas do plants absorb?", "--max-top-share", "0", "--models", rest)[0]
    assert rec["cost_weight"] == pytest.approx(r.calibrate(max_top_share=0.0, models=rest.split(",")))
    assert r.models_[0] not in rec["ranked"]


def test_route_target_errors_speak_cli(fitted_dir, capsys):
    r = str(fitted_dir)
    err = fails(capsys, "route", r, "hi", "--budget", "1e-12")
    assert "--budget 1e-12 is below the cheapest routing's mean cost" in err and "validation prompts" in err
    assert "--quality-floor 1.0000 is above the best predicted accuracy" in fails(capsys, "route", r, "hi", "--quality-floor", "1")
    assert "--budget must be a finite number > 0" in fails(capsys, "route", r, "hi", "--budget", "0")
    assert "--max-top-share must be a finite number in [0, 1]" in fails(capsys, "route", r, "hi", "--max-top-share", "2")


def test_info_shows_accuracy_cost_and_operating_points(fitted_dir, embedder, capsys):
    code, out, _ = run(capsys, "info", str(fitted_dir))
    assert code == 0 and "val. accuracy" in out and "mean cost/query" in out and "operating points" in out
    code, out, _ = run(capsys, "info", str(fitted_dir), "--json")
    doc = json.loads(out)
    r = UniRouter.load(fitted_dir, embedder=embedder)
    for s in doc["model_summaries"]:
        p = r.get_profile(s["name"])
        assert s["validation_accuracy"] == pytest.approx(p.accuracy, abs=1e-4) and s["cost_per_query"] == p.cost_per_query
    points = doc["operating_points"]
    assert 2 <= len(points) <= 7 and points[0]["cost_weight"] == 0.0
    lams = [p["cost_weight"] for p in points]
    assert lams == sorted(lams) and [p["cost_per_query"] for p in points] == sorted((p["cost_per_query"] for p in points), reverse=True)
    # every row is exactly what routing the validation prompts at that cost weight gives
    for p in points:
        ds = r.route_batch(r.validation_set_.prompts, cost_weight=p["cost_weight"])
        assert np.mean([d.chosen_expected_cost for d in ds]) == pytest.approx(p["cost_per_query"], rel=1e-9)
        assert np.mean([1 - d.chosen_predicted_error for d in ds]) == pytest.approx(p["predicted_quality"], abs=1e-9)
    # the table's budget column round-trips through --budget
    rec = _route_json(capsys, str(fitted_dir), "hi there", "--budget", repr(points[-1]["cost_per_query"] * 1.000001))[0]
    assert rec["cost_weight"] <= points[-1]["cost_weight"] * 1.0001


def test_validation_set_and_add_model_loop(router_dir, capsys):
    r = UniRouter.load(router_dir)
    code, out, _ = run(capsys, "validation-set", str(router_dir))
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert code == 0 and [x["id"] for x in rows] == r.validation_set_.ids
    assert [x["prompt"] for x in rows] == r.validation_set_.prompts and "reference" in rows[0]
    path = router_dir.parent / "val.csv"
    code, _, err = run(capsys, "validation-set", str(router_dir), "--out", str(path))
    assert code == 0 and f"wrote {len(rows)} validation prompts" in err and "unirouter add-model" in err
    before = path.read_bytes()
    err = fails(capsys, "validation-set", str(router_dir), "--out", str(path))
    assert "already exists; pass --overwrite" in err
    assert path.read_bytes() == before  # never overwritten without --overwrite
    with open(path, encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    graded = [{**row, "correctness": str(k % 2)} for k, row in enumerate(table)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(graded[0]))
        w.writeheader()
        w.writerows(graded)
    code, _, _ = run(capsys, "add-model", str(router_dir), "graded", "--correctness", str(path), "--cost", "0.001")
    assert code == 0
    scores = UniRouter.load(router_dir).get_profile("graded").scores
    np.testing.assert_array_equal(scores, [k % 2 for k in range(len(table))])


def test_messages_speak_cli_not_python(fitted_dir, router_dir, mini, tmp_path, capsys):
    name = UniRouter.load(router_dir).models_[0]
    n = UniRouter.load(router_dir).n_validation_
    (tmp_path / "ok.txt").write_text("1\n" * n)
    errs = [
        fails(capsys, "fit", "--data", str(mini[0]), "--out", str(fitted_dir), "--quiet"),
        fails(capsys, "add-model", str(router_dir), name, "--correctness", str(tmp_path / "ok.txt"), "--cost", "1"),
        fails(capsys, "route", str(fitted_dir), "hi", "--exclude", ",".join(mini[1].model_names)),
    ]
    assert "pass --overwrite" in errs[0] and "pass --replace" in errs[1] and "--models/--exclude" in errs[2]
    for err in errs:
        assert "=True" not in err and "add_model(" not in err and "models=" not in err
        assert err.count("\n") == 1  # one line


def _forbid_embedding(monkeypatch) -> None:
    """Make any embedding (or model load) fail loudly: what runs before it is the pre-flight part."""
    from unirouter.embedding.embedders import SentenceTransformerEmbedder

    def refuse(*_a, **_k):
        raise AssertionError("the embedding model was used before the input was checked")

    monkeypatch.setattr(SentenceTransformerEmbedder, "embed", refuse)
    monkeypatch.setattr(SentenceTransformerEmbedder, "_load", refuse)


def test_fit_checks_everything_before_embedding(mini, fitted_dir, tmp_path, capsys, monkeypatch):
    _forbid_embedding(monkeypatch)
    data = str(mini[0])
    user_dir = tmp_path / "my-notes"
    user_dir.mkdir()
    (user_dir / "keep.txt").write_text("precious")
    assert "already exists; pass --overwrite" in fails(capsys, "fit", "--data", data, "--out", str(fitted_dir))
    assert "is not a saved unirouter router; refusing" in fails(capsys, "fit", "--data", data, "--out", str(user_dir), "--overwrite")
    assert (user_dir / "keep.txt").read_text() == "precious"
    out = str(tmp_path / "r")
    assert "larger than the number of training prompts (270)" in fails(capsys, "fit", "--data", data, "--out", out, "--n-clusters", "271")
    assert "larger than the number of training prompts (50)" in fails(
        capsys, "fit", "--data", data, "--out", out, "--n-clusters", "51", "--max-train", "50"
    )
    assert "--max-train must be an int >= 1" in fails(capsys, "fit", "--data", data, "--out", out, "--max-train", "0")
    assert "--min-coverage must be a finite number in [0, 1]" in fails(capsys, "fit", "--data", data, "--out", out, "--min-coverage", "2")
    assert "--prior-strength must be a finite number >= 0" in fails(capsys, "fit", "--data", data, "--out", out, "--prior-strength", "nan")
    assert "not both" in fails(capsys, "fit", "--data", data, "--prompts", data, "--out", out)
    assert "--seed must be an int >= 0" in fails(capsys, "fit", "--data", data, "--out", out, "--seed", "-1")
    assert "needs --data DIR" in fails(capsys, "fit", "--prompts", data, "--validation", data, "--out", out, "--method", "learned")
    assert "does not exist" in fails(capsys, "fit", "--prompts", str(tmp_path / "none.txt"), "--validation", data, "--out", out)
    (tmp_path / "train.txt").write_text("a question\nanother question\n")
    (tmp_path / "val.jsonl").write_text('{"prompt": "same"}\n{"prompt": "same"}\n')
    err = fails(capsys, "fit", "--prompts", str(tmp_path / "train.txt"), "--validation", str(tmp_path / "val.jsonl"), "--out", out, "--n-clusters", "2")
    assert "repeats prompt 0" in err and "from the validation file" in err
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    assert "is not a writable directory" in fails(capsys, "fit", "--data", data, "--out", str(blocked / "r"))
    assert not (tmp_path / "r").exists()


def test_fit_reports_dropped_duplicates_and_counts(mini, tmp_path, capsys):
    from unirouter import load_dataset
    from unirouter.data.datasets import split_indices

    _, ds = mini
    rows = [i - (i % 2) for i in range(len(ds))]  # every odd row repeats the text of the row before
    dup = ds.subset(rows)
    dup.ids[:] = [f"q{i}" for i in range(len(dup))]
    data = write_routing_dataset(dup, tmp_path / "dup")
    loaded = load_dataset(data)
    _, va = split_indices(len(loaded), (0.6, 0.4), random_state=0)
    texts = [loaded.texts[i] for i in va]
    n_dropped = len(texts) - len(set(texts))
    assert n_dropped > 0
    code, out, err = run(capsys, "fit", "--data", str(data), "--out", str(tmp_path / "r"), "--n-clusters", "3", "--val-fraction", "0.4")
    assert code == 0
    assert f"validation: {n_dropped} of {len(texts)} prompts repeat an earlier prompt's text and were dropped" in err
    assert "all 150 distinct prompts are in the embedding cache" in err
    assert f"/ {len(texts) - n_dropped} validation prompts ({n_dropped} repeated validation prompt" in out
    assert UniRouter.load(tmp_path / "r").n_validation_ == len(texts) - n_dropped


def test_fit_announces_prompts_to_embed_and_time(mini, tmp_path, capsys):
    import argparse

    from unirouter.cli.commands import _announce_embedding
    from unirouter.embedding.embedders import SentenceTransformerEmbedder

    texts = [f"Short question number {i}: which model should answer it?" for i in range(20)]  # short: fast to embed
    emb = SentenceTransformerEmbedder(cache=tmp_path / "cache")
    _announce_embedding(argparse.Namespace(quiet=False), emb, texts + texts[:3], sample=4)
    err = capsys.readouterr().err
    assert "embedding 20 prompts; measuring the speed on a sample first" in err
    assert "for the remaining 16 prompts on this machine" in err and "prompts/s" in err and "--max-train" in err
    emb.embed(texts)  # what fit does next
    _announce_embedding(argparse.Namespace(quiet=False), emb, texts + ["a new question?"], sample=4)
    assert "embedding 1 prompt (20 already cached)..." in capsys.readouterr().err
    _announce_embedding(argparse.Namespace(quiet=False), emb, texts[:4], sample=4)
    assert "all 4 distinct prompts are in the embedding cache" in capsys.readouterr().err


def test_route_checks_the_router_before_loading_the_model(router_dir, mini, tmp_path, capsys, monkeypatch):
    code, _, _ = run(capsys, "fit", "--data", str(mini[0]), "--out", str(tmp_path / "empty"), "--n-clusters", "3", "--no-models", "--quiet")
    assert code == 0
    _forbid_embedding(monkeypatch)
    err = fails(capsys, "route", str(tmp_path / "empty"), "hi")
    assert "has no models yet; add one with `unirouter add-model" in err
    code, out, _ = run(capsys, "info", str(tmp_path / "empty"))
    assert code == 0 and "models     0  (add one: unirouter add-model" in out and "operating points" not in out
    assert "is not registered" in fails(capsys, "route", str(router_dir), "hi", "--models", "ghost")
    assert "must contain text" in fails(capsys, "route", str(router_dir), "ok", "  ")
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n \n"))
    assert "stdin held no prompt" in fails(capsys, "route", str(router_dir))


def test_route_help_says_to_batch_prompts(capsys):
    with pytest.raises(SystemExit):
        main(["route", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "pass them together as arguments, or pipe them on stdin" in out and "--budget" in out


def test_route_reads_stdin_without_a_dash(fitted_dir, mini, capsys, monkeypatch):
    prompts = [" ".join(t.split()) for t in mini[1].texts[3:5]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(prompts) + "\n"))
    recs = _route_json(capsys, str(fitted_dir))
    assert [r["prompt"] for r in recs] == prompts


def test_pipes_quiet_and_warnings_in_a_real_process(fitted_dir, mini, tmp_path):
    """The installed command: a closed pipe (`| head`) exits 141 without a traceback; --quiet prints no
    loading bar; a library warning is one line without its source line."""
    import os

    exe = _console_script("unirouter")
    for argv in (["validation-set", str(fitted_dir)], ["info", str(fitted_dir), "--json"]):
        p = subprocess.Popen([exe, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()  # the reader is gone before anything is written, as after `head -n 0`
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141 and err == "", err
    shell = subprocess.run(
        f"{exe} validation-set {fitted_dir} | head -n 1", shell=True, capture_output=True, text=True, timeout=120, check=False
    )
    assert shell.returncode == 0 and json.loads(shell.stdout)["prompt"] and "Traceback" not in shell.stderr
    env = {**os.environ, "UNIROUTER_CACHE_DIR": str(tmp_path / "cold")}  # nothing cached: the model loads
    done = subprocess.run([exe, "route", str(fitted_dir), "--quiet"], input="What is 2 + 2?\n", capture_output=True,
                          text=True, timeout=300, check=False, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.count("\n") == 1 and "predicted quality" in done.stdout
    fit = subprocess.run([exe, "fit", "--data", str(mini[0]), "--out", str(tmp_path / "r"), "--n-clusters", "40", "--quiet"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert fit.returncode == 0, fit.stderr
    lines = fit.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unirouter fit: warning: ") and "clusters hold no validation prompt" in lines[0]


def test_evaluate_output_reads_without_a_manual(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    helptext = capsys.readouterr().out
    assert "vs ZeroRouter (points)" in helptext and "QNC not reached" in helptext and "method.md" not in helptext
    out = tmp_path / "r.json"
    code, printed, _ = run(
        capsys, "evaluate", "--data", str(data_dir / "routerbench_subset"), "--trials", "1", "--methods", "zero", "knn", "kmeans",
        "best_single", "--k-grid", "5", "--knn-grid", "10", "--json", str(out), "--plot", str(tmp_path / "r.png"), "--no-progress",
    )
    assert code == 0 and "vs ZeroRouter (points)" in printed and "gap closed" not in printed and "clairv" not in printed
    doc = json.loads(out.read_text())
    m = doc["per_trial"][0]["metrics"]
    row = next(line for line in printed.splitlines() if line.startswith("UniRoute K-Means"))
    assert f"{100 * (m['kmeans']['audc'] - m['zero']['audc']):+.1f}" in row
    # one trial: the mean curve is that trial's curve, read on the grid (flat outside its points)
    for name in ("zero", "knn", "kmeans"):
        c0, cm = doc["curves_trial0"][name], doc["curves_mean"][name]
        np.testing.assert_allclose(cm["quality"], np.interp(cm["cost"], c0["cost"], c0["quality"]), atol=2e-6)
    assert "best_single" not in doc["curves_mean"] and (tmp_path / "r.png").stat().st_size > 1000


def test_evaluate_checks_its_outputs_before_the_run(data_dir, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    for flag in ("--json", "--plot"):
        code, _, err = run(capsys, "evaluate", "--data", str(data_dir / "routerbench_subset"), flag, str(blocked / "out"), "--no-progress")
        assert code == 2 and f"{flag} {blocked / 'out'}: cannot write there" in err and "Traceback" not in err


def test_system_errors_are_one_line(router_dir, tmp_path, capsys):
    (tmp_path / "dir.csv").mkdir()  # exists (refused without --overwrite), with it: cannot be opened as a file
    code, _, err = run(capsys, "validation-set", str(router_dir), "--out", str(tmp_path / "dir.csv"), "--overwrite")
    assert code == 1 and err.startswith("unirouter validation-set: error: [Errno 21] Is a directory") and err.count("\n") == 1
