"""Metrics (method.md 3.1) checked by hand and by brute force; protocols on real data; the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from unirouter.routers.base import _argmin_rows
from unirouter.evaluation import (
    OperatingPoints,
    audc,
    best_single_point,
    curve_metrics,
    deferral_curve,
    envelope_breakpoints,
    gap_closed,
    normalising_cost,
    operating_points,
    peak_quality,
    qnc,
)
from unirouter.exceptions import DatasetError, InvalidInputError

# Three models on one prompt with graded quality: A cheap/weak, B middle, C expensive/best.
Q3 = np.array([[0.4, 0.8, 0.9]])
C3 = np.array([[0.1, 0.5, 1.0]])


def test_three_models_points_hull_audc_qnc_by_hand():
    pts = operating_points(1.0 - Q3, C3, quality=Q3, realised_cost=C3)
    # lam = 0 -> C; C -> B at lam = (0.2 - 0.1) / (1 - 0.5) = 0.2; B -> A at (0.6 - 0.2) / 0.4 = 1.0
    np.testing.assert_allclose(pts.cost, [1.0, 0.5, 0.1])
    np.testing.assert_allclose(pts.quality, [0.9, 0.8, 0.4])
    np.testing.assert_allclose(pts.cost_weight, [0.0, 0.2, 1.0])
    assert pts.cost_scale == 1.0
    curve = deferral_curve(pts)
    np.testing.assert_allclose(curve.cost, [0.1, 0.5, 1.0])
    np.testing.assert_allclose(curve.quality, [0.4, 0.8, 0.9])
    # flat 0.4 on [0, 0.1] = 0.04; 0.4 * (0.4 + 0.8) / 2 = 0.24; 0.5 * (0.8 + 0.9) / 2 = 0.425
    assert audc(curve) == pytest.approx(0.705)
    assert audc(curve, upper=0.5) == pytest.approx(0.28)  # not rescaled
    assert qnc(curve, 0.9) == (pytest.approx(1.0), True)
    assert qnc(curve, 0.7)[0] == pytest.approx(0.4)  # 0.1 + (0.7 - 0.4) / slope 1
    assert qnc(curve, 0.3) == (0.0, True)  # flat left of the cheapest point
    assert qnc(curve, 0.95) == (1.0, False)
    assert peak_quality(curve) == pytest.approx(0.9)
    assert curve(0.05) == pytest.approx(0.4) and curve(2.0) == pytest.approx(0.9)


def test_hull_drops_points_below_it_and_is_flat_after_the_peak():
    # D (0.3, 0.5) lies under the A-B chord (0.6 there); E (0.8, 0.95) beats C, so the curve is flat after 0.8.
    curve = deferral_curve(np.array([0.1, 0.5, 1.0, 0.3, 0.8]), np.array([0.4, 0.8, 0.9, 0.5, 0.95]))
    np.testing.assert_allclose(curve.cost, [0.1, 0.5, 0.8])
    np.testing.assert_allclose(curve.quality, [0.4, 0.8, 0.95])
    assert np.all(np.diff(curve.quality) > 0)
    expected = 0.04 + 0.24 + 0.3 * (0.8 + 0.95) / 2 + 0.2 * 0.95
    assert audc(curve) == pytest.approx(expected)
    # a single point: flat everywhere
    single = deferral_curve([0.3], [0.7])
    assert audc(single) == pytest.approx(0.7) and audc(single, upper=0.5) == pytest.approx(0.35)


def test_costs_are_normalised_by_the_most_expensive_single_model():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    rc = np.array([[2.0, 4.0], [2.0, 8.0]])  # means 2 and 6 -> C = 6
    assert normalising_cost(rc) == 6.0
    pts = operating_points(1 - q, [2.0, 6.0], quality=q, realised_cost=rc)
    assert pts.cost_scale == 6.0
    assert pts.cost.max() <= 1.0 + 1e-12


def test_missing_cells_are_masked_not_counted_as_wrong():
    q = np.array([[1.0, 1.0], [np.nan, 1.0], [0.0, 0.0]])
    rc = np.array([[1.0, 2.0], [np.nan, 2.0], [1.0, 2.0]])
    gamma = np.array([[0.0, 0.5]] * 3)  # model 0 at lam = 0 for every prompt
    pts = operating_points(gamma, [1.0, 2.0], quality=q, realised_cost=rc)
    assert pts.quality[0] == pytest.approx(0.5)  # (1 + 0) / 2 observed, not (1 + 0 + 0) / 3
    assert pts.cost[0] == pytest.approx(1.0 / 2.0)
    bs = best_single_point(q, rc)
    assert bs["model"] == 1 and bs["quality"] == pytest.approx(2 / 3)


def test_graded_quality_is_averaged():
    q = np.array([[0.25, 0.75], [0.5, 1.0]])
    pts = operating_points(1 - q, [1.0, 2.0], quality=q, realised_cost=np.ones((2, 2)) * [1.0, 2.0])
    np.testing.assert_allclose(pts.quality, [0.875, 0.375])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_exact_sweep_matches_a_brute_force_dense_grid(seed):
    rng = np.random.default_rng(seed)
    n, m = 60, 6
    gamma = rng.uniform(size=(n, m)).round(2)  # rounding makes ties
    cost = np.tile(rng.uniform(0.1, 1.0, size=m).round(2), (n, 1))
    cost[: n // 2] *= rng.uniform(0.5, 1.5, size=(n // 2, m))  # per-prompt costs for half the rows
    q = (rng.uniform(size=(n, m)) < 0.6).astype(float)
    rc = rng.uniform(0.1, 1.0, size=(n, m))
    pts = operating_points(gamma, cost, quality=q, realised_cost=rc)
    exact = set(zip(np.round(pts.cost, 12), np.round(pts.quality, 12)))

    def point(lam):
        choice = _argmin_rows(gamma, cost, lam)
        r = np.arange(n)
        return round(rc[r, choice].mean() / pts.cost_scale, 12), round(q[r, choice].mean(), 12)

    # every state of a dense grid is one of the exact points ...
    grid = np.concatenate([[0.0], np.geomspace(1e-4, 1e4, 3000)])
    brute = {point(lam) for lam in grid}
    assert brute <= exact
    # ... and every exact point is the state just after its breakpoint
    _, lam, *_ = envelope_breakpoints(gamma, cost)
    ls = np.sort(lam)
    ls = ls[np.append(True, np.diff(ls) > 1e-10 * np.maximum(1.0, ls[1:]))]  # same grouping as the sweep
    probes = np.concatenate([[0.0], (ls[:-1] + ls[1:]) / 2 if ls.size > 1 else [], [ls.max() * 2 + 1]])
    assert {point(x) for x in probes} == exact
    # the last point has every prompt on its cheapest model
    cheapest = np.argmin(cost + 1e-12 * gamma, axis=1)
    assert pts.quality[-1] == pytest.approx(q[np.arange(n), cheapest].mean())
    assert audc(deferral_curve(pts)) == pytest.approx(audc(deferral_curve(*map(np.array, zip(*brute)))), abs=0.05)


def test_curve_metrics_and_gap_closed():
    curve = deferral_curve(np.array([0.1, 0.5, 1.0]), np.array([0.4, 0.8, 0.9]))
    met = curve_metrics(curve, target=0.8)
    assert met["qnc"] == pytest.approx(0.5) and met["qnc_reached"] == 1.0
    assert gap_closed(0.62, 0.60, 0.64) == pytest.approx(0.5)
    assert np.isnan(gap_closed(0.62, 0.60, 0.60))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: operating_points(np.zeros((2, 2)), np.ones((3, 2)), quality=np.ones((2, 2)), realised_cost=np.ones((2, 2))), "shape"),
        (lambda: operating_points(np.zeros((2, 2)), [1, 2], quality=np.full((2, 2), 2.0), realised_cost=np.ones((2, 2))), r"\[0, 1\]"),
        (lambda: operating_points(np.full((2, 2), np.nan), [1, 2], quality=np.ones((2, 2)), realised_cost=np.ones((2, 2))), "finite"),
        (lambda: operating_points(np.zeros((2, 2)), [1, 2], quality=np.ones((2, 2)), realised_cost=-np.ones((2, 2))), ">= 0"),
        (lambda: normalising_cost(np.zeros((2, 2))), "positive"),
        (lambda: deferral_curve([np.nan], [0.5]), "finite"),
        (lambda: deferral_curve([0.1, 0.2], [0.5]), "same length"),
        (lambda: audc(deferral_curve([0.1], [0.5]), lower=0.5, upper=0.5), "greater"),
        (lambda: envelope_breakpoints(np.zeros((0, 3)), np.zeros((0, 3))), "at least one"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(InvalidInputError, match=match):
        call()


def test_operating_points_is_a_dataclass_with_length():
    pts = operating_points(1.0 - Q3, C3, quality=Q3, realised_cost=C3)
    assert isinstance(pts, OperatingPoints) and len(pts) == 3


# -- protocols on real data ------------------------------------------------------------------------
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


def test_unseen_models_protocol_on_real_data(small_data):
    from unirouter.evaluation import run_protocol

    res = run_protocol(
        small_data,
        trials=2,
        methods=["zero", "zero_val", "knn", "kmeans", "learned", "oracle", "clairvoyant_knn", "best_single"],
        param_grids={"n_clusters": [4, 8], "n_neighbors": [5, 25]},
        method_params={"learned": {"max_epochs": 5}},
        record_grid=["kmeans"],
    )
    doc = res.to_json()
    assert doc["trials"] == 2 and doc["n_models"] == 30 and doc["n_items"] == 700
    for key in ("zero", "knn", "kmeans", "learned", "oracle", "clairvoyant_knn"):
        entry = doc["methods"][key]
        assert {"audc", "audc50", "qnc", "peak", "gap_closed"} <= set(entry)
        assert 0 < entry["audc"]["mean"] <= entry["peak"]["mean"] <= 1
        assert entry["audc50"]["mean"] < entry["audc"]["mean"]
    assert set(doc["methods"]["best_single"]) == {"quality", "cost"}
    for t in res.trials:
        assert len(t["test_models"]) == 10
        oracle = t["metrics"]["oracle"]["audc"]
        assert all(m["audc"] <= oracle + 1e-12 for m in t["metrics"].values() if "audc" in m)
        assert t["metrics"]["zero"]["gap_closed_oracle"] == 0.0
        g = t["metrics"]["zero"]["gap_closed"]  # NaN when clairvoyant K-NN does not beat ZeroRouter
        assert g == 0.0 or np.isnan(g)
        assert t["params"]["kmeans"]["n_clusters"] in (4, 8)
        assert t["params"]["learned"]["n_clusters"] == t["params"]["kmeans"]["n_clusters"]  # shared selection
        assert set(t["grid"]["kmeans"]) == {"n_clusters=4", "n_clusters=8"}
    assert set(doc["paired"]) >= {"kmeans_vs_knn_audc_win_rate", "learned_vs_knn_audc_win_rate", "learned_vs_kmeans_audc_win_rate"}
    json.dumps(doc)  # JSON-ready (after NaN cleaning in the CLI; here no NaN keys break dumps)


def test_fixed_pool_and_a_plugged_in_method(small_data):
    from unirouter.evaluation import register_method, run_protocol, unregister_method

    seen = {}

    def always_best(data, weight=1.0):
        seen["n_test_models"] = len(data.test_models)
        err = 1.0 - np.nanmean(data.y_val, axis=0)
        n = data.x_test.shape[0]
        return np.tile(err, (n, 1)) * weight, np.tile(data.cost_val, (n, 1))

    register_method("val_global", always_best, grid={"weight": [1.0, 2.0]}, label="global")
    try:
        res = run_protocol(small_data, protocol="fixed-pool", trials=1, methods=["zero", "val_global", "oracle"])
    finally:
        unregister_method("val_global")
    assert seen["n_test_models"] == 30
    assert res.trials[0]["params"]["val_global"]["weight"] in (1.0, 2.0)
    assert res.summary()["val_global"]["audc"]["mean"] <= res.summary()["oracle"]["audc"]["mean"]


def test_protocol_bad_inputs(small_data, tmp_path):
    from unirouter.evaluation.protocols import PreparedData
    from unirouter.evaluation import run_protocol

    with pytest.raises(DatasetError, match="dataset.json"):
        run_protocol(tmp_path, trials=1)
    tiny = PreparedData("tiny", small_data.model_names[:2], small_data.x, small_data.quality[:, :2], small_data.cost[:, :2])
    with pytest.raises(DatasetError, match="too few"):
        run_protocol(tiny, trials=1, methods=["zero"])
    with pytest.raises(InvalidInputError, match="unknown method"):
        run_protocol(small_data, methods=["nope"])
    with pytest.raises(InvalidInputError, match="protocol"):
        run_protocol(small_data, protocol="sideways")
    with pytest.raises(InvalidInputError, match="val_size"):
        run_protocol(small_data, trials=1, methods=["zero"], val_size=10_000)


def test_cli_evaluate_runs_and_writes_json_and_plot(data_dir, tmp_path, capsys):
    from unirouter.cli import evaluate as _evaluate_cli

    parser = argparse.ArgumentParser(prog="unirouter")
    _evaluate_cli.register(parser.add_subparsers(dest="command"))
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    args = parser.parse_args(
        ["evaluate", "--data", str(data_dir / "routerbench_subset"), "--trials", "1", "--methods", "zero", "knn", "kmeans", "best_single",
         "--k-grid", "5", "--knn-grid", "10", "--json", str(out), "--plot", str(png), "--no-progress"]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "AUDC@50" in printed and "K-NN" in printed
    doc = json.loads(out.read_text())
    assert doc["dataset"] == "routerbench_subset" and doc["protocol"] == "unseen-models" and doc["trials"] == 1
    assert set(doc["methods"]["knn"]) >= {"audc", "audc50", "qnc", "peak", "gap_closed"}
    assert png.stat().st_size > 1000
    bad = parser.parse_args(["evaluate", "--data", str(tmp_path / "missing"), "--no-progress"])
    assert bad.func(bad) == 2
    assert "does not exist" in capsys.readouterr().err


def _write_dataset(root, *, ids_in_matrix=None, missing=False):
    import csv

    root.mkdir(parents=True, exist_ok=True)
    n, models = 40, ["a", "b", "c"]
    ids = [f"q{i}" for i in range(n)]
    (root / "prompts.jsonl").write_text("\n".join(json.dumps({"id": i, "text": f"question number {i}"}) for i in ids) + "\n")
    rng = np.random.default_rng(0)
    for fname, lo, hi in (("correctness.csv", 0, 2), ("cost.csv", 1, 5)):
        with open(root / fname, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", *models])
            for r, i in enumerate(ids_in_matrix or ids):
                vals = [str(int(rng.integers(lo, hi))) for _ in models]
                if missing and fname == "correctness.csv" and r % 2 == 0:
                    vals = ["" for _ in models]  # every model misses half of the prompts
                w.writerow([i, *vals])
    manifest = {"name": root.name, "format": "unirouter-routing-dataset/1", "prompts": "prompts.jsonl", "id_field": "id",
                "text_field": "text", "correctness": "correctness.csv", "cost": "cost.csv"}
    (root / "dataset.json").write_text(json.dumps(manifest))
    return root


def test_bad_datasets_name_the_problem(tmp_path):
    from unirouter.evaluation.protocols import prepare_data

    fake = np.zeros((40, 8), dtype=np.float32)
    shuffled = [f"q{i}" for i in range(40)][::-1]
    with pytest.raises(DatasetError, match="id"):
        prepare_data(_write_dataset(tmp_path / "ids", ids_in_matrix=shuffled), embeddings=fake)
    with pytest.raises(DatasetError, match="no model with results"):
        prepare_data(_write_dataset(tmp_path / "holes", missing=True), embeddings=fake)
    data = prepare_data(_write_dataset(tmp_path / "ok"), embeddings=fake)
    assert data.quality.shape == (40, 3) and data.model_names == ["a", "b", "c"]
