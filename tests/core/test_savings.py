"""SavingsLedger / SavingsSummary on the real fitted router, the JSON-lines log, the CLI and the plot;
capability filtering of a CandidatePool."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from unirouter import InvalidInputError, PersistenceError, UnknownModelError
from unirouter.integration.capabilities import restrict_to_capable
from unirouter.cli.commands import main
from unirouter.integration import CandidatePool, RoutingOptions
from unirouter.profiling.profiler import TokenPrice
from unirouter.integration.savings import SavingsLedger, book_call, top_model


@pytest.fixture()
def pool(fitted_router) -> CandidatePool:
    pool = CandidatePool(fitted_router)
    for name in fitted_router.models_:
        pool.add(name, f"model:{name}", None, cost=None)
    return pool


@pytest.fixture()
def prompts(mmlu_small) -> list[str]:
    return list(mmlu_small["test"].texts[:40])


def test_baseline_is_the_lowest_validation_error_model(fitted_router, mmlu_small):
    val = mmlu_small["val"]
    mean_correct = {n: float(np.nanmean(val.correctness[:, val.model_index([n])[0]])) for n in fitted_router.models_}
    best = top_model(fitted_router)
    assert mean_correct[best] == pytest.approx(max(mean_correct.values()), abs=0.02)


def test_summary_matches_the_decisions(pool, fitted_router, prompts):
    ledger = SavingsLedger.for_pool(pool)
    assert pool.savings is ledger
    decisions = pool.decide_batch(prompts, {"cost_weight": 50.0})
    for d in decisions:
        ledger.record(d, routing_seconds=0.01, session="a" if len(d.model) % 2 else "b")
    s = ledger.summary()
    base = sum(float(d.expected_cost[d.candidates.index(ledger.baseline)]) for d in decisions)
    routed = sum(d.chosen_expected_cost for d in decisions)
    assert s.n_calls == s.n_compared == len(prompts)
    assert s.baseline_cost == pytest.approx(base) and s.expected_cost == pytest.approx(routed)
    assert s.saved_expected == pytest.approx(base - routed) and s.saved_fraction == pytest.approx((base - routed) / base)
    assert s.saved_expected > 0  # routing at cost weight 50 is cheaper than always the best model
    errs = [float(d.predicted_error[d.candidates.index(ledger.baseline)]) for d in decisions]
    assert s.baseline_predicted_error == pytest.approx(np.mean(errs))
    assert s.predicted_error == pytest.approx(np.mean([d.chosen_predicted_error for d in decisions]))
    assert sum(s.calls_by_model.values()) == len(prompts)
    assert s.routing_seconds == pytest.approx(0.01 * len(prompts))
    by_session = ledger.sessions()
    assert sum(x.n_calls for x in by_session.values()) == len(prompts)
    assert "saved" in s.to_text()


def test_realised_cost_prices_the_usage(pool, prompts):
    ledger = SavingsLedger.for_pool(pool, baseline=pool.names[0])
    d = pool.decide(prompts[0])
    price = TokenPrice(input_per_mtok=1.0, output_per_mtok=2.0)
    e = ledger.record(d, usage={"input_tokens": 1000, "output_tokens": 500}, price=price)
    assert e.realised_from_usage and e.realised_cost == pytest.approx(0.002)
    e2 = ledger.record(d)
    assert not e2.realised_from_usage and e2.realised_cost == pytest.approx(d.chosen_expected_cost)


def test_book_call_uses_the_pool_cost_and_any_usage_format(fitted_router, prompts):
    pool = CandidatePool(fitted_router)
    price = TokenPrice(input_per_mtok=1.0, output_per_mtok=1.0)
    for name in fitted_router.models_:
        pool.add(name, None, None, cost=price)
    assert book_call(pool, pool.decide(prompts[0]), answered_by=pool.names[0]) is None  # no ledger: nothing booked
    SavingsLedger.for_pool(pool)
    d = pool.decide(prompts[0])
    entry = book_call(pool, d, answered_by=d.model, usage={"prompt_tokens": 100, "completion_tokens": 100})
    assert entry["realised_cost"] == pytest.approx(0.0002) and entry["realised_from_usage"]


def test_baseline_outside_the_call_is_not_compared(pool, prompts):
    ledger = SavingsLedger.for_pool(pool)
    others = [n for n in pool.names if n != ledger.baseline]
    ledger.record(pool.decide(prompts[0], {"allowed_models": others}))
    s = ledger.summary()
    assert s.n_calls == 1 and s.n_compared == 0 and s.saved_fraction is None


def test_log_cli_and_plot(pool, prompts, tmp_path, capsys):
    log = tmp_path / "savings.jsonl"
    ledger = SavingsLedger.for_pool(pool, path=log, session="s")
    for d in pool.decide_batch(prompts[:10], {"cost_weight": 20.0}):
        ledger.record(d)
    again = SavingsLedger.from_jsonl(log)
    assert again.summary() == ledger.summary().model_copy(update={"profiling_cost": 0.0})
    plot = tmp_path / "savings.png"
    assert main(["savings", str(log), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "always" in out and plot.stat().st_size > 0
    assert main(["savings", str(log), "--plot", str(plot)]) == 2  # never overwrites silently
    assert "overwrite" in capsys.readouterr().err
    assert main(["savings", str(log), "--json", "--by-session"]) == 0
    assert json.loads(capsys.readouterr().out)["s"]["n_calls"] == 10
    with pytest.raises(PersistenceError, match="does not exist"):
        SavingsLedger.from_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(PersistenceError, match="bad.jsonl:1"):
        SavingsLedger.from_jsonl(tmp_path / "bad.jsonl")


def test_bad_inputs_are_typed_errors(pool, prompts):
    with pytest.raises(UnknownModelError):
        SavingsLedger.for_pool(pool, baseline="nope")
    with pytest.raises(InvalidInputError, match="model name"):
        SavingsLedger("")
    ledger = SavingsLedger.for_pool(pool)
    with pytest.raises(InvalidInputError, match="answered_by"):
        ledger.record(pool.decide(prompts[0]), answered_by="nope")


def test_ledger_and_pool_pickle(pool, prompts):
    ledger = SavingsLedger.for_pool(pool)
    ledger.record(pool.decide(prompts[0]))
    clone = pickle.loads(pickle.dumps(pool))
    assert clone.savings.summary() == ledger.summary()
    assert clone.decide(prompts[1]).model == pool.decide(prompts[1]).model


def test_restrict_to_capable(pool):
    names = pool.names
    caps = {n: ({"tool_calling"} if i % 2 else set()) for i, n in enumerate(names)}
    capable = [n for n in names if caps[n]]

    def of(model):
        return caps[model.split(":", 1)[1]]

    opts = restrict_to_capable(pool, RoutingOptions(), {"tool_calling"}, of)
    assert list(opts.allowed_models) == capable
    assert restrict_to_capable(pool, RoutingOptions(), set(), of) == RoutingOptions()
    with pytest.raises(InvalidInputError, match="cannot serve"):
        restrict_to_capable(pool, RoutingOptions(force_model=names[0]), {"tool_calling"}, of)
    with pytest.raises(InvalidInputError, match="none of the candidates"):
        restrict_to_capable(pool, RoutingOptions(allowed_models=(names[0],)), {"tool_calling"}, of)
    with pytest.raises(InvalidInputError, match="unknown capabilities"):
        restrict_to_capable(pool, RoutingOptions(), {"telepathy"}, of)
