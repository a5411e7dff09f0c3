"""Decisions on real traffic (issue 17): budgets under a traffic shift, the price of long prompts,
quality floors on held-out prompts, and which text to route on.

Sections (each can be run alone with ``--only``):

* ``budget``: a UniRouter (K-means and learned map) fitted on MMLU-Pro's training split, every
  complete model added from the validation split, a budget calibrated on the validation prompts.
  Streams of held-out test prompts are replayed call by call, each call costing the chosen model's
  recorded cost on that question: the same mix as the validation set, history questions only and
  law questions only (repeated, reshuffled, to ``--calls`` calls). Static = the calibrated cost weight
  throughout; paced = :class:`unirouter.pacing.BudgetPacer` started at the same weight and told
  each call's realised cost. Figure: realised mean spend / budget, and accuracy.
* ``floor``: ``quality_floor``, ``max_quality_drop`` and ``max_top_share`` calibrated on the validation
  prompts vs what the held-out test prompts realise (no margin vs the margin ``calibrate_cost_weight``
  applies with ``margin="auto"``).
* ``price``: expected cost of long prompts (the question inside a 40,000-character context) from the
  router's profile alone vs :class:`unirouter.pricing.CallPricer` (input tokens of the prompt sent at
  each model's price + expected output), against the true cost of the call.
* ``routing_text``: see ``routing_text_section``.

Usage: python benchmarks/bench_traffic.py [--only budget,floor,price,routing_text] [--calls 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_embeddings, table, write_result  # noqa: E402

SPLIT = (0.5, 0.1, 0.4)


def _data(seed: int) -> dict[str, Any]:
    from unirouter import default_data_dir, load_dataset
    from unirouter.datasets import split_indices

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    models = ds.complete_models(min_coverage=1.0)
    ds = ds.subset(ds.complete_rows(models), models=models)
    tr, va, te = split_indices(len(ds), SPLIT, random_state=seed)
    out = {"all": ds, "train": ds.subset(tr), "val": ds.subset(va), "test": ds.subset(te)}
    for k in ("train", "val", "test"):
        out[f"x_{k}"] = cached_embeddings(out[k].texts)
    return out


def _router(d: dict[str, Any], method: str, seed: int) -> Any:
    from unirouter import UniRouter, UniRouterWarning

    router = UniRouter(20, method=method, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit_dataset(d["train"], d["val"], embeddings=d["x_train"], validation_embeddings=d["x_val"])
    return router


def _stream(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` calls drawn from ``rows``: whole reshuffled passes (traffic of that kind, sustained)."""
    out = []
    while sum(len(o) for o in out) < n:
        out.append(rng.permutation(rows))
    return np.concatenate(out)[:n]


def budget_section(d: dict[str, Any], calls: int, seed: int) -> tuple[str, dict[str, Any]]:
    from unirouter import calibrate_cost_weight
    from unirouter.calibration import _lam_max
    from unirouter.pacing import BudgetPacer

    test, x_te = d["test"], d["x_test"]
    groups = np.asarray(test.groups)
    streams = {"same mix": np.arange(len(test)), "history only": np.flatnonzero(groups == "history"), "law only": np.flatnonzero(groups == "law")}
    rows_out, raw = [], []
    for method in ("kmeans", "learned"):
        router = _router(d, method, seed)
        names = router.models_
        cols = test.model_index(names)
        cost_true, corr_true = test.cost[:, cols], test.correctness[:, cols]
        gamma_v, cost_v, _ = router.predict(embeddings=d["x_val"])
        c_lo, c_hi = routing_mean(gamma_v, cost_v, _lam_max(gamma_v, cost_v)), routing_mean(gamma_v, cost_v, 0.0)
        for frac in (0.1, 0.3):
            budget = float(np.exp(np.log(c_lo) + frac * (np.log(c_hi) - np.log(c_lo))))
            lam0 = calibrate_cost_weight(router, embeddings=d["x_val"], budget=budget)
            hi = _lam_max(gamma_v, cost_v)
            for sname, rows in streams.items():
                rng = np.random.default_rng(seed)
                order = _stream(rows, calls, rng)
                static = router.choose(x_te[order], lam0)
                s_cost = cost_true[order, static]
                s_acc = corr_true[order, static]
                pacer = BudgetPacer(budget, cost_weight=lam0, min_cost_weight=hi * 1e-6, max_cost_weight=hi)
                p_cost, p_acc = np.empty(len(order)), np.empty(len(order))
                for t, i in enumerate(order):
                    j = int(router.choose(x_te[i : i + 1], pacer.cost_weight)[0])
                    p_cost[t], p_acc[t] = cost_true[i, j], corr_true[i, j]
                    pacer.update(float(p_cost[t]))
                last = slice(len(order) // 2, None)
                rec = {
                    "method": method, "budget_position": frac, "budget": budget, "stream": sname, "calls": len(order),
                    "distinct_prompts": int(len(rows)),
                    "static_spend_ratio": float(s_cost.mean() / budget), "paced_spend_ratio": float(p_cost.mean() / budget),
                    "paced_spend_ratio_second_half": float(p_cost[last].mean() / budget),
                    "static_accuracy": float(s_acc.mean()), "paced_accuracy": float(p_acc.mean()),
                }  # fmt: skip
                raw.append(rec)
                rows_out.append([
                    method, f"{budget:.3g}", sname, len(order), f"{rec['static_spend_ratio']:.2f}x",
                    f"{rec['paced_spend_ratio']:.2f}x", f"{rec['paced_spend_ratio_second_half']:.2f}x",
                    f"{rec['static_accuracy']:.3f}", f"{rec['paced_accuracy']:.3f}",
                ])  # fmt: skip
                print(rows_out[-1], flush=True)
    md = (
        "Budget calibrated on the validation prompts (MMLU-Pro, 30 models, 50/10/40 split, seed "
        f"{seed}); streams of held-out test prompts replayed call by call at each chosen model's recorded cost. "
        "Static = calibrated cost weight; paced = `BudgetPacer` (rate 0.05) from the same weight.\n\n"
        + table(
            ["map", "budget $", "stream", "calls", "static spend/budget", "paced spend/budget", "paced, 2nd half", "static acc", "paced acc"],
            rows_out,
        )
    )
    return md, {"budget": raw}


def routing_mean(gamma: np.ndarray, cost: np.ndarray, lam: float) -> float:
    from unirouter.calibration import routing_summary

    return float(routing_summary(gamma, cost, lam)["cost"])


SECTIONS = {"budget": budget_section}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    d = _data(args.seed)
    parts, raw = [], {}
    for name in args.only.split(","):
        fn = SECTIONS[name]
        md, r = fn(d, args.calls, args.seed) if name == "budget" else fn(d, args.seed)
        parts.append(f"#### {name}\n\n{md}")
        raw.update(r)
    write_result(
        "traffic" if args.only == ",".join(SECTIONS) else f"traffic_{args.only.replace(',', '_')}",
        title="Decisions on real traffic (issue 17)",
        section_markdown="\n\n".join(parts),
        **raw,
    )


if __name__ == "__main__":
    main()
