"""Issue 15: DifficultyRouter's MAP solver on data it was not tuned on, and the routers under both
model-split protocols. Writes benchmarks/results/difficulty_solver.json and unseen_strong_eval.json.

Parts (``--part``):
  solver  For every test-pool model of every trial (unseen-models and strongest-unseen protocols, the
          3 shared datasets and the synthetic graded one), solve the *same* MAP objective with the
          old solver (plain Newton from the prior mean, a copy kept here), the new one
          (damped Newton + Armijo from the model's own success rate) and a reference (scipy L-BFGS-B
          to gtol 1e-10, the better of it and the new point): fraction of fits ending far from the
          optimum, objective gap, profiles predicting >= 0.999 on every validation prompt, time.
          Done under the prior as shipped before (EM intercept variance) and under the new one.
  eval    zero_val, knn, kmeans, learned, difficulty and the ablations difficulty_old (old solver +
          old intercept prior: the shipped version), difficulty_nofloor (new solver, old intercept
          prior) under both protocols; paired win rates and losses to ZeroRouter (S_val).

Nothing here is chosen by looking at test results: the solver and the intercept prior (sd 2.5) were
fixed before these runs; the grids (K, k) are chosen per trial on the training pool by the protocol.

Usage:
  OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_difficulty_solver.py --part solver eval --trials 10
The synthetic dataset is written first if missing (benchmarks/make_synthetic.py, seed 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import command, machine  # noqa: E402
from unirouter import SentenceTransformerEmbedder, default_data_dir  # noqa: E402
from unirouter import difficulty as difficulty_module  # noqa: E402
from unirouter.cli.evaluate import _clean, format_paired, format_table, format_zero_losses  # noqa: E402
from unirouter.evaluation.protocols import TrialData, prepare_data, register_method, run_protocol  # noqa: E402
from unirouter.routers.difficulty import DifficultyRouter, neg_log_posterior, solve_logistic_map  # noqa: E402
from unirouter.embedding.embedders import default_cache_dir  # noqa: E402
from unirouter.exceptions import UniRouterWarning  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED = ["mmlu_pro", "zeroeval_math_code", "routerbench_subset"]
MIN_COVERAGE = {"zeroeval_math_code": 1.0}  # method.md section 5, as run_evaluation.py
PROTOCOLS = ("unseen-models", "strongest-unseen")
EVAL_METHODS = ["zero", "zero_val", "knn", "kmeans", "learned", "difficulty", "difficulty_old", "difficulty_nofloor", "oracle"]


# -- the old solver (as shipped before issue 15), kept only here to show the difference ---------------
def old_fit_logistic_map(features, y, prior_mean, prior_var, *, beta0=None, max_iter=25, tol=1e-6):
    """Plain Newton from the prior mean, no step control (the pre-issue-15 ``fit_logistic_map``)."""
    f = np.asarray(features, dtype=np.float64)
    obs = ~np.isnan(y)
    yz = np.where(obs, y, 0.0)
    m = y.shape[1]
    precision = 1.0 / prior_var
    beta = np.tile(prior_mean, (m, 1)) if beta0 is None else np.array(beta0, dtype=np.float64)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (f @ beta.T)))
        grad = f.T @ ((yz - p) * obs) - (precision * (beta - prior_mean)).T
        w = p * (1.0 - p) * obs
        hess = np.stack([(f.T * w[:, j]) @ f for j in range(m)]) + np.diag(precision)[None]
        step = np.linalg.solve(hess, grad.T[..., None])[..., 0]
        beta += step
        if np.abs(step).max() < tol:
            break
    p = 0.5 * (1.0 + np.tanh(0.5 * (f @ beta.T)))
    hess = np.stack([(f.T * (p * (1 - p) * obs)[:, j]) @ f for j in range(m)]) + np.diag(precision)[None]
    return beta, np.diagonal(np.linalg.inv(hess), axis1=1, axis2=2).copy()


class _OldSolverRouter(DifficultyRouter):
    """DifficultyRouter with the old solver for new models' profiles (ablation only)."""

    def build_profile(self, name, correctness, *, cost, stats=None, metadata=None):
        profile = super(DifficultyRouter, self).build_profile(name, correctness, cost=cost, stats=stats, metadata=metadata)
        with np.errstate(all="ignore"):
            beta, _ = old_fit_logistic_map(self._val_features, profile.scores[:, None], self.prior_mean_, self.prior_var_)
        return profile.model_copy(update={"cluster_error": beta[0], "cluster_cost": np.full(self.n_parts_, profile.cost_per_query)})


