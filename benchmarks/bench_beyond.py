"""Issue 8: a router better than UniRoute on unseen models (DifficultyRouter), measured with the
official unseen-models protocol; writes benchmarks/results/beyond_<dataset>.json.

Runs, per dataset:
  main     zero, knn, kmeans, learned, difficulty (+ oracle, clairvoyant K-NN, best single), --trials
  variants the DifficultyRouter ablations (fixed r, clusters, nonlinear factors), --variant-trials
  valsize  knn, kmeans, learned, difficulty at S_val = 100, 200, 400, 800 prompts, --sweep-trials

Usage:
  OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_beyond.py --datasets routerbench_subset zeroeval_math_code mmlu_pro
Embeddings come from the on-disk cache (benchmarks/embed_datasets.py fills it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from unirouter import SentenceTransformerEmbedder, default_data_dir
from unirouter.cli.evaluate import _clean, format_paired, format_table
from unirouter.evaluation.protocols import (
    TrialData,
    machine_description,
    prepare_data,
    register_method,
    run_protocol,
)
from unirouter.routers.difficulty import DifficultyRouter
from unirouter.embedding.embedders import default_cache_dir
from unirouter.exceptions import UniRouterWarning

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ["routerbench_subset", "zeroeval_math_code", "mmlu_pro"]
MIN_COVERAGE = {
    "zeroeval_math_code": 1.0
}  # method.md section 5, as benchmarks/run_evaluation.py
BASELINES = ("knn", "kmeans", "learned")
MAIN = [
    "zero",
    "knn",
    "kmeans",
    "learned",
    "difficulty",
    "oracle",
    "clairvoyant_knn",
    "best_single",
]


def difficulty_factory(data: TrialData, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """Protocol factory: fit on S_tr with the training pool's labels, add the test pool from S_val."""
    router = DifficultyRouter(random_state=data.seed, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UniRouterWarning)
        router.fit(
            embeddings=data.x_train,
            validation_embeddings=data.x_val,
            train_correctness=data.y_train,
            validation_correctness=data.y_train_val,
        )
    for j, name in enumerate(data.test_models):
        router.add_model(
            name, correctness=data.y_val[:, j], cost=float(data.cost_val[j])
        )
    gamma, cost, _ = router.predict(embeddings=data.x_test)
    return gamma, cost


def register() -> None:
    """The one registration ``unirouter evaluate`` needs (also importable as a --plugin module)."""
    register_method(
        "difficulty",
        difficulty_factory,
        label="DifficultyRouter (ours)",
        replace=True,
    )


VARIANTS = {
    "difficulty_r3": ({"n_factors": 3}, "Difficulty, at most 3 factors"),
    "difficulty_r16": ({"n_factors": 16}, "Difficulty, at most 16 factors"),
    "difficulty_r1": ({"n_factors": 1}, "Difficulty, r=1 (one shared difficulty)"),
    "difficulty_v1": (
        {"n_factors": 3, "prior_folds": 0},
        "First version: r=3, prior on S_val labels only",
    ),
    "difficulty_k10": ({"n_clusters": 10}, "Difficulty + 10 K-means clusters"),
}


def register_variants() -> list[str]:
    for key, (params, label) in VARIANTS.items():
        register_method(
            key,
            lambda d, p=params: difficulty_factory(d, **p),
            label=label,
            replace=True,
        )
    return ["knn", "kmeans", "learned", "difficulty", *VARIANTS]


register()


def paired_vs(
    doc: dict[str, Any], method: str, others: tuple[str, ...] = BASELINES
) -> dict[str, Any]:
    """Win rate (ties count half), mean AUDC and QNC differences and sign-test p of ``method`` vs each other method."""
    from unirouter.evaluation.protocols import _sign_test

    out: dict[str, Any] = {}
    trials = doc["per_trial"]
    for b in others:
        pairs = [
            (t["metrics"][method], t["metrics"][b])
            for t in trials
            if method in t["metrics"] and b in t["metrics"]
        ]
        if not pairs:
            continue
        d = np.array([a["audc"] - c["audc"] for a, c in pairs])
        dq = np.array([a["qnc"] - c["qnc"] for a, c in pairs])
        wins, losses = int((d > 0).sum()), int((d < 0).sum())
        out[b] = {
            "n": len(pairs),
            "win_rate": float((wins + 0.5 * (d == 0).sum()) / d.size),
            "audc_diff_mean": float(d.mean()),
            "audc_diff_se": float(d.std(ddof=1) / np.sqrt(d.size))
            if d.size > 1
            else float("nan"),
            "qnc_diff_mean": float(dq.mean()),
            "sign_test_p": _sign_test(wins, losses),
        }
    return out


