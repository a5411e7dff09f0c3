"""Evaluation and traffic replay on Ray (issue 21): same results as in process, on a local Ray.

The Ray tests start one local Ray runtime (2 CPUs, a small object store) for the module and skip
cleanly when Ray is not installed. Every test runs under an alarm so a stuck cluster fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unirouter.exceptions import DatasetError, InvalidInputError, PersistenceError

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 240  # per test; the slowest (replay on 2 actors) takes ~40 s here


@pytest.fixture(autouse=True)
def _bounded():
    def fail(*_):
        raise TimeoutError(f"test took more than {SECONDS} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


def test_import_unirouter_never_imports_ray():
    code = (
        "import sys, unirouter, unirouter.evaluation.executors, unirouter.evaluation.replay, unirouter.cli.commands, unirouter.evaluation;"
        "unirouter.cli.commands.build_parser();"
        "assert 'ray' not in sys.modules, 'ray imported';"
        "assert 'pyarrow' not in sys.modules, 'pyarrow imported'"
    )
    env = {"PYTHONPATH": f"{ROOT / 'core'}:{ROOT}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr


def test_ray_executor_checks_its_arguments():
    from unirouter.evaluation.executors import InProcessExecutor, RayExecutor

    with pytest.raises(InvalidInputError, match="num_workers"):
        RayExecutor(num_workers=0)
    with pytest.raises(InvalidInputError, match="num_cpus_per_task"):
        RayExecutor(num_cpus_per_task=0)
    assert list(InProcessExecutor().map_unordered(lambda s, x: s + x, 10, [1, 2])) == [(0, 11), (1, 12)]


# -- evaluation ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_data(mmlu_small, mmlu_embeddings):
    from unirouter.evaluation.protocols import PreparedData

    parts = ["train", "val", "test"]
    return PreparedData(
        name="mmlu_small",
        model_names=list(mmlu_small["train"].model_names),
        x=np.concatenate([mmlu_embeddings[p] for p in parts]),
        quality=np.concatenate([mmlu_small[p].correctness for p in parts]),
        cost=np.concatenate([mmlu_small[p].cost for p in parts]),
    )


def _same_trials(a, b):
    assert [t["trial"] for t in a.trials] == [t["trial"] for t in b.trials] == list(range(len(a.trials)))
    for ta, tb in zip(a.trials, b.trials):
        assert ta["seed"] == tb["seed"] and ta["test_models"] == tb["test_models"]
        assert ta["params"] == tb["params"]
        assert ta["grid"] == tb["grid"]
        assert ta["metrics"].keys() == tb["metrics"].keys()
        for m in ta["metrics"]:
            for k, v in ta["metrics"][m].items():
                assert v == tb["metrics"][m][k] or (np.isnan(v) and np.isnan(tb["metrics"][m][k])), (m, k)
    assert a.curves == b.curves


def test_ray_trials_equal_in_process_trials(local_ray, small_data):
    from unirouter.evaluation import run_protocol
    from unirouter.evaluation.executors import RayExecutor

    kw = dict(
        trials=2,
        methods=["zero", "knn", "kmeans", "learned", "oracle", "clairvoyant_knn", "best_single"],
        param_grids={"n_clusters": [4, 8], "n_neighbors": [10]},
        method_params={"learned": {"max_epochs": 5}},
        record_grid=["kmeans"],
    )
    here = run_protocol(small_data, **kw)
    seen = []
    executor = RayExecutor(num_workers=2, timeout=SECONDS)
    there = run_protocol(small_data, executor=executor, callback=lambda r: seen.append(len(r.trials)), **kw)
    assert seen == [1, 2]  # progress as each trial finishes
    _same_trials(here, there)
    assert here.summary()["kmeans"]["audc"] == there.summary()["kmeans"]["audc"]
    assert local_ray.is_initialized()  # the executor leaves a runtime it did not start alone
    executor.shutdown()
    assert local_ray.is_initialized()


def test_ray_job_errors_surface_as_the_original_error(local_ray, small_data):
    from unirouter.evaluation import register_method, run_protocol, unregister_method
    from unirouter.evaluation.executors import RayExecutor

    register_method("broken_for_ray_test", _broken_factory)
    try:
        with pytest.raises(InvalidInputError, match="broken on purpose"):
            run_protocol(small_data, trials=2, methods=["zero", "broken_for_ray_test"], executor=RayExecutor(num_workers=2, timeout=SECONDS))
    finally:
        unregister_method("broken_for_ray_test")


def _broken_factory(data, **params):
    raise InvalidInputError("broken on purpose")


def test_evaluate_cli_on_ray(local_ray, data_dir, tmp_path, capsys):
    from unirouter.cli.commands import main

    out = tmp_path / "r.json"
    common = ["evaluate", "--data", str(data_dir / "routerbench_subset"), "--trials", "2", "--methods", "zero", "knn", "kmeans", "best_single",
              "--k-grid", "5", "--knn-grid", "10", "--no-progress"]
    assert main([*common, "--ray", "--workers", "2", "--json", str(out)]) == 0
    assert main([*common, "--json", str(tmp_path / "here.json")]) == 0
    doc, here = json.loads(out.read_text()), json.loads((tmp_path / "here.json").read_text())
    assert "--ray --workers 2" in doc["command"]
    for a, b in zip(doc["per_trial"], here["per_trial"]):
        assert a["metrics"] == b["metrics"] and a["params"] == b["params"]
    capsys.readouterr()
    assert main([*common, "--workers", "2"]) == 2
    assert "--workers needs --ray" in capsys.readouterr().err


# -- replay ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def traffic(mmlu_small, tmp_path_factory):
    """A log of 60 real MMLU-Pro prompts with the model that answered (random) and its real cost."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    ds = mmlu_small["test"].subset(range(60))
    rng = np.random.default_rng(0)
    cols = rng.integers(0, len(ds.model_names), size=len(ds))
    rows = [
        {"id": f"q{i}", "prompt": ds.texts[i], "model": ds.model_names[j], "cost": float(ds.cost[i, j])}
        for i, j in enumerate(cols)
    ]
    rows[3]["model"] = "retired-model-x"  # a model the router does not know: no expected quality for it
    del rows[5]["cost"]  # a row without cost
    root = tmp_path_factory.mktemp("traffic")
    (root / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    table = pa.Table.from_pylist([{**r, "cost": r.get("cost")} for r in rows])
    pq.write_table(table, root / "log.parquet", row_group_size=40)
    return root, rows


def _policies():
    from unirouter.evaluation.replay import ReplayPolicy

    return [
        ReplayPolicy(name="quality", cost_weight=0.0),
        ReplayPolicy(name="thrifty", cost_weight=1000.0),
        ReplayPolicy(name="budget", budget=0.0008),
        ReplayPolicy(name="two", cost_weight=0.0, models=("gemma-7b", "gpt-4o-2024-05-13")),
    ]


def _read_decisions(path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_in_process_routes_as_the_router_does(fitted_router, traffic, tmp_path):
    from unirouter.evaluation.replay import replay

    root, rows = traffic
    pols = _policies()
    pols = [p for p in pols if p.models is None or set(p.models) <= set(fitted_router.models_)]
    out = tmp_path / "d.jsonl"
    # The router's own (disk-cached) embedder: the rows are checked against route_batch, which embeds too.
    doc = replay(fitted_router, root / "log.jsonl", policies=pols, output=out, summary_path=tmp_path / "s.json", batch_size=16, embedder=fitted_router.embedder_)
    assert doc["prompts"] == len(rows) and doc["engine"] == "in-process"
    assert json.loads((tmp_path / "s.json").read_text())["prompts"] == len(rows)
    dec = _read_decisions(out)
    assert len(dec) == len(rows) * len(pols)
    prompts = [r["prompt"] for r in rows]
    for p in pols:
        mine = [d for d in dec if d["policy"] == p.name]
        assert [d["row"] for d in mine] == list(range(len(rows)))
        assert [d["id"] for d in mine] == [r["id"] for r in rows]
        lam = doc["policies"][p.name]["cost_weight"]
        want = fitted_router.route_batch(prompts, cost_weight=lam, models=list(p.models) if p.models else None)
        assert [d["model"] for d in mine] == [w.model for w in want]
        np.testing.assert_allclose([d["expected_cost"] for d in mine], [w.chosen_expected_cost for w in want], rtol=1e-9)
        e = doc["policies"][p.name]
        assert abs(sum(e["share"].values()) - 1) < 1e-12
        np.testing.assert_allclose(e["expected_spend"], sum(d["expected_cost"] for d in mine), rtol=1e-9)
    pq_ = doc["policies"]
    assert pq_["quality"]["expected_quality"] >= pq_["thrifty"]["expected_quality"]
    assert pq_["thrifty"]["expected_spend"] < pq_["quality"]["expected_spend"]
    assert pq_["budget"]["cost_weight"] > 0
    lg = doc["logged"]
    assert lg["prompts_with_cost"] == len(rows) - 1
    np.testing.assert_allclose(lg["spend"], sum(r.get("cost", 0.0) for r in rows), rtol=1e-12)
    assert lg["prompts_with_known_model"] == len(rows) - 1
    saving = pq_["thrifty"]["vs_logged"]["saving"]
    costed = sum(d["expected_cost"] for d in dec if d["policy"] == "thrifty" and d["logged_cost"] is not None)
    np.testing.assert_allclose(saving, lg["spend"] - costed, rtol=1e-9)


def test_replay_on_ray_data_equals_in_process(local_ray, fitted_router, traffic, tmp_path):
    from unirouter.evaluation.replay import replay

    root, rows = traffic
    pols = [p for p in _policies() if p.models is None]
    # The router's disk-cached embedder in both (the actors get a copy): the log was embedded by the test
    # above, so this compares the engines, not two embedding runs. The uncached default runs in test_replay_cli.
    emb = fitted_router.embedder_
    here = replay(fitted_router, root / "log.parquet", policies=pols, output=tmp_path / "here.parquet", batch_size=16, embedder=emb)
    there = replay(fitted_router, root / "log.jsonl", policies=pols, output=tmp_path / "there.parquet", batch_size=16, ray=True, num_actors=2, embedder=emb)
    assert there["engine"] == "ray (2 actors)"
    a, b = _read_decisions(tmp_path / "here.parquet"), _read_decisions(tmp_path / "there.parquet")
    assert len(a) == len(b) == len(rows) * len(pols)
    for x, y in zip(a, b):
        assert {k: x[k] for k in ("row", "id", "policy", "model", "logged_model")} == {k: y[k] for k in ("row", "id", "policy", "model", "logged_model")}
        np.testing.assert_allclose([x["expected_quality"], x["expected_cost"]], [y["expected_quality"], y["expected_cost"]], rtol=1e-5)
        assert (x["logged_cost"] is None) == (y["logged_cost"] is None)
    for name in here["policies"]:
        assert here["policies"][name]["share"] == there["policies"][name]["share"]
        np.testing.assert_allclose(here["policies"][name]["expected_spend"], there["policies"][name]["expected_spend"], rtol=1e-6)
    assert here["logged"]["share"] == there["logged"]["share"]
    # a bad row fails in an actor and surfaces as our typed error, not as a Ray wrapper
    (tmp_path / "empty.jsonl").write_text('{"prompt": "What is 2 + 2?"}\n{"prompt": "  "}\n')
    with pytest.raises(DatasetError, match="empty prompt"):
        replay(fitted_router, tmp_path / "empty.jsonl", ray=True, num_actors=1, embedder=emb)


def test_replay_refuses_bad_logs_and_existing_outputs(fitted_router, traffic, tmp_path):
    from pydantic import ValidationError

    from unirouter.evaluation.replay import ReplayPolicy, replay

    root, _ = traffic
    (tmp_path / "bad.jsonl").write_text('{"text": "hello"}\n')
    with pytest.raises(DatasetError, match="line 1 has no field 'prompt'"):
        replay(fitted_router, tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"prompt": "hello"}\n{"prompt": \n')
    with pytest.raises(DatasetError, match="line 2 is not JSON"):
        replay(fitted_router, tmp_path / "broken.jsonl")
    (tmp_path / "empty.jsonl").write_text('{"prompt": "hello"}\n{"prompt": ""}\n')
    with pytest.raises(DatasetError, match="empty prompt"):
        replay(fitted_router, tmp_path / "empty.jsonl", output=tmp_path / "never.jsonl")
    assert not (tmp_path / "never.jsonl").exists() and not list(tmp_path.glob(".never*"))  # no half-written output
    with pytest.raises(DatasetError, match="does not exist"):
        replay(fitted_router, tmp_path / "missing.jsonl")
    (tmp_path / "log.csv").write_text("prompt\nhi\n")
    with pytest.raises(DatasetError, match=".jsonl"):
        replay(fitted_router, tmp_path / "log.csv")
    keep = tmp_path / "keep.jsonl"
    keep.write_text("precious\n")
    with pytest.raises(PersistenceError, match="exists"):
        replay(fitted_router, root / "log.jsonl", output=keep)
    assert keep.read_text() == "precious\n"
    with pytest.raises(ValidationError, match="not both"):
        ReplayPolicy(name="x", cost_weight=1.0, budget=0.1)
    with pytest.raises(ValidationError, match=">= 0"):
        ReplayPolicy(name="x", cost_weight=-1.0)
    with pytest.raises(InvalidInputError, match="distinct"):
        replay(fitted_router, root / "log.jsonl", policies=[ReplayPolicy(name="a"), ReplayPolicy(name="a")])


def test_replay_cli(fitted_router, traffic, tmp_path, capsys):
    from unirouter.cli.commands import main

    _, rows = traffic
    rows = rows[:12]  # the CLI embeds without cache: keep it short
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    fitted_router.save(tmp_path / "router")
    out, summary = tmp_path / "d.parquet", tmp_path / "s.json"
    argv = ["replay", str(tmp_path / "router"), str(log), "--out", str(out), "--summary", str(summary),
            "--cost-weight", "0", "1000", "--budget", "0.0008", "--calibration-prompts", "6", "--batch-size", "16", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "cost_weight=1000" in printed and "budget=0.0008" in printed and "saving" in printed
    doc = json.loads(summary.read_text())
    assert set(doc["policies"]) == {"cost_weight=0", "cost_weight=1000", "budget=0.0008"}
    assert len(_read_decisions(out)) == 3 * len(rows)
    assert main(argv) == 2  # outputs exist: refused, not overwritten
    assert "exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_routers_and_embedders_travel_to_workers_by_pickle(fitted_router, mmlu_embeddings):
    """What Ray ships to actors: the router and its embedder, without the loaded model or locks."""
    import pickle

    emb = fitted_router.embedder_
    emb.embed(["load the model"])  # loaded, with a lock
    copy = pickle.loads(pickle.dumps(fitted_router))
    assert copy.embedder_._model is None and copy.embedder_.name == emb.name
    x = mmlu_embeddings["test"][:20]
    assert copy.models_ == fitted_router.models_
    np.testing.assert_array_equal(copy.choose(x, 5.0), fitted_router.choose(x, 5.0))
    np.testing.assert_allclose(copy.embedder_.embed(["What is 2 + 2?"]), emb.embed(["What is 2 + 2?"]), atol=1e-6)
