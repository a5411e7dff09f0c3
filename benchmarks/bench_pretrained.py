"""How good is "universal"? Pre-trained routers against routers fitted on each dataset (issue 16).

For each shared dataset D with gold answers (MMLU-Pro, ZeroEval math + code) and each trial:

* the test prompts are a random half of D's prompts outside the bundled validation set (only
  prompts already embedded by the build, so the run stays bounded); the other half is D's own
  training split;
* the candidate models are D's models (complete on D), profiled from their labels on the **bundled
  validation set only** (as a user's new models would be); routing is scored on their recorded
  test labels and costs (AUDC, AUDC@50, QNC = normalised cost to reach the best single model's test
  quality, chosen on the validation labels, and "cost to best" in USD per query);
* routers compared, all with the same K as the shipped bundle:
  - ``own``: fitted on D's own training split (K-means; DifficultyRouter with D's models as the
    known models, the optimistic fixed-pool case);
  - ``leave-D-out``: fitted only on the *other* family's training prompts and models, i.e. a
    pre-trained router that never saw D;
  - ``shipped``: the bundled pre-trained router itself (its K-means saw D's training prompts, without
    labels; its DifficultyRouter saw D's known models' labels, so it is not a fair row for D);
  - ZeroRouter (no prompt information) as the floor.
* the validation-size question: the leave-D-out K-means router with profiles from a stratified
  subset of 100 or 200 bundled prompts instead of all of them.

Usage: python benchmarks/bench_pretrained.py [--trials 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402

from unirouter import DifficultyRouter, UniRouter, default_data_dir  # noqa: E402
from unirouter.routers.baselines import ZeroRouter  # noqa: E402
from unirouter.embedding.embedders import SentenceTransformerEmbedder, default_cache_dir  # noqa: E402
from unirouter.evaluation import best_single_point, curve_metrics, deferral_curve, operating_points  # noqa: E402
from unirouter.pretrained import load_pretrained, manifest  # noqa: E402
from unirouter.pretrained.build import load_families, select_training, select_validation  # noqa: E402

FAMILIES = ("mmlu_pro", "zeroeval_math_code")


def stratified_subset(groups: list[str], n: int, seed: int) -> np.ndarray:
    """About ``n`` validation rows, the same share of every group (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    for g in sorted(by):
        k = max(1, int(round(n * len(by[g]) / len(groups))))
        out.extend(rng.choice(by[g], size=min(k, len(by[g])), replace=False).tolist())
    return np.sort(np.asarray(out))


def evaluate(router, x_test, y_test, c_test, names, target, scale) -> dict[str, float]:
    gamma, cost, got = router.predict(embeddings=x_test, models=names)
    assert got == names
    pts = operating_points(gamma, cost, quality=y_test, realised_cost=c_test, cost_scale=scale)
    m = curve_metrics(deferral_curve(pts), target=target)
    m["cost_to_best_usd"] = m["qnc"] * scale if m["qnc_reached"] else float("nan")
    return m


def add_models(router, names, cols, yval, cval, rows=None):
    for name, j in zip(names, cols):
        y = yval[:, j].copy()
        if rows is not None:  # profile from a subset of the bundled prompts: the rest is unknown
            mask = np.ones(len(y), dtype=bool)
            mask[rows] = False
            y[mask] = np.nan
        router.add_model(name, correctness=y, cost=float(np.nanmean(cval[:, j])))
    return router


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=5)
    args = p.parse_args()

    meta = manifest()
    k = int(meta["settings"]["n_clusters"])
    fam = load_families(default_data_dir())
    items, y, cost = fam["items"], fam["y"], fam["cost"]
    val = select_validation(fam, per_category=24, per_task=55, seed=meta["seed"])
    train = select_training(fam, val, max_per_source={"mmlu_pro": 2500, "zeroeval_math_code": None}, seed=meta["seed"])
    emb = SentenceTransformerEmbedder(cache=default_cache_dir())
    xv = emb.embed([items[i].text for i in val])
    xt = emb.embed([items[i].text for i in train])
    train = np.asarray(train)
    src = np.array([items[i].source for i in train])
    yval, cval = y[val], cost[val]
    groups = [items[i].group for i in val]

    rows_out: list[list[str]] = []
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    for family in FAMILIES:
        mine, other = np.flatnonzero(src == family), np.flatnonzero(src != family)
        fam_rows = train[mine]
        cover = (~np.isnan(y[fam_rows])).mean(axis=0)
        cols = [j for j in np.flatnonzero(cover >= 0.99)]
        names = [fam["models"][j] for j in cols]
        other_cols = [j for j in np.flatnonzero((~np.isnan(y[train[other]])).mean(axis=0) >= 0.99)]
        shipped = {m: load_pretrained(m, models=names) for m in ("kmeans", "difficulty")}
        results: dict[str, list[dict[str, float]]] = {}
        for trial in range(args.trials):
            rng = np.random.default_rng(100 + trial)
            perm = rng.permutation(mine)
            own_idx, test_idx = np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2 :])
            x_test, y_test, c_test = xt[test_idx], y[train[test_idx]][:, cols], cost[train[test_idx]][:, cols]
            scale = float(np.nanmax(np.nanmean(c_test, axis=0)))
            best = best_single_point(y_test, c_test, select_quality=yval[:, cols], cost_scale=scale)
            target = best["quality"]

            routers = {}
            routers["ZeroRouter"] = add_models(ZeroRouter(embedder=emb).fit(validation_embeddings=xv), names, cols, yval, cval)
            routers["K-means, own split"] = add_models(
                UniRouter(k, random_state=trial, embedder=emb).fit(embeddings=xt[own_idx], validation_embeddings=xv), names, cols, yval, cval
            )
            lodo = UniRouter(k, random_state=trial, embedder=emb).fit(embeddings=xt[other], validation_embeddings=xv)
            routers[f"K-means, leave-{family}-out"] = add_models(lodo, names, cols, yval, cval)
            routers["K-means, shipped"] = shipped["kmeans"]
            for n_sub in (100, 200):
                sub = stratified_subset(groups, n_sub, seed=trial)
                r = UniRouter(k, random_state=trial, embedder=emb).fit(embeddings=xt[other], validation_embeddings=xv)
                routers[f"K-means, leave-out, {n_sub} val prompts"] = add_models(r, names, cols, yval, cval, rows=sub)
            own_y = y[train[own_idx]][:, cols]
            routers["Difficulty, own split"] = add_models(
                DifficultyRouter(random_state=trial, embedder=emb).fit(
                    embeddings=xt[own_idx], validation_embeddings=xv, train_correctness=own_y, validation_correctness=yval[:, cols]
                ),
                names, cols, yval, cval,
            )  # fmt: skip
            oy = y[train[other]][:, other_cols]
            routers[f"Difficulty, leave-{family}-out"] = add_models(
                DifficultyRouter(random_state=trial, embedder=emb).fit(
                    embeddings=xt[other], validation_embeddings=xv, train_correctness=oy, validation_correctness=yval[:, other_cols]
                ),
                names, cols, yval, cval,
            )  # fmt: skip
            routers["Difficulty, shipped (saw these models)"] = shipped["difficulty"]
            for label, r in routers.items():
                m = evaluate(r, x_test, y_test, c_test, names, target, scale)
                m["best_single_quality"] = target
                results.setdefault(label, []).append(m)
            print(f"{family} trial {trial}: done", file=sys.stderr, flush=True)
        raw[family] = results
        for label, ms in results.items():

            def mean(key: str, ms=ms) -> float:
                v = [r[key] for r in ms if np.isfinite(r[key])]
                return float(np.mean(v)) if v else float("nan")

            audc = np.array([r["audc"] for r in ms])
            se2 = 2 * audc.std(ddof=1) / np.sqrt(len(audc)) if len(audc) > 1 else float("nan")
            zero = np.array([r["audc"] for r in results["ZeroRouter"]])
            wins = float(np.mean(audc > zero)) if label != "ZeroRouter" else float("nan")

            rows_out.append(
                [
                    family,
                    label,
                    f"{mean('audc'):.4f} ± {se2:.4f}",
                    "-" if label == "ZeroRouter" else f"{wins:.0%}",
                    f"{mean('audc50'):.4f}",
                    f"{mean('qnc'):.3f}" + ("" if all(r["qnc_reached"] for r in ms) else "*"),
                    f"{mean('cost_to_best_usd'):.2e}",
                    f"{mean('best_single_quality'):.3f}",
                ]
            )
    header = ["dataset", "router", "AUDC (± 2 SE)", "beats ZeroRouter", "AUDC@50", "QNC", "cost to best ($/query)", "best single quality"]
    md = table(header, rows_out)
    print(md)
    section = (
        f"{args.trials} trials per dataset; test = half of the dataset's prompts outside the bundled validation set "
        f"(only those embedded by the build); candidates = the dataset's models complete on it, profiled from their "
        f"labels on the bundled validation set ({meta['validation']['n']} prompts) only; K = {k} (the bundle's). "
        "QNC = normalised cost to reach the best single model's test quality (* = not reached in some trial; mean "
        "over the trials that reached it). 'leave-D-out' routers never saw dataset D; 'shipped' rows are the "
        "bundled routers (their K-means saw D's training prompts without labels; their DifficultyRouter saw D's "
        "models' labels, and the test prompts were among its training prompts, so those rows are optimistic). "
        "'beats ZeroRouter' = share of trials with a higher AUDC than ZeroRouter on the same split.\n\n" + md
    )
    write_result("pretrained", title="Pre-trained routers vs routers fitted on each dataset (issue 16)", section_markdown=section, results=raw, n_clusters=k)


if __name__ == "__main__":
    main()