def _run(data, methods, trials, seed, **kw):
    return run_protocol(
        data, trials=trials, seed=seed, methods=methods, progress=False, **kw
    ).to_json()


def _row(doc: dict[str, Any], m: str) -> str:
    e = doc["methods"][m]
    return f"| {doc['labels'].get(m, m)} | {e['audc']['mean']:.4f} ± {2 * e['audc']['se']:.4f} | {e['qnc']['mean']:.3f} | {e['qnc_not_reached']} | {e['peak']['mean']:.3f} |"


def section(
    name: str,
    main: dict[str, Any],
    variants: dict[str, Any] | None,
    sweep: dict[Any, dict[str, Any]],
    seconds: float,
    machine: str,
) -> str:
    pv = paired_vs(main, "difficulty")
    lines = [
        f"### {name}: DifficultyRouter vs the faithful routers ({main['trials']} trials, unseen-models protocol)",
        "",
        (
            f"{main['n_items']} prompts, {main['n_models']} models; S_val = 10 %. AUDC ± 2 SE; QNC = quality-neutral cost "
            "(fraction of the most expensive test-pool model's cost); 'not reached' = trials where QNC = 1."
        ),
        "",
        "| method | AUDC | QNC | QNC not reached | peak |",
        "|---|---|---|---|---|",
    ]
    lines += [_row(main, m) for m in main["methods"] if "audc" in main["methods"][m]]
    lines += [
        "",
        "Paired comparison of DifficultyRouter with each baseline (same trials):",
        "",
        "| vs | win rate (AUDC) | mean AUDC diff ± 2 SE | mean QNC diff | sign test p |",
        "|---|---|---|---|---|",
    ]
    for b, e in pv.items():
        lines.append(
            f"| {main['labels'].get(b, b)} | {e['win_rate']:.0%} | {e['audc_diff_mean']:+.4f} ± {2 * e['audc_diff_se']:.4f} | {e['qnc_diff_mean']:+.3f} | {e['sign_test_p']:.2g} |"
        )
    qd = main["methods"]["difficulty"]["qnc"]["mean"]
    ok = [
        b
        for b, e in pv.items()
        if e["win_rate"] >= 0.7 and qd < main["methods"][b]["qnc"]["mean"]
    ]
    miss = [
        f"{main['labels'].get(b, b)} (win rate {e['win_rate']:.0%})"
        for b, e in pv.items()
        if b not in ok
    ]
    verdict = (
        "met against all three" if not miss else "not met against " + ", ".join(miss)
    )
    lines += [
        "",
        f"Issue-8 criterion (AUDC win rate >= 70 % and lower mean QNC than K-NN, K-Means and LearnedMap): **{verdict}**.",
    ]
    if variants:
        lines += [
            "",
            f"Ablations ({variants['trials']} trials; fixed parameters, no inner selection):",
            "",
            "| method | AUDC | QNC | QNC not reached | peak |",
            "|---|---|---|---|---|",
        ]
        lines += [
            _row(variants, m)
            for m in variants["methods"]
            if "audc" in variants["methods"][m]
        ]
    if sweep:
        lines += [
            "",
            "Validation-size sweep (mean AUDC / mean QNC; S_test stays 30 %):",
            "",
        ]
        first = next(iter(sweep.values()))
        ms = [
            m
            for m in ("knn", "kmeans", "learned", "difficulty")
            if m in first["methods"]
        ]
        labels = first.get("labels") or main["labels"]
        lines += [
            "| S_val | "
            + " | ".join(labels.get(m, m) for m in ms)
            + " | lowest win rate over the three |",
            "|---|" + "---|" * (len(ms) + 1),
        ]
        for v, doc in sorted(sweep.items(), key=lambda kv: int(kv[0])):
            cells = [
                f"{doc['methods'][m]['audc']['mean']:.4f} / {doc['methods'][m]['qnc']['mean']:.2f}"
                for m in ms
            ]
            pv2 = doc.get("paired") or {}
            if "per_trial" in doc or not all(isinstance(e, dict) for e in pv2.values()):
                pv2 = paired_vs(doc, "difficulty")  # a fresh run (its own "paired" has another shape)
            worst = min(e["win_rate"] for e in pv2.values()) if pv2 else float("nan")
            lines.append(
                f"| {v} ({doc['trials']} trials) | "
                + " | ".join(cells)
                + f" | {worst:.0%} |"
            )
    lines += ["", f"Wall time {seconds:.0f} s on {machine}."]
    return "\n".join(lines)


