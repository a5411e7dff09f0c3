"""unirouter.profiles: shrunk cluster statistics and the ModelProfile record."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from unirouter import ModelProfile
from unirouter.profiles import ProfilingStats, cluster_statistics


def test_cluster_statistics_shrinks_toward_global_mean_by_hand():
    values = np.array([0.0, 1.0, 1.0, np.nan, 0.0])
    labels = np.array([0, 0, 1, 1, 2])
    means, counts, g = cluster_statistics(values, labels, 4, prior_strength=2.0)
    assert g == pytest.approx(2 / 4)  # NaN is not counted
    np.testing.assert_array_equal(counts, [2, 1, 1, 0])
    expected = [
        (1 + 2 * 0.5) / (2 + 2),
        (1 + 2 * 0.5) / (1 + 2),
        (0 + 2 * 0.5) / (1 + 2),
        0.5,
    ]
    np.testing.assert_allclose(means, expected)


def test_cluster_statistics_without_prior_gives_raw_means_and_global_for_empty():
    values = np.array([0.0, 1.0, 1.0, 0.25])
    labels = np.array([0, 0, 1, 1])
    means, _, g = cluster_statistics(values, labels, 3, prior_strength=0.0)
    np.testing.assert_allclose(means, [0.5, 0.625, g])
    assert g == pytest.approx(2.25 / 4)


def _profile(**kw) -> ModelProfile:
    base = {
        "name": "m",
        "validation_fingerprint": "abc",
        "scores": np.array([1.0, np.nan, 0.0, 0.5]),
        "costs": np.array([0.1, 0.2, np.nan, 0.3]),
        "cost_per_query": 0.2,
        "cluster_error": np.array([0.25, 0.5]),
        "cluster_cost": np.array([0.15, 0.3]),
        "cluster_count": [2, 1],
        "global_error": 0.5,
        "prior_strength": 1.0,
    }
    base.update(kw)
    return ModelProfile(**base)


def test_profile_json_round_trip_keeps_nan_as_missing():
    p = _profile(
        stats=ProfilingStats(
            calls_made=4, calls_failed=1, failure_causes={"TimeoutError": 1}
        )
    )
    data = json.loads(p.model_dump_json())
    assert data["scores"] == [1.0, None, 0.0, 0.5]
    back = ModelProfile.model_validate_json(p.model_dump_json())
    np.testing.assert_array_equal(back.scores, p.scores)  # NaN == NaN for this helper
    np.testing.assert_array_equal(back.costs, p.costs)
    assert back.stats.failure_causes == {"TimeoutError": 1}
    assert back.created_at == p.created_at


def test_profile_summary_and_accuracy():
    p = _profile()
    assert p.accuracy == pytest.approx(0.5)
    assert p.n_clusters == 2
    s = p.summary()
    json.dumps(s)
    assert s["n_scored"] == 3 and s["validation_accuracy"] == 0.5 and "stats" not in s
    assert "stats" in _profile(stats=ProfilingStats(calls_made=3)).summary()
    assert "accuracy=0.500" in repr(p)
    now = datetime.now(timezone.utc)
    assert now - timedelta(minutes=5) < p.created_at <= now


def test_build_profile_matches_hand_computed_cluster_errors(fitted_router, mmlu_small):
    val = mmlu_small["val"]
    j = 3
    y = val.correctness[:, j]
    p = fitted_router.build_profile("probe", y, cost=0.01)
    labels = fitted_router.validation_labels_
    a = fitted_router.prior_strength
    g = float(np.mean(1 - y))
    for k in range(fitted_router.n_clusters):
        in_k = labels == k
        expect = ((1 - y[in_k]).sum() + a * g) / (in_k.sum() + a)
        assert p.cluster_error[k] == pytest.approx(expect)
        assert p.cluster_count[k] == in_k.sum()
    assert p.global_error == pytest.approx(g)
    assert p.validation_fingerprint == fitted_router.validation_fingerprint_
    np.testing.assert_array_equal(p.cluster_cost, np.full(8, 0.01))
    assert p.cost_per_query == 0.01 and p.costs is None


def test_build_profile_with_missing_scores_counts_only_observed(
    fitted_router, mmlu_small
):
    y = mmlu_small["val"].correctness[:, 0].copy()
    y[:20] = np.nan
    p = fitted_router.build_profile("holes", y, cost=0.01)
    assert sum(p.cluster_count) == len(y) - 20
    assert p.global_error == pytest.approx(float(np.nanmean(1 - y)))
    assert np.isfinite(p.cluster_error).all()
