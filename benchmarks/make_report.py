"""Generate benchmarks/RESULTS.md from every JSON file in benchmarks/results (never edit RESULTS.md by hand).

* ``eval_<dataset>_<kind>.json`` (written by ``benchmarks/run_evaluation.py`` or ``unirouter evaluate --json``):
  per dataset the main table, paired comparisons, the plot, the validation-size sweep, the
  K-sensitivity table, the variants tried and a cross-check against method.md section 5.
* Any other ``*.json`` with ``title``, ``command``, ``date``, ``machine`` and ``section_markdown``
  (other benchmarks): included as its own section, as written.

Usage: python benchmarks/make_report.py [--results DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from unirouter.cli.evaluate import format_paired, format_table

HERE = Path(__file__).resolve().parent
DATASET_ORDER = ["mmlu_pro", "zeroeval_math_code", "routerbench_subset"]
# method.md section 5 (20 trials, seeds 0-19): zero, knn, kmeans, learned, oracle
REFERENCE = {
    "mmlu_pro": (0.612, 0.621, 0.621, 0.622, 0.851),
    "zeroeval_math_code": (0.825, 0.829, 0.824, 0.828, 0.928),
    "routerbench_subset": (0.758, 0.771, 0.774, 0.770, 0.907),
}
REF_KEYS = ("zero", "knn", "kmeans", "learned", "oracle")
VAL_SIZES = (100, 200, 400, 800)


def _mean_se(vals: list[float]) -> tuple[float, float]:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in v) / (len(v) - 1)
    return m, math.sqrt(var / len(v))


def _pm(m: float | None, se: float | None, d: int = 3) -> str:
    m = float("nan") if m is None else m
    se = float("nan") if se is None else se
    if not math.isfinite(m):
        return "–"
    return f"{m:.{d}f}" if not math.isfinite(se) else f"{m:.{d}f} ± {2 * se:.{d}f}"


def _per_trial(doc: dict[str, Any], method: str, metric: str = "audc", seeds: range | None = None) -> list[float]:
    out = []
    for t in doc.get("per_trial", []):
        if seeds is not None and t.get("seed") not in seeds:
            continue
        v = t.get("metrics", {}).get(method, {}).get(metric)
        if v is not None:
            out.append(v)
    return out


def _significance(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None or entry.get("se") is None:
        return "n/a"
    m, se = entry["mean"], entry["se"]
    if abs(m) > 2 * se:
        return "significant (|mean| > 2 SE)"
    return "not significant (within 2 SE)"


def _load(results: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    evals: dict[str, dict[str, dict[str, Any]]] = {}
    others: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(results.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        if path.name.startswith("eval_") and "methods" in doc and "dataset" in doc:
            kind = doc.get("kind") or path.stem.split("_")[-1]
            evals.setdefault(doc["dataset"], {})[kind] = doc | {"_file": path.name}
        elif {"title", "section_markdown"} <= set(doc):
            others.append((path.name, doc))
    return evals, others


def _partial(d: dict[str, Any]) -> str:
    if d.get("partial"):
        return f" **PARTIAL: {d['trials']} of {d.get('trials_planned', '?')} planned trials finished when this report was generated.**"
    return ""


def _dataset_section(name: str, docs: dict[str, dict[str, Any]], results: Path) -> list[str]:
    out = [f"## {name}", ""]
    main = docs.get("main")
    if main:
        out += [
            (f"**Unseen-models protocol, {main['trials']} trials** (seeds {main['config'].get('seed', 0)}–"
            f"{main['config'].get('seed', 0) + main['trials'] - 1}); {main['n_items']} prompts complete over {main['n_models']} models; "
            f"per trial {len(main['per_trial'][0]['test_models']) if main.get('per_trial') else '?'} test-pool models. "
            f"Run time {main.get('wall_seconds', main.get('seconds', 0)):.0f} s "
            f"({main.get('wall_seconds', main.get('seconds', 0)) / max(main['trials'], 1):.1f} s per trial). "
            "Mean ± 2 SE over trials. 'vs ZeroRouter (points)': AUDC minus ZeroRouter's AUDC in the same trial, x 100 "
            "(accuracy points gained over a random mix of the models, averaged over the cost range); "
            "`unirouter evaluate --help` explains every column.") + _partial(main),
            "",
            format_table(main, markdown=True),
            "",
            "Paired comparisons (same trials):",
            "",
            format_paired(main, markdown=True),
            "",
        ]
        chosen = {m: e.get("chosen_params") for m, e in main["methods"].items() if e.get("chosen_params") and len(e["chosen_params"]) > 1}
        if chosen:
            out.append("Hyper-parameters chosen on the training pool (trials per value): " + "; ".join(
                f"{main['labels'].get(m, m)}: " + ", ".join(f"{k} ×{v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) for m, c in chosen.items()
            ) + ".")
            out.append("")
        png = results / f"{main['_file'][:-5]}.png"
        if png.is_file():
            out += [f"![deferral curves, {name}, trial 0](results/{png.name})", ""]
        ref = REFERENCE.get(name)
        if ref:
            seeds = range(20)
            cells = []
            for key, r in zip(REF_KEYS, ref):
                m20, se20 = _mean_se(_per_trial(main, key, seeds=seeds))
                mall = main["methods"].get(key, {}).get("audc", {}).get("mean", float("nan"))
                cells.append((key, r, m20, se20, mall))
            out += [
                "Cross-check with method.md section 5 (reference: independent implementation, 20 trials, seeds 0–19):",
                "",
                "| method | reference AUDC | ours, seeds 0–19 | ours, all trials |",
                "|---|---|---|---|",
            ]
            out += [f"| {main['labels'].get(k, k)} | {r:.3f} | {_pm(m, se)} | {mall:.3f} |" for k, r, m, se, mall in cells]
            out.append("")
    sweep = [(v, docs.get(f"valsize{v}")) for v in VAL_SIZES]
    sweep = [(v, d) for v, d in sweep if d]
    if sweep:
        trials = sorted({d["trials"] for _, d in sweep})
        out += [
            (f"**Validation-size sweep** (unseen-models; S_test stays 30 %; {', '.join(map(str, trials))} trials per size). AUDC mean ± 2 SE, "
            "and paired AUDC differences against K-NN:") + "".join(_partial(d) for _, d in sweep),
            "",
            "| S_val | ZeroRouter | K-NN | UniRoute K-Means | UniRoute LearnedMap | K-Means − K-NN | LearnedMap − K-NN | K-Means win rate | LearnedMap win rate |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for v, d in sweep:
            mm = d["methods"]
            p = d.get("paired", {})

            def cell(m: str, mm: dict[str, Any] = mm) -> str:
                e = mm.get(m, {}).get("audc")
                return _pm(e["mean"], e["se"]) if e and e.get("mean") is not None else "–"

            def diff(a: str, p: dict[str, Any] = p) -> str:
                e = p.get(f"{a}_minus_knn_audc")
                return _pm(e["mean"], e["se"] if e.get("se") is not None else float("nan"), 4) if e and e.get("mean") is not None else "–"

            def win(a: str, p: dict[str, Any] = p) -> str:
                w = p.get(f"{a}_vs_knn_audc_win_rate")
                return "–" if w is None else f"{100 * w:.0f}%"

            out.append(f"| {v} | {cell('zero')} | {cell('knn')} | {cell('kmeans')} | {cell('learned')} | {diff('kmeans')} | {diff('learned')} | {win('kmeans')} | {win('learned')} |")
        out.append("")
    ks = docs.get("ksens")
    if ks:
        out += [
            (f"**K-sensitivity** ({ks['trials']} trials): test-pool AUDC at every grid value (no selection), mean ± 2 SE; "
            "the row 'chosen' is the value picked on the training pool.") + _partial(ks),
            "",
        ]
        for m in ("knn", "kmeans", "learned"):
            e = ks["methods"].get(m, {})
            g = e.get("grid_audc")
            if not g:
                continue
            keys = sorted(g, key=lambda k: float(k.split("=")[-1]))
            out.append(f"| {ks['labels'].get(m, m)} | " + " | ".join(k for k in keys) + " | chosen |")
            out.append("|---|" + "---|" * (len(keys) + 1))
            chosen = e.get("audc", {})
            out.append(
                "| AUDC | " + " | ".join(_pm(g[k]["mean"], g[k]["se"] if g[k].get("se") is not None else float("nan")) for k in keys) + f" | {_pm(chosen.get('mean', float('nan')), chosen.get('se') or float('nan'))} |"
            )
            out.append("")
    ex = docs.get("explore")
    if ex:
        out += [
            (f"**Variants tried** ({ex['trials']} trials, unseen-models, every K chosen on the training pool; "
            "LearnedMap variants reuse the K chosen by K-Means unless marked 'own K search'):") + _partial(ex),
            "",
            format_table(ex, markdown=True),
            "",
            format_paired(ex, markdown=True),
            "",
            *_variant_pairs(ex),
        ]
    fixed = docs.get("fixed")
    if fixed:
        out += [f"**Fixed-pool protocol** ({fixed['trials']} trials; all models known, routed among all):" + _partial(fixed), "", format_table(fixed, markdown=True), ""]
    extra = [k for k in docs if k not in {"main", "ksens", "explore", "fixed"} | {f"valsize{v}" for v in VAL_SIZES}]
    for k in sorted(extra):
        d = docs[k]
        titles = {"select": "Shrinkage strength chosen on the training pool", "cli10": "`unirouter evaluate` run (10 trials; the 15-minute timing check)"}
        title = "Variants tried, cheaper ones with more trials" if k.startswith("explore") else titles.get(k, k)
        out += [f"**{title}** (`{d['_file']}`, {d['trials']} trials, {d['protocol']}):" + _partial(d), "", format_table(d, markdown=True), ""]
        if k.startswith(("explore", "select")):
            out += [format_paired(d, markdown=True), "", *_variant_pairs(d)]
    return out


def _variant_pairs(ex: dict[str, Any]) -> list[str]:
    """Each variant against its default (kmeans_* vs kmeans, learned_* vs learned), paired by trial."""
    rows = []
    for m in ex["methods"]:
        base = "kmeans" if m.startswith("kmeans_") else "learned" if m.startswith("learned_") else None
        base = base if base in ex["methods"] else None
        if base is None or base not in ex["methods"]:
            continue
        a, b = _per_trial(ex, m), _per_trial(ex, base)
        if not a or len(a) != len(b):
            continue
        d = [x - y for x, y in zip(a, b)]
        mean, se = _mean_se(d)
        wins = sum(1 for x in d if x > 0) + 0.5 * sum(1 for x in d if x == 0)
        rows.append(f"| {ex['labels'].get(m, m)} vs {ex['labels'].get(base, base)} | {_pm(mean, se, 4)} | {100 * wins / len(d):.0f}% |")
    if not rows:
        return []
    return ["Each variant against the default it modifies (paired AUDC difference, mean ± 2 SE; win rate):", "",
            "| variant vs default | AUDC difference | win rate |", "|---|---|---|", *rows, ""]


def _findings(evals: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    out = ["## Findings (generated from the numbers above)", ""]
    for name in [n for n in DATASET_ORDER if n in evals] + [n for n in evals if n not in DATASET_ORDER]:
        main = evals[name].get("main")
        if not main:
            continue
        p = main.get("paired", {})
        mm = main["methods"]
        lines = []
        for a in ("kmeans", "learned"):
            e = p.get(f"{a}_minus_knn_audc")
            w = p.get(f"{a}_vs_knn_audc_win_rate")
            if e:
                verdict = "beats" if e["mean"] > 2 * (e.get("se") or 0) else ("is worse than" if e["mean"] < -2 * (e.get("se") or 0) else "does not separate from")
                lines.append(
                    f"{main['labels'].get(a, a)} {verdict} K-NN: AUDC difference {e['mean']:+.4f} ± {2 * (e.get('se') or 0):.4f} "
                    f"(win rate {100 * (w or 0):.0f}%, sign-test p = {p.get(f'{a}_vs_knn_sign_test_p', float('nan')):.2g})"
                )
        z, o = mm.get("zero", {}).get("audc", {}).get("mean"), mm.get("oracle", {}).get("audc", {}).get("mean")
        cl = mm.get("clairvoyant_knn", {}).get("audc", {}).get("mean")
        best = max((mm[m]["audc"]["mean"], m) for m in ("knn", "kmeans", "learned") if m in mm)
        if z is not None and o is not None:
            lines.append(
                f"the best realistic router ({main['labels'].get(best[1], best[1])}, {best[0]:.3f}) gains {best[0] - z:+.3f} AUDC over ZeroRouter ({z:.3f}); "
                f"the oracle is at {o:.3f}, so {100 * (best[0] - z) / (o - z):.0f}% of the oracle gap is closed"
            )
        if cl is not None and z is not None:
            lines.append(
                f"clairvoyant K-NN (S_tr with the test pool's labels) reaches {cl:.3f}" + (" — not above ZeroRouter" if cl <= z + 1e-9 else "")
            )
        sel = evals[name].get("select")
        if sel:
            for m, base in (("kmeans_sel_a", "kmeans"), ("learned_sel_a", "learned")):
                a, b = _per_trial(sel, m), _per_trial(sel, base)
                if a and len(a) == len(b):
                    mean, se = _mean_se([x - y for x, y in zip(a, b)])
                    lines.append(
                        f"choosing the shrinkage strength a ∈ {{1, 5, 20, 50}} with K on the training pool changes {main['labels'].get(base, base)} by "
                        f"{mean:+.4f} ± {2 * se:.4f} AUDC ({sel['trials']} trials)"
                    )
        sweep = [(v, evals[name].get(f"valsize{v}")) for v in VAL_SIZES]
        sweep = [(v, d) for v, d in sweep if d and d.get("paired", {}).get("learned_minus_knn_audc")]
        if len(sweep) >= 2:
            parts = []
            for v, d in (sweep[0], sweep[-1]):
                e, k = d["paired"]["learned_minus_knn_audc"], d["paired"].get("kmeans_minus_knn_audc", {})
                parts.append(f"S_val = {v}: LearnedMap − K-NN {e['mean']:+.4f}, K-Means − K-NN {k.get('mean', float('nan')):+.4f}")
            lines.append("validation-size sweep (" + "; ".join(parts) + f"; {sweep[0][1]['trials']} trials per size)")
        out.append(f"- **{name}**: " + "; ".join(lines) + ".")
    out.append("")
    return out


def build(results: Path) -> str:
    evals, others = _load(results)
    out = [
        "# unirouter benchmark results",
        "",
        "Generated by `python benchmarks/make_report.py` from the JSON files in `benchmarks/results/` — do not edit by hand.",
        "Metric definitions and protocol: `../shared/docs/method.md` sections 3 and 3.1 (implemented in `unirouter.evaluation`).",
        "",
    ]
    machines = sorted({d.get("machine", "?") for docs in evals.values() for d in docs.values()})
    if machines:
        out += [
            "Evaluation machine: " + "; ".join(machines) + ". The CPU was shared with other engineers' jobs (load average 10–16 on 2 cores "
            "during these runs, several evaluation runs in parallel at `nice -n 10`, one thread each); run times are wall-clock under that load.",
            "",
        ]
    if evals:
        out += [
            "## Evaluation setup",
            "",
            ("- Protocol `unseen-models` (method.md 3): per trial t (seed t), 2/3 of the models form the training pool and 1/3 the test pool; "
            "prompts split 60/10/30 into S_tr/S_val/S_test. Test-pool models are known only through their S_val labels and S_val mean cost; "
            "operating points use realised per-query costs on S_test; costs normalised by the largest mean realised cost of a single test-pool model."),
            ("- Exact sweep of the cost weight (every breakpoint of each prompt's lower envelope; lam = 0 up to all-cheapest); "
            "deferral curve = upper convex hull made non-decreasing; AUDC over [0, 1], AUDC@50 over [0, 0.5] (not rescaled); QNC against the best "
            "single test-pool model's S_test accuracy (1.0 when never reached; the count is reported)."),
            ("- K ∈ {5, 10, 20, 40, 80} for UniRoute K-Means and k ∈ {5, 10, 25, 50, 100} for K-NN and clairvoyant K-NN are chosen per trial on the "
            "training pool only (inner split of the training-pool models 2/3 : 1/3, inner AUDC on S_test with training-pool labels). LearnedMap uses the "
            "K chosen for K-Means (it starts from those centroids; its own search is in 'variants tried'), Adam, ≤ 60 epochs, patience 8, prior strength 1. "
            "K-means: scikit-learn, n_init = 1."),
            ("- ZeroRouter = upper hull of the single test-pool models' S_test points (method.md 2.3); 'ZeroRouter (S_val)' is the realistic "
            "prompt-independent router (global S_val error) for comparison. Oracle decides with the true S_test error and realised cost."),
            ("- Models: complete ones only (mmlu_pro: 30 models without DeepSeek-Coder-V2, 11,919 prompts; zeroeval_math_code: the 29 complete models; "
            "routerbench_subset: 11). Embeddings: all-MiniLM-L6-v2 of the manifest's text field, from the on-disk cache."),
            "",
        ]
        out += _findings(evals)
    for name in [n for n in DATASET_ORDER if n in evals] + sorted(n for n in evals if n not in DATASET_ORDER):
        out += _dataset_section(name, evals[name], results)
    if evals:
        out += [
            "## Commands and run times",
            "",
            (
                "Every run was started as `nice -n 10 <command>` from the repository root, one thread per run, several runs in parallel on the shared "
                "2-core machine. Runs with `--results-dir` wrote to a scratch folder and were copied into `benchmarks/results/` once complete "
                "(they replace earlier runs of the same kind with fewer trials). Wall time is the run's own time for that file."
            ),
            "",
            "| file | command | trials | wall time (s) | date |",
            "|---|---|---|---|---|",
        ]
        # (partial runs: trials finished so far / planned)
        for name in evals:
            for kind, d in sorted(evals[name].items()):
                n = f"{d['trials']} of {d.get('trials_planned')} (partial)" if d.get("partial") else str(d["trials"])
                out.append(f"| {d['_file']} | `{d.get('command', '?')}` | {n} | {d.get('wall_seconds', d.get('seconds', 0)):.0f} | {d.get('date', '?')} |")
        out.append("")
    for fname, d in others:
        out += [f"## {d['title']}", "", d["section_markdown"].rstrip(), "", f"_Source: `results/{fname}`; command `{d.get('command', '?')}`; {d.get('date', '?')}; {d.get('machine', '?')}._", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    text = build(Path(args.results))
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