METHOD_MARKDOWN = """\
**Method (DifficultyRouter, `unirouter.routers.difficulty`).** gamma(x, h) = 1 - sigmoid(beta_h . f(x)) with
f(x) = [1, z_1(x) .. z_r(x)]: an item-response model whose prompt factors are learned from the *training*
LLMs and whose per-model coefficients are fitted on the new model's validation labels only.
(1) A ridge regression (penalty by generalised cross-validation, one x^T x product) predicts every
training LLM's centred correctness on S_tr from the embedding; z(x) are the top principal directions of
those predictions (the first one is shared difficulty: prompts that the known models fail together),
scaled to unit variance; r is capped at 8 (and at the number of training LLMs).
(2) The prior over a model's coefficients, N(mu, diag tau^2), is estimated by empirical Bayes (EM) from the
training LLMs' labels *where the factors are out of sample*, as they are for a new model: on S_tr with
factor values from 5-fold cross-fitted ridges (each fold projected on the full fit's principal basis), plus
S_val. Factors that do not separate the known models get tau^2 -> 0 and are shrunk away, so r is chosen on
the training pool by the prior itself; 3, 8 and 16 give the same AUDC (ablations).
(3) Adding a model = a MAP logistic fit of 1 + r numbers by Newton's method on its validation labels
(well under 1 ms); nothing shared is refitted. No per-dataset setting.
The profile's `cluster_error` carries beta_h, so the pool machinery of `BaseRouter` is unchanged.

**What changed since the first version** (r = 3, prior estimated on the training LLMs' S_val labels only,
the "first version" row of the ablations): with S_val labels alone EM under-estimates the prior's spread
when S_val is small, so every new model was shrunk toward the average known one. On RouterBench at S_val =
100 the first version scored 0.7584 mean AUDC and the current one 0.7635 (20 trials, same seeds; scratch
run); see the validation-size sweep below. At the default S_val the out-of-fold prior adds +0.0008 on
RouterBench and is neutral on MMLU-Pro (+0.0000) and ZeroEval (-0.0002) (50 trials, same seeds).

**Tried and not kept.** First version (ablation table and the scratch runs it describes): choosing r per
trial by the protocol's inner split or by held-out-model likelihood (noisy, no better than a fixed r);
averaging r = 1, 3, 8; K-means one-hot features next to the factors; clusters only; a shared per-prompt
cost shape; nonlinear factors (K-NN smoothing, soft assignment to 100 centroids: within noise, 6x the
decision cost); discriminatively trained reduced-rank factors (-0.010 AUDC on RouterBench).
This round, scratch runs with the same protocol and seeds (50 trials; AUDC differences against the
out-of-fold router unless stated, RouterBench / ZeroEval / MMLU-Pro):
- *Per-prompt cost from the new model's own validation costs* (ridge of log cost on the embedding, scaled
  to its mean validation cost): +0.0014 / +0.0004 / -0.0013. K-NN (k = 25) and per-cluster costs behave the
  same (-0.0014 to -0.0019 on MMLU-Pro). Cost linear in the prompt's length (exact for the input part,
  74 % of the per-prompt cost variance on MMLU-Pro): +0.0006 / -0.0005 / -0.0011; in log-log form
  +0.0009 / -0.0005 / 0.0000. Clairvoyant per-prompt costs would give +0.0018 / +0.0019 / +0.0093, but
  that gain on MMLU-Pro comes from the realised output length, which goes with the answer's outcome and
  cannot be known before the call. A lever that loses on one dataset out of three is not a default.
- *Local corrections from the new model's own labels*: per-cluster residual means (K = 5-20, shrinkage
  10-100 prompts) -0.0044 to +0.0006 against the first version; a residual linear term on the whole
  embedding under a Gaussian prior: +0.0004 at best, -0.031 with a wide prior; per-cluster intercepts with
  within-cluster factors (K = 3, 5, 10): -0.0081 to +0.0008. The validation labels carry no more than the
  r + 1 coefficients already take.
- *Prior shape*: a full covariance over the coefficients (shrunk to its diagonal by 0, 0.5, 1): -0.0007
  to +0.0001 on RouterBench. Adding the training pool's S_val labels to the factor fit: within ±0.0003.
  Bagging the factor fit (5 subsamples of 80 % of S_tr): -0.0001 on RouterBench. A prior centred on the
  known models most like the new one (softmax over their validation-label agreement, temperature 0.01-1):
  within ±0.0001 on RouterBench and ZeroEval; at 300 labels the likelihood outweighs the prior's centre.
- *Anchoring on the known models' S_val labels* (regress the new model's validation labels on the known
  models' actual labels there, apply to their predicted correctness on S_test): -0.0098 / -0.0026 (alone),
  -0.0025 / -0.0001 averaged with the router; the regression learns the shared label noise, which the
  predictions do not carry.
- *Averaging with LearnedMap's predictions*: +0.0009 over the first version on RouterBench, at the price of
  a torch training per fit; not kept.
- *Where the headroom is*: with the known models' true labels on each test prompt as features (clairvoyant
  about the *known* models only), the same logistic profile reaches AUDC 0.802 on RouterBench against 0.764.
  The embedding is the limit: a ridge on MiniLM explains 7 % of the Brier score of per-prompt correctness on
  RouterBench (25 % on ZeroEval); TF-IDF n-grams added to it gain 0.4 / 1.6 points, K-NN (k = 100) ties
  the ridge.
- *A wider prior than empirical Bayes gives* (tau^2 x 2, 4, 10): -0.0001 to -0.0011 on RouterBench and
  -0.0005 to -0.0019 on ZeroEval; the out-of-fold estimate is not too narrow any more.

Third round (scratch runs, same protocol and seeds, 50 trials; AUDC differences against the router above,
RouterBench / ZeroEval / MMLU-Pro):
- *Prompt metadata the application already knows* (the dataset's `group_field`: RouterBench's 3 tasks,
  ZeroEval's 3 tasks, MMLU-Pro's 14 categories) as unpenalised group intercepts in the factor ridge
  (ridge on within-group-centred embeddings and labels, the group means added back; no setting):
  +0.0014 / +0.0009 / +0.0023, win rate against this router 64 % / 70 % / 86 %. Against LearnedMap on
  RouterBench it wins 68 % of the trials (+0.0031 AUDC, sign test p = 0.015), one trial short of 70 %.
  One-hot group columns under the shared ridge penalty give the same gain once their scale no longer
  binds (+0.0005 at 0.2, +0.0014 at 1 and 3). Not built: it needs a group argument on every routing
  call (core, both plugins, calibration, saved routers, `unirouter evaluate`), and a comparison in which
  only one router sees the task label is not like for like with the faithful routers.
- *Surface statistics the normalised, truncated embedding cannot see* (log length in characters and
  words, digit and symbol fractions, line count, a truncation flag) next to the embedding:
  +0.0007 / +0.0001 / 0.0000 (standardised, scaled by 0.2, the better of 0.05 and 0.2 on RouterBench).
- *More of the same encoder*: mean-pooled hidden states of MiniLM's intermediate layers (layer 3; layers 2
  and 4; layers 1-5; each L2-normalised) next to the sentence embedding: +0.0003 to +0.0005 on RouterBench
  (win rate against LearnedMap 66-68 %), at 2-6x the feature width. The earlier layers know no more about
  difficulty than the last one.
- *Posterior-predictive correctness* (probit correction for the uncertainty of a new model's
  coefficients) instead of the MAP plug-in: 0.0000 on RouterBench and ZeroEval; with ~300 labels and at
  most 9 coefficients the posterior is narrow.

**Where it falls short.** On RouterBench (11 models: 7 known, 4 new) it beats K-NN and K-Means clearly but
wins against LearnedMap in only 64 % of the trials (+0.0017 AUDC, sign test p = 0.065), short of the 70 %
the issue asks for; at S_val = 100-200 LearnedMap is ahead by 0.001-0.003. With 7 known models and a
MiniLM embedding that explains 7 % of the per-prompt Brier score there, the two routers extract about
the same signal. The levers left are outside this router: a stronger prompt encoder (which would change
every method's input, so it is a project decision; the offline packages on the registry that name other
encoders ship no weights and download them at run time) or more known models. The task metadata above
comes within one trial of the criterion, but only by giving this router an input the others do not get.
"""