def _fit(router: DifficultyRouter, data: TrialData, floor: bool) -> DifficultyRouter:
    saved = difficulty_module._INTERCEPT_VAR_MIN
    difficulty_module._INTERCEPT_VAR_MIN = saved if floor else 0.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UniRouterWarning)
            router.fit(embeddings=data.x_train, validation_embeddings=data.x_val, train_correctness=data.y_train, validation_correctness=data.y_train_val)
    finally:
        difficulty_module._INTERCEPT_VAR_MIN = saved
    return router


def _route(router: DifficultyRouter, data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        for j, name in enumerate(data.test_models):
            router.add_model(name, correctness=data.y_val[:, j], cost=float(data.cost_val[j]))
    gamma, cost, _ = router.predict(embeddings=data.x_test)
    return gamma, cost


def register_ablations() -> None:
    register_method("difficulty_old", lambda d: _route(_fit(_OldSolverRouter(random_state=d.seed), d, False), d), label="Difficulty, old solver + old prior (shipped)", replace=True)
    register_method("difficulty_nofloor", lambda d: _route(_fit(DifficultyRouter(random_state=d.seed), d, False), d), label="Difficulty, new solver, old intercept prior", replace=True)


# -- part 1: the solver -------------------------------------------------------------------------------
def _reference(f, y, mu, var, start):
    from scipy.optimize import minimize

    obs = ~np.isnan(y)
    yz = np.where(obs, y, 0.0)

    def fun(b):
        z = f @ b
        val = float((obs * (np.logaddexp(0.0, z) - yz * z)).sum() + 0.5 * ((b - mu) ** 2 / var).sum())
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        return val, f.T @ ((p - yz) * obs) + (b - mu) / var

    res = minimize(fun, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
    return res.x


SOLVER_RECORDS: list[dict[str, Any]] = []


def _probe(data: TrialData, dataset: str, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Protocol method that records solver figures for every test-pool model, then routes (new solver)."""
    out = None
    for floor in (False, True):
        router = _fit(DifficultyRouter(random_state=data.seed), data, floor)
        f, mu, var = router._val_features, router.prior_mean_, router.prior_var_
        for j, name in enumerate(data.test_models):
            y = data.y_val[:, j : j + 1]
            t0 = time.perf_counter()
            with np.errstate(all="ignore"):
                b_old, _ = old_fit_logistic_map(f, y, mu, var)
            t_old = time.perf_counter() - t0
            t0 = time.perf_counter()
            fit = solve_logistic_map(f, y, mu, var)
            t_new = time.perf_counter() - t0
            t0 = time.perf_counter()
            b_ref = _reference(f, y[:, 0], mu, var, fit.beta[0].copy())
            t_ref = time.perf_counter() - t0
            objs = {}
            for key, b in (("old", b_old[0]), ("new", fit.beta[0]), ("ref", b_ref)):
                with np.errstate(all="ignore"):
                    objs[key] = float(neg_log_posterior(f, y, b, mu, var)[0]) if np.isfinite(b).all() else float("inf")
            best = min(objs["ref"], objs["new"])
            with np.errstate(all="ignore"):
                p_old = 1 / (1 + np.exp(-(f @ b_old[0]))) if np.isfinite(b_old).all() else np.ones(f.shape[0])
            p_new = 1 / (1 + np.exp(-(f @ fit.beta[0])))
            SOLVER_RECORDS.append(
                {
                    "dataset": dataset,
                    "protocol": protocol,
                    "prior": "new" if floor else "old",
                    "seed": data.seed,
                    "model": name,
                    "val_mean": float(np.nanmean(y)),
                    "obj_old": objs["old"],
                    "obj_new": objs["new"],
                    "obj_ref": best,
                    "new_converged": bool(fit.converged[0]),
                    "new_iter": int(fit.n_iter[0]),
                    "prior_converged": bool(router.prior_converged_),
                    "old_intercept": float(b_old[0, 0]),
                    "old_all_ones": bool((p_old >= 0.999).all()),
                    "new_all_ones": bool((p_new >= 0.999).all()),
                    "mean_pred_gap_new": float(abs(p_new.mean() - np.nanmean(y))),
                    "t_old": t_old,
                    "t_new": t_new,
                    "t_ref": t_ref,
                }
            )
        if floor:
            out = _route(router, data)
    return out


def _far(obj: float, ref: float) -> bool:
    """Ended far from the optimum: objective more than 1e-6 relative (and 1e-6 absolute) above it."""
    return not np.isfinite(obj) or obj - ref > 1e-6 * max(1.0, abs(ref))


def solver_section(records: list[dict[str, Any]]) -> str:
    lines = [
        "Every test-pool model's profile fit, the same MAP objective solved three ways. 'far' = objective more than 1e-6 "
        "(relative) above the best of the new solver and L-BFGS-B (gtol 1e-10); 'all >= 0.999' = the profile predicts quality "
        ">= 0.999 on every validation prompt; gap = objective minus the best; times are medians per fit (one model).",
        "",
        "| dataset | protocol | prior | fits | old: far | old: all >= 0.999 | old: max gap | new: far | new: not converged | new: max gap | new: max abs(mean pred − mean obs) | old / new / L-BFGS ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["dataset"], r["protocol"], r["prior"]) for r in records})
    for ds, pr, prior in keys:
        rs = [r for r in records if (r["dataset"], r["protocol"], r["prior"]) == (ds, pr, prior)]
        far_old = sum(_far(r["obj_old"], r["obj_ref"]) for r in rs)
        far_new = sum(_far(r["obj_new"], r["obj_ref"]) for r in rs)
        gap_old = max(r["obj_old"] - r["obj_ref"] for r in rs)
        gap_new = max(r["obj_new"] - r["obj_ref"] for r in rs)
        lines.append(
            f"| {ds} | {pr} | {prior} | {len(rs)} | {far_old} ({far_old / len(rs):.0%}) | {sum(r['old_all_ones'] for r in rs)} | {gap_old:.3g} | "
            f"{far_new} | {sum(not r['new_converged'] for r in rs)} | {gap_new:.2g} | {max(r['mean_pred_gap_new'] for r in rs):.3f} | "
            f"{1e3 * np.median([r['t_old'] for r in rs]):.2f} / {1e3 * np.median([r['t_new'] for r in rs]):.2f} / {1e3 * np.median([r['t_ref'] for r in rs]):.1f} |"
        )
    em = [r for r in records if r["prior"] == "new"]
    lines += ["", f"Empirical-Bayes prior (EM) converged in {sum(r['prior_converged'] for r in em)} of {len(em)} router fits (counted per fit of a test-pool model)."]
    strong = [r for r in records if r["prior"] == "old" and r["val_mean"] >= 0.5]
    if strong:
        lines += ["", f"Under the old prior, fits of models with validation mean >= 0.5: {len(strong)}, old solver far from the optimum in "
                  f"{sum(_far(r['obj_old'], r['obj_ref']) for r in strong)}, new solver in {sum(_far(r['obj_new'], r['obj_ref']) for r in strong)}."]
    return "\n".join(lines)


# -- datasets -----------------------------------------------------------------------------------------
def _datasets(names: list[str], embedder: Any) -> dict[str, Any]:
    out = {}
    for name in names:
        if name == "synthetic_graded":
            path = HERE / "data" / "synthetic_graded"
            if not (path / "dataset.json").is_file():
                from make_synthetic import build

                build(path, seed=0)
            out[name] = prepare_data(path, embedder=embedder)
        else:
            out[name] = prepare_data(default_data_dir() / name, embedder=embedder, min_coverage=MIN_COVERAGE.get(name, 0.99))
    return out


def _write(name: str, title: str, section: str, **raw: Any) -> None:
    doc = {"title": title, "command": command(), "date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": machine(), "section_markdown": section, **raw}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(doc), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", nargs="+", default=["solver", "eval"], choices=["solver", "eval"])
    ap.add_argument("--datasets", nargs="+", default=["synthetic_graded", *SHARED])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="suffix of the result files (runs split over processes)")
    args = ap.parse_args(argv)
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir())
    data = _datasets(args.datasets, embedder)
    t_start = time.perf_counter()

    if "solver" in args.part:
        for name, d in data.items():
            for protocol in PROTOCOLS:
                register_method("probe", lambda td, n=name, p=protocol: _probe(td, n, p), replace=True)
                run_protocol(d, protocol=protocol, trials=args.trials, seed=args.seed, methods=["probe"], progress=False)
                print(f"solver {name} {protocol} {time.perf_counter() - t_start:.0f} s: {sum(1 for r in SOLVER_RECORDS if r['dataset'] == name and r['protocol'] == protocol)} fits", flush=True)
        section = solver_section(SOLVER_RECORDS)
        print(section)
        _write(
            "difficulty_solver" + args.tag,
            f"Issue 15: DifficultyRouter's MAP solver, old vs new ({args.trials} trials per dataset and protocol)",
            section,
            records=SOLVER_RECORDS,
            seconds=round(time.perf_counter() - t_start, 1),
        )

    if "eval" in args.part:
        register_ablations()
        docs: dict[str, dict[str, Any]] = {}
        parts = []
        for name, d in data.items():
            for protocol in PROTOCOLS:
                t0 = time.perf_counter()
                res = run_protocol(d, protocol=protocol, trials=args.trials, seed=args.seed, methods=EVAL_METHODS, progress=False, keep_curves=False)
                doc = res.to_json()
                doc.pop("curves_trial0", None)
                docs[f"{name}/{protocol}"] = doc
                text = (
                    f"#### {name}, {protocol} ({doc['trials']} trials, {doc['n_items']} prompts, {doc['n_models']} models, "
                    f"{time.perf_counter() - t0:.0f} s)\n\n{format_table(doc, markdown=True)}\n\n{format_paired(doc, markdown=True)}\n\n"
                    f"{format_zero_losses(doc, markdown=True)}"
                )
                print(text, flush=True)
                parts.append(text)
        summary = _eval_summary(docs)
        section = summary + "\n\n" + "\n\n".join(parts)
        _write(
            "unseen_strong_eval" + args.tag,
            f"Issue 15: routers under unseen-models and strongest-unseen ({args.trials} trials per dataset and protocol)",
            section,
            runs={k: {kk: v for kk, v in doc.items() if kk != "per_trial"} | {"per_trial": doc["per_trial"]} for k, doc in docs.items()},
            seconds=round(time.perf_counter() - t_start, 1),
        )
    return 0


def _eval_summary(docs: dict[str, dict[str, Any]]) -> str:
    """DifficultyRouter against LearnedMap, K-NN and ZeroRouter (S_val) per dataset and protocol."""
    lines = [
        "Mean AUDC (± 2 SE) per dataset and protocol; 'Δ' = paired mean difference of DifficultyRouter minus the other, "
        "'win' = share of trials DifficultyRouter is ahead; last columns: share of trials each router is below ZeroRouter (S_val).",
        "",
        "| dataset | protocol | Difficulty | shipped (old) | LearnedMap | K-NN | ZeroRouter (S_val) | Δ vs LearnedMap (win) | Δ vs K-NN (win) | below Zero: Difficulty / old / LearnedMap / K-NN / K-Means |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, doc in docs.items():
        ds, pr = key.split("/")
        m = doc["methods"]

        def audc(k: str, m: dict[str, Any] = m) -> str:
            e = m.get(k, {}).get("audc")
            return "–" if not e else f"{e['mean']:.4f} ± {2 * (e['se'] or 0):.4f}"

        def vs(other: str, doc: dict[str, Any] = doc) -> str:
            a = [t["metrics"]["difficulty"]["audc"] for t in doc["per_trial"]]
            b = [t["metrics"][other]["audc"] for t in doc["per_trial"]]
            d = np.asarray(a) - np.asarray(b)
            return f"{d.mean():+.4f} ({((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size:.0%})"

        def below(k: str, m: dict[str, Any] = m) -> str:
            z = m.get(k, {}).get("loses_to_zero_val")
            return "–" if not z else f"{z['rate']:.0%}"

        lines.append(
            f"| {ds} | {pr} | {audc('difficulty')} | {audc('difficulty_old')} | {audc('learned')} | {audc('knn')} | {audc('zero_val')} | "
            f"{vs('learned')} | {vs('knn')} | {below('difficulty')} / {below('difficulty_old')} / {below('learned')} / {below('knn')} / {below('kmeans')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