def method_markdown(name: str) -> str:
    """The method text goes into the first dataset section of RESULTS.md only (mmlu_pro)."""
    if name == "mmlu_pro":
        return METHOD_MARKDOWN
    return (
        "Method, what was tried and where it falls short: see *Beyond the paper: DifficultyRouter on "
        "mmlu_pro* above.\n"
    )


def speed(name: str = "mmlu_pro", seed: int = 0) -> dict[str, Any]:
    """Decision cost and add-model time of DifficultyRouter vs the faithful routers (one split)."""
    from unirouter import UniRouter

    data = prepare_data(
        default_data_dir() / name,
        embedder=SentenceTransformerEmbedder(cache=default_cache_dir()),
        min_coverage=MIN_COVERAGE.get(name, 0.99),
    )
    rng = np.random.default_rng(seed)
    n, m = data.quality.shape
    perm, mperm = rng.permutation(n), rng.permutation(m)
    tr, va, te = (
        perm[: int(0.6 * n)],
        perm[int(0.6 * n) : int(0.7 * n)],
        perm[int(0.7 * n) :],
    )
    known, new = mperm[: 2 * m // 3], mperm[2 * m // 3 :]
    fit_kw = {
        "train_correctness": data.quality[np.ix_(tr, known)],
        "validation_correctness": data.quality[np.ix_(va, known)],
    }
    routers = {
        "UniRoute K-Means (K=20)": (UniRouter(20, random_state=seed), {}),
        "UniRoute LearnedMap (K=20)": (
            UniRouter(
                20, method="learned", random_state=seed, max_epochs=60, patience=8
            ),
            fit_kw,
        ),
        "DifficultyRouter (default: at most 8 factors)": (DifficultyRouter(random_state=seed), fit_kw),
        "DifficultyRouter (at most 3 factors)": (DifficultyRouter(3, random_state=seed), fit_kw),
    }
    x_test = np.ascontiguousarray(data.x[te])
    rows = {}
    for label, (router, kw) in routers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UniRouterWarning)
            t0 = time.perf_counter()
            router.fit(embeddings=data.x[tr], validation_embeddings=data.x[va], **kw)
            fit_s = time.perf_counter() - t0
        add = []
        for j in new:
            t0 = time.perf_counter()
            router.add_model(
                data.model_names[j],
                correctness=data.quality[va, j],
                cost=float(np.mean(data.cost[va, j])),
            )
            add.append(time.perf_counter() - t0)
        batch = []
        for _ in range(7):
            t0 = time.perf_counter()
            router.choose(x_test, 1.0)
            batch.append(time.perf_counter() - t0)
        single = []
        for i in range(200):
            t0 = time.perf_counter()
            router.route(embedding=x_test[i], cost_weight=1.0)
            single.append(time.perf_counter() - t0)
        rows[label] = {
            "fit_s": fit_s,
            "add_model_ms_median": 1e3 * float(np.median(add)),
            "add_model_ms_max": 1e3 * float(np.max(add)),
            "choose_us_per_prompt": 1e6 * float(np.median(batch)) / len(te),
            "route_one_us_median": 1e6 * float(np.median(single)),
        }
    return {
        "dataset": name,
        "n_val": len(va),
        "n_test": len(te),
        "n_new_models": len(new),
        "routers": rows,
    }


def speed_markdown(doc: dict[str, Any]) -> str:
    lines = [
        (
            f"{doc['dataset']}: S_val = {doc['n_val']} prompts, {doc['n_new_models']} models added, decisions on {doc['n_test']} precomputed embeddings "
            "(medians; the MiniLM embedding itself, several ms per prompt, is excluded and dominates a real `route`)."
        ),
        "",
        "| router | fit (s) | add_model median / max (ms) | choose, per prompt (us) | route one prompt (us) |",
        "|---|---|---|---|---|",
    ]
    for label, r in doc["routers"].items():
        lines.append(
            f"| {label} | {r['fit_s']:.1f} | {r['add_model_ms_median']:.2f} / {r['add_model_ms_max']:.2f} | {r['choose_us_per_prompt']:.2f} | {r['route_one_us_median']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", nargs="+", default=ALL)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--variant-trials", type=int, default=20)
    ap.add_argument("--sweep-trials", type=int, default=20)
    ap.add_argument("--val-sizes", type=int, nargs="+", default=[100, 200, 400, 800])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-clairvoyant",
        action="store_true",
        help="skip the clairvoyant K-NN reference (slow on mmlu_pro)",
    )
    ap.add_argument(
        "--add-sweep",
        action="store_true",
        help="run only the S_val sweep at --val-sizes and merge it into the existing beyond_<dataset>.json",
    )
    ap.add_argument(
        "--rebuild",
        action="store_true",
        help="only regenerate section_markdown of existing beyond_<dataset>.json files",
    )
    ap.add_argument(
        "--speed",
        action="store_true",
        help="only the decision-cost / add-model timing -> beyond_speed.json",
    )
    args = ap.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_beyond.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.add_sweep:
        embedder = SentenceTransformerEmbedder(cache=default_cache_dir())
        for name in args.datasets:
            path = RESULTS / f"beyond_{name}.json"
            doc = json.loads(path.read_text(encoding="utf-8"))
            t0 = time.perf_counter()
            data = prepare_data(default_data_dir() / name, embedder=embedder, min_coverage=MIN_COVERAGE.get(name, 0.99))
            for v in args.val_sizes:
                res = _run(data, ["zero", "knn", "kmeans", "learned", "difficulty"], args.sweep_trials, args.seed, val_size=v)
                doc["valsize"][str(v)] = {"methods": res["methods"], "labels": res["labels"], "paired": paired_vs(res, "difficulty"), "trials": res["trials"]}
                print(name, "val_size", v, json.dumps(paired_vs(res, "difficulty")), flush=True)
            doc["seconds"] = round(doc["seconds"] + time.perf_counter() - t0, 1)
            doc["command"] += " && " + command
            path.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
        args.rebuild = True
    if args.rebuild:
        for name in args.datasets:
            path = RESULTS / f"beyond_{name}.json"
            if path.is_file():
                doc = json.loads(path.read_text(encoding="utf-8"))
                sweep = doc.get("valsize") or {}
                for v in sweep.values():
                    v.setdefault("labels", doc["main"]["labels"])
                doc["section_markdown"] = (
                    method_markdown(name)
                    + "\n"
                    + section(
                        name,
                        doc["main"],
                        doc.get("variants"),
                        sweep,
                        doc["seconds"],
                        doc["machine"],
                    )
                )
                path.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
        return 0
    if args.speed:
        t0 = time.perf_counter()
        doc = speed(args.datasets[0], args.seed)
        md = speed_markdown(doc)
        print(md)
        out = {
            "title": "Beyond the paper: DifficultyRouter decision cost and add-model time",
            "command": command,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": machine_description(),
            "section_markdown": md,
            "seconds": round(time.perf_counter() - t0, 1),
            **doc,
        }
        (RESULTS / "beyond_speed.json").write_text(
            json.dumps(_clean(out), indent=1), encoding="utf-8"
        )
        return 0
    embedder = SentenceTransformerEmbedder(cache=default_cache_dir())
    for name in args.datasets:
        t0 = time.perf_counter()
        data = prepare_data(
            default_data_dir() / name,
            embedder=embedder,
            min_coverage=MIN_COVERAGE.get(name, 0.99),
        )
        methods = [
            m for m in MAIN if not (args.no_clairvoyant and m == "clairvoyant_knn")
        ]
        main_doc = _run(data, methods, args.trials, args.seed)
        print(
            format_table(main_doc),
            format_paired(main_doc),
            json.dumps(paired_vs(main_doc, "difficulty"), indent=1),
            sep="\n",
            flush=True,
        )
        var_doc = (
            _run(data, register_variants(), args.variant_trials, args.seed)
            if args.variant_trials
            else None
        )
        sweep = {}
        for v in args.val_sizes if args.sweep_trials else []:
            sweep[v] = _run(
                data,
                ["zero", "knn", "kmeans", "learned", "difficulty"],
                args.sweep_trials,
                args.seed,
                val_size=v,
            )
            print(
                name,
                "val_size",
                v,
                json.dumps(paired_vs(sweep[v], "difficulty")),
                flush=True,
            )
        seconds = time.perf_counter() - t0
        doc = {
            "title": f"Beyond the paper: DifficultyRouter on {name}",
            "command": command,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": machine_description(),
            "section_markdown": method_markdown(name)
            + "\n"
            + section(name, main_doc, var_doc, sweep, seconds, machine_description()),
            "dataset": name,
            "seconds": round(seconds, 1),
            "paired": paired_vs(main_doc, "difficulty"),
            "main": main_doc,
            "variants": var_doc,
            "valsize": {
                str(k): {
                    "methods": v["methods"],
                    "labels": v["labels"],
                    "paired": paired_vs(v, "difficulty"),
                    "trials": v["trials"],
                }
                for k, v in sweep.items()
            },
        }
        out = RESULTS / f"beyond_{name}.json"
        out.write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
        print(f"{name}: {seconds:.0f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
