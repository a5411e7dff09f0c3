"""Decisions on real traffic (issue 17): budgets under a traffic shift, the price of long prompts,
quality floors on held-out prompts, and which text to route on.

Sections (each can be run alone with ``--only``):

* ``budget``: a UniRouter (K-means and learned map) fitted on MMLU-Pro's training split, every
  complete model added from the validation split, a budget calibrated on the validation prompts.
  Streams of held-out test prompts are replayed call by call, each call costing the chosen model's
  recorded cost on that question: the same mix as the validation set, history questions only and
  law questions only (repeated, reshuffled, to ``--calls`` calls). Static = the calibrated cost weight
  throughout; paced = :class:`unirouter.routers.pacing.BudgetPacer` started at the same weight and told
  each call's realised cost. Figure: realised mean spend / budget, and accuracy.
* ``floor``: ``quality_floor``, ``max_quality_drop`` and ``max_top_share`` calibrated on the validation
  prompts vs what the held-out test prompts realise (predicted error vs ``honest=True``, out of fold);
  ``max_top_share`` also replayed call by call (1,500 calls: the same mix, and only the 3 test
  categories the calibrated weight sends most to the top model) with the
  calibrated weight (static) and with the pool's top-share pacer (paced).
* ``price``: expected cost of long prompts (the question inside a 40,000-character context) from the
  router's profile alone vs :class:`unirouter.profiling.pricing.CallPricer` (input tokens of the prompt sent at
  each model's price + expected output), against the true cost of the call.
* ``routing_text``: a labelled set of follow-ups, new questions after history, RAG prompts and
  system-prompted questions (built from held-out questions, see ``labelled_cases``); each
  ``routing_input`` choice is scored by agreement with the decision on the underlying question.

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

N_TRAIN, N_VAL, N_TEST_MIX = 400, 150, 150  # the test suite's MMLU-Pro slice (tests/conftest.py)
N_TEST_HISTORY, N_TEST_LAW = 200, 150


def _data(seed: int) -> dict[str, Any]:
    """A bounded subset of MMLU-Pro (the machine is shared; every embedding is cached on disk): the
    test suite's 400/150/150 slice of complete models (same rows for seed 0), plus held-out history
    and law questions outside it for the shifted streams."""
    from unirouter import default_data_dir, load_dataset

    ds = load_dataset(default_data_dir() / "mmlu_pro", load_responses=False)
    models = ds.complete_models(min_coverage=0.99)
    rows = ds.complete_rows(models)
    first: dict[str, int] = {}
    for i in rows:
        first.setdefault(ds.texts[i], int(i))
    rows = np.array(sorted(first.values()))
    rng = np.random.default_rng(seed)
    pick = rng.choice(rows, size=N_TRAIN + N_VAL + N_TEST_MIX, replace=False)
    ds = ds.subset(rows, models=models)
    pos = {int(r): k for k, r in enumerate(rows)}
    pick = np.array([pos[int(r)] for r in pick])
    tr, va, mix = pick[:N_TRAIN], pick[N_TRAIN : N_TRAIN + N_VAL], pick[N_TRAIN + N_VAL :]
    groups = np.asarray(ds.groups)
    used = set(pick.tolist())
    others = [i for i in np.random.default_rng(seed + 1).permutation(len(ds)) if int(i) not in used]
    hist = [i for i in others if groups[i] == "history"][:N_TEST_HISTORY]
    law = [i for i in others if groups[i] == "law"][:N_TEST_LAW]
    te = np.concatenate([mix, hist, law]).astype(int)
    out = {"all": ds, "train": ds.subset(tr), "val": ds.subset(va), "test": ds.subset(te)}
    out["test_streams"] = {
        "same mix": np.arange(len(mix)),
        "history only": len(mix) + np.arange(len(hist)),
        "law only": len(mix) + len(hist) + np.arange(len(law)),
    }
    for k in ("train", "val", "test"):
        print(f"embedding {k} ({len(out[k])} prompts) ...", flush=True)
        out[f"x_{k}"] = cached_embeddings(out[k].texts)
    return out


def _router(d: dict[str, Any], method: str, seed: int) -> Any:
    from unirouter import SentenceTransformerEmbedder, UniRouter, UniRouterWarning
    from unirouter.embedding.embedders import default_cache_dir

    router = UniRouter(8, method=method, random_state=seed, embedder=SentenceTransformerEmbedder(cache=default_cache_dir()))
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
    from unirouter.routers.calibration import _lam_max
    from unirouter.routers.pacing import BudgetPacer

    test, x_te = d["test"], d["x_test"]
    streams = d["test_streams"]
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
                pacer = BudgetPacer(budget, cost_weight=lam0, min_cost_weight=hi * 1e-12, max_cost_weight=hi)
                p_cost, p_acc = np.empty(len(order)), np.empty(len(order))
                for t, i in enumerate(order):
                    j = int(router.choose(x_te[i : i + 1], pacer.cost_weight)[0])
                    p_cost[t], p_acc[t] = cost_true[i, j], corr_true[i, j]
                    pacer.update(float(p_cost[t]))
                floor_cost = cost_true[order, router.choose(x_te[order], hi)]  # everything to its cheapest model
                last = slice(len(order) // 2, None)
                rec = {
                    "method": method, "budget_position": frac, "budget": budget, "stream": sname, "calls": len(order),
                    "distinct_prompts": int(len(rows)),
                    "static_spend_ratio": float(s_cost.mean() / budget), "paced_spend_ratio": float(p_cost.mean() / budget),
                    "paced_spend_ratio_second_half": float(p_cost[last].mean() / budget),
                    "cheapest_routing_ratio": float(floor_cost.mean() / budget),
                    "static_accuracy": float(s_acc.mean()), "paced_accuracy": float(p_acc.mean()),
                }  # fmt: skip
                raw.append(rec)
                rows_out.append([
                    method, f"{budget:.3g}", sname, len(order), f"{rec['cheapest_routing_ratio']:.2f}x", f"{rec['static_spend_ratio']:.2f}x",
                    f"{rec['paced_spend_ratio']:.2f}x", f"{rec['paced_spend_ratio_second_half']:.2f}x",
                    f"{rec['static_accuracy']:.3f}", f"{rec['paced_accuracy']:.3f}",
                ])  # fmt: skip
                print(rows_out[-1], flush=True)
    md = (
        f"Budget calibrated on the validation prompts (MMLU-Pro, {len(d['val'].model_names)} complete models, "
        f"{N_TRAIN} training / {N_VAL} validation prompts, seed {seed}); streams of held-out test prompts replayed call by call at each chosen model's recorded cost. "
        "Static = calibrated cost weight; paced = `BudgetPacer` (rate 0.05) from the same weight. "
        "Cheapest routing = every call to the router's cheapest choice (lambda at its maximum): when it is above "
        "1x the budget cannot be kept on that stream by any routing.\n\n"
        + table(
            ["map", "budget $", "stream", "calls", "cheapest routing/budget", "static spend/budget", "paced spend/budget", "paced, 2nd half", "static acc", "paced acc"],
            rows_out,
        )
    )
    return md, {"budget": raw}


def routing_mean(gamma: np.ndarray, cost: np.ndarray, lam: float) -> float:
    from unirouter.routers.calibration import routing_summary

    return float(routing_summary(gamma, cost, lam)["cost"])


FOLLOW_UPS = (
    "Why? Explain step by step.",
    "Are you sure? Please double-check.",
    "Can you explain that more simply?",
    "Show your reasoning.",
    "What would change if the last option were correct instead?",
    "Walk me through how you eliminated the other options.",
    "Summarise the key idea in one sentence.",
    "Which option is the most tempting wrong answer, and why?",
)
LLAMAINDEX_QA = (
    "Context information is below.\n---------------------\n{context}\n---------------------\n"
    "Given the context information and not prior knowledge, answer the query.\nQuery: {query}\nAnswer: "
)
LANGCHAIN_RAG = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to "
    "answer the question. If you don't know the answer, just say that you don't know. Use three sentences "
    "maximum and keep the answer concise.\nQuestion: {query} \nContext: {context} \nAnswer:"
)
N_CASES = 24


def labelled_cases(d: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Conversations whose routing label is known: the question that gives the last turn its meaning.

    Built from held-out test questions (never the training or validation prompts): a follow-up after a
    question and an answer; a new self-contained question after an earlier exchange; the question
    inside LlamaIndex's text-QA template and inside a common LangChain RAG prompt, each with the
    three training questions nearest to it as "retrieved" context; and a question after a system prompt.
    """
    test, mix = d["test"], d["test_streams"]["same mix"]
    rng = np.random.default_rng(seed + 17)
    rows = rng.permutation(mix)
    x_tr = d["x_train"]
    cases = []
    for k in range(N_CASES):
        i, prev = int(rows[k]), int(rows[-1 - k])
        q, qp = test.texts[i], test.texts[prev]
        near = np.argsort(-(x_tr @ d["x_test"][i]))[:3]
        context = "\n\n".join(d["train"].texts[j] for j in near)
        ans = "Let's think step by step. Comparing the options, the answer is (B)."
        cases += [
            {"kind": "follow-up", "row": i, "turns": [("user", q), ("assistant", ans), ("user", FOLLOW_UPS[k % len(FOLLOW_UPS)])]},
            {"kind": "new question after history", "row": i, "turns": [("user", qp), ("assistant", ans), ("user", q)]},
            {"kind": "RAG (LlamaIndex text-QA)", "row": i, "turns": [("system", "You are an expert Q&A system."), ("user", LLAMAINDEX_QA.format(context=context, query=q))]},
            {"kind": "RAG (LangChain prompt)", "row": i, "turns": [("user", LANGCHAIN_RAG.format(context=context, query=q))]},
            {"kind": "system prompt + question", "row": i, "turns": [("system", "You are a careful tutor. Answer with the letter."), ("user", q)]},
        ]  # fmt: skip
    return cases


def routing_text_section(d: dict[str, Any], seed: int) -> tuple[str, dict[str, Any]]:
    from unirouter import calibrate_cost_weight
    from unirouter.integration.routing_text import ROUTING_INPUTS, routing_text
    from unirouter.routers.calibration import _lam_max

    router = _router(d, "kmeans", seed)
    test = d["test"]
    cols = test.model_index(router.models_)
    corr = test.correctness[:, cols]
    gamma_v, cost_v, _ = router.predict(embeddings=d["x_val"])
    c_lo, c_hi = routing_mean(gamma_v, cost_v, _lam_max(gamma_v, cost_v)), routing_mean(gamma_v, cost_v, 0.0)
    budget = float(np.sqrt(c_lo * c_hi))
    lams = {"quality only (lambda=0)": 0.0, f"budget {budget:.2g}": calibrate_cost_weight(router, embeddings=d["x_val"], budget=budget)}
    cases = labelled_cases(d, seed)
    kinds = sorted({c["kind"] for c in cases}, key=[c["kind"] for c in cases].index)
    texts = {how: [routing_text(c["turns"], how) for c in cases] for how in ROUTING_INPUTS}
    print("embedding routing texts ...", flush=True)
    uniq = sorted({t for ts in texts.values() for t in ts})
    emb = dict(zip(uniq, cached_embeddings(uniq)))
    x_label = d["x_test"][[c["row"] for c in cases]]
    rows_md, raw = [], []
    for lname, lam in lams.items():
        label = router.choose(x_label, lam)
        acc_label = corr[[c["row"] for c in cases], label]
        for how in ROUTING_INPUTS:
            pick = router.choose(np.vstack([emb[t] for t in texts[how]]), lam)
            agree = pick == label
            acc = corr[[c["row"] for c in cases], pick]
            per_kind = {k: float(np.mean([a for a, c in zip(agree, cases) if c["kind"] == k])) for k in kinds}
            raw.append({"cost_weight": lname, "routing_input": how, "agreement": float(agree.mean()), "accuracy": float(acc.mean()),
                        "label_accuracy": float(acc_label.mean()), "per_kind_agreement": per_kind})  # fmt: skip
            rows_md.append([lname, how, f"{agree.mean():.3f}", *[f"{per_kind[k]:.2f}" for k in kinds], f"{acc.mean():.3f}", f"{acc_label.mean():.3f}"])
            print(rows_md[-1], flush=True)
    md = (
        f"{len(cases)} labelled conversations ({N_CASES} held-out MMLU-Pro test questions x {len(kinds)} kinds); the label "
        "is the decision on the question that gives the last turn its meaning. Agreement = same model as the label; "
        "accuracy = recorded correctness of the chosen model on that question (K-means router, K=8).\n\n"
        + table(["cost weight", "routing_input", "agreement", *kinds, "accuracy", "label's accuracy"], rows_md)
    )
    return md, {"routing_text": raw}


def price_section(d: dict[str, Any], seed: int) -> tuple[str, dict[str, Any]]:
    from unirouter.profiling.pricing import CallPricer, count_tokens
    from unirouter.profiling.profiler import TokenPrice

    router = _router(d, "kmeans", seed)
    test = d["test"]
    names = router.models_
    cols = test.model_index(names)
    rows = d["test_streams"]["same mix"][:100]
    prices = {m["model"]: TokenPrice(input_per_mtok=float(m["price_in_usd_per_mtok"]), output_per_mtok=float(m["price_out_usd_per_mtok"])) for m in test.models}
    pricer = CallPricer(prices)
    x = d["x_test"][rows]
    base = router.predict(embeddings=x)[1]
    padding = "\n\n".join(d["train"].texts)
    rows_md, raw = [], []
    for label, chars in (("bare question", 0), ("question + 4,000-char context", 4_000), ("question + 40,000-char context", 40_000)):
        sent = [padding[:chars] + test.texts[i] for i in rows]
        tin = np.array([count_tokens(s) for s in sent])
        priced = pricer.expected_costs(router, x, tin, names, base)
        q_tin = np.array([count_tokens(test.texts[i]) for i in rows])
        errs_b, errs_p = [], []
        for j, name in enumerate(names):
            p = prices[name]
            out_cost = test.cost[rows, cols[j]] - q_tin * p.input_per_mtok / 1e6  # the recorded output's cost
            true = tin * p.input_per_mtok / 1e6 + out_cost
            errs_b.append(np.abs(base[:, j] - true).mean() / true.mean())
            errs_p.append(np.abs(priced[:, j] - true).mean() / true.mean())
            if name == "gpt-4o-2024-05-13":
                g = (float(base[:, j].mean()), float(priced[:, j].mean()), float(true.mean()))
        raw.append({"prompt": label, "profile_rel_error": float(np.mean(errs_b)), "priced_rel_error": float(np.mean(errs_p)), "gpt4o_profile_priced_true": g})
        rows_md.append([label, f"{np.mean(errs_b):.3f}", f"{np.mean(errs_p):.3f}", f"${g[0]:.5f}", f"${g[1]:.5f}", f"${g[2]:.5f}"])
        print(rows_md[-1], flush=True)
    md = (
        "Expected cost per call of 100 held-out questions, sent bare or inside a context, against the true cost "
        "(input tokens of the prompt sent + the model's recorded output, at its list price). Profile = the router's "
        "per-cluster mean cost; priced = `CallPricer` (prompt tokens at each model's price + expected output tokens "
        "of the prompt's cluster). Relative error = mean |expected - true| / mean true, averaged over the models.\n\n"
        + table(["prompt sent", "profile rel. error", "priced rel. error", "gpt-4o profile", "gpt-4o priced", "gpt-4o true"], rows_md)
    )
    return md, {"price": raw}


def floor_section(d: dict[str, Any], seed: int) -> tuple[str, dict[str, Any]]:
    from unirouter import InvalidInputError, calibrate_cost_weight

    rows_md, raw = [], []
    test = d["test"]
    mix = d["test_streams"]["same mix"]
    for method in ("kmeans", "learned"):
        router = _router(d, method, seed)
        cols = test.model_index(router.models_)
        corr = test.correctness[np.ix_(mix, cols)]
        x = d["x_test"][mix]
        best_val = float(np.nanmean(d["val"].correctness[:, d["val"].model_index(router.models_)], axis=0).max())
        best_test = float(np.nanmean(corr, axis=0).max())
        targets = [("quality_floor", round(best_val - d, 3)) for d in (0.02, 0.05, 0.08)] + [("max_quality_drop", 0.02), ("max_quality_drop", 0.06)]
        for kind, value in targets:
            for honest in (False, True):
                try:
                    lam = calibrate_cost_weight(router, embeddings=d["x_val"], honest=honest, **{kind: value})
                except InvalidInputError as e:  # the out-of-fold check refuses a floor it cannot reach
                    raw.append({"method": method, "target": kind, "value": value, "honest": honest, "refused": str(e)})
                    rows_md.append([method, f"{kind}={value}", "out-of-fold" if honest else "predicted", "-", "refused: unreachable out of fold", "-", "-"])
                    print(rows_md[-1], flush=True)
                    continue
                pick = router.choose(x, lam)
                realised = float(corr[np.arange(len(mix)), pick].mean())
                target = value if kind == "quality_floor" else best_test - value
                cost = float(test.cost[np.ix_(mix, cols)][np.arange(len(mix)), pick].mean())
                raw.append({"method": method, "target": kind, "value": value, "honest": honest, "realised": realised, "target_on_test": target, "cost": cost})
                rows_md.append([method, f"{kind}={value}", "out-of-fold" if honest else "predicted", f"{target:.3f}", f"{realised:.3f}", f"{realised - target:+.3f}", f"{cost:.5f}"])
                print(rows_md[-1], flush=True)
        for share in (0.2,):
            lam = calibrate_cost_weight(router, embeddings=d["x_val"], max_top_share=share)
            gamma_t, cost_t, _ = router.predict(embeddings=x)
            top = int(np.argmax(cost_t.mean(axis=0)))
            realised = float((router.choose(x, lam) == top).mean())
            raw.append({"method": method, "target": "max_top_share", "value": share, "realised": realised})
            rows_md.append([method, f"max_top_share={share}", "predicted", f"{share:.3f}", f"{realised:.3f}", f"{realised - share:+.3f}", "-"])
            for stream_name in ("same mix", "top-heavy categories"):
                r = paced_top_share(router, d, share, stream_name, seed)
                raw.append({"method": method, "target": "max_top_share", "value": share, **r})
                for how in ("static", "paced"):
                    rows_md.append(
                        [method, f"max_top_share={share}", f"{how}, {stream_name} ({r['calls']} calls)", f"{share:.3f}",
                         f"{r[how]:.3f}", f"{r[how] - share:+.3f}", f"{r[how + '_cost']:.5f}"]
                    )
                print(rows_md[-2:], flush=True)
    md = (
        f"Targets calibrated on the {N_VAL} validation prompts, realised on {len(mix)} held-out test prompts "
        "(recorded correctness). `predicted` = the router's predicted error (in-sample); `out-of-fold` = "
        "`calibrate_cost_weight(..., honest=True)`. For `max_quality_drop` the target on test is the best single model's "
        "test accuracy minus the drop. `max_top_share` rows `static`/`paced`: 1,500 calls replayed one by one from the "
        "held-out mix, or from only the 3 categories the calibrated weight sends most to the top model (a shift); "
        "`realised` = share of calls answered by the top model (the most expensive on the validation prompts); static = "
        "the calibrated weight, paced = `CandidatePool.top_share_pacer` (the weight moved after every call). The cap is a "
        "maximum: a share below it (the learned map never sends these prompts to gpt-4o, even at lambda = 0) gives up nothing.\n\n"
        + table(["map", "target", "calibration", "target on test", "realised", "realised - target", "mean cost $"], rows_md)
    )
    return md, {"floor": raw}


def sticky_section(d: dict[str, Any], seed: int) -> tuple[str, dict[str, Any]]:
    """Conversations of 4 user turns (a question, two follow-ups, a new question), routed per turn
    through ``CandidatePool`` with ``session`` + ``switch_cost``; the provider's prompt cache is
    modelled as cached input tokens billed at 50% (OpenAI's discount) when a turn goes to the same
    model as the previous one."""
    from unirouter.integration import CandidatePool
    from unirouter.profiling.pricing import count_tokens
    from unirouter.integration.routing_text import routing_text

    router = _router(d, "kmeans", seed)
    test, mix = d["test"], d["test_streams"]["same mix"]
    names = router.models_
    cols = test.model_index(names)
    price_in = {m["model"]: float(m["price_in_usd_per_mtok"]) for m in test.models}
    rng = np.random.default_rng(seed + 5)
    rows = rng.permutation(mix)
    n_conv = N_CASES
    answer = "Let's think step by step. " * 60 + "The answer is (B)."  # a chain-of-thought-sized reply
    rows_md, raw = [], []
    for switch_cost in (None, 0.01, 0.03, 0.1):
        pool = CandidatePool(router)
        for n in names:
            pool.add(n, object(), None, cost=float(router.get_profile(n).cost_per_query))
        switches = acc = cost_in = 0.0
        turns_total = 0
        for c in range(n_conv):
            q, q2 = int(rows[c]), int(rows[-1 - c])
            user_turns = [(test.texts[q], q), (FOLLOW_UPS[c % len(FOLLOW_UPS)], q), (FOLLOW_UPS[(c + 3) % len(FOLLOW_UPS)], q), (test.texts[q2], q2)]
            convo: list[tuple[str, str]] = []
            prev = None
            opts = {"cost_weight": 0.0, "session": f"s{c}", **({"switch_cost": switch_cost} if switch_cost is not None else {})}
            for text, about in user_turns:
                prefix_tokens = sum(count_tokens(t) for _, t in convo)
                convo.append(("user", text))
                dec = pool.decide(routing_text(convo), opts)
                pool.settle(dec, [{"model": dec.model, "ok": True}], opts)
                m = dec.model
                cached = prefix_tokens if m == prev else 0.0
                cost_in += ((prefix_tokens - cached) + 0.5 * cached + count_tokens(text)) * price_in[m] / 1e6
                switches += float(prev is not None and m != prev)
                acc += float(test.correctness[about, cols[names.index(m)]])
                turns_total += 1
                prev = m
                convo.append(("assistant", answer))
        rec = {"switch_cost": switch_cost, "switches_per_conversation": switches / n_conv, "accuracy": acc / turns_total,
               "input_cost_per_conversation": cost_in / n_conv}  # fmt: skip
        raw.append(rec)
        rows_md.append(["off" if switch_cost is None else f"{switch_cost}", f"{rec['switches_per_conversation']:.2f}", f"{rec['accuracy']:.3f}", f"${rec['input_cost_per_conversation']:.5f}"])
        print(rows_md[-1], flush=True)
    md = (
        f"{n_conv} conversations of 4 user turns (held-out question, two follow-ups, a new question), routed at lambda=0 "
        "with `routing_input=\"contextual\"`; answers are ~1,500 characters. Input cost counts the conversation re-sent at "
        "every turn, with the cached prefix at 50% when the turn stays on the previous model. Accuracy = recorded "
        "correctness of the chosen model on the question each turn is about.\n\n"
        + table(["switch_cost", "switches / conversation", "accuracy", "input $ / conversation"], rows_md)
    )
    return md, {"sticky": raw}


def paced_top_share(router: Any, d: dict[str, Any], share: float, stream_name: str, seed: int, calls: int = 1500) -> dict[str, Any]:
    """``max_top_share`` on a replayed stream of held-out prompts: the weight calibrated on the validation
    prompts throughout (static) vs the pool's top-share pacer (``CandidatePool.top_share_pacer``, fed
    1 when its top model answered, else 0). Share of calls answered by that model, and mean cost."""
    from unirouter.integration import CandidatePool

    test = d["test"]
    pool = CandidatePool(router)
    for name in router.models_:
        pool.add(name, object(), None, cost=float(np.nanmean(d["val"].cost[:, d["val"].model_index([name])[0]])))
    pacer = pool.top_share_pacer(share)
    names = list(router.models_)
    top = names.index(pacer.top_model)
    cost_true = test.cost[:, test.model_index(names)]
    rows = d["test_streams"]["same mix"]
    if stream_name == "top-heavy categories":  # a shift: the 3 categories the static weight sends most to the top model
        groups = np.asarray(test.groups)[rows]
        on_top = router.choose(d["x_test"][rows], pacer.initial_cost_weight) == top
        by_group = {g: on_top[groups == g].mean() for g in set(groups)}
        rows = rows[np.isin(groups, sorted(by_group, key=lambda g: (-by_group[g], g))[:3])]
    stream = _stream(rows, calls, np.random.default_rng(seed))
    x = d["x_test"][stream]
    static = router.choose(x, pacer.initial_cost_weight)
    paced = np.empty(len(stream), dtype=int)
    for k in range(len(stream)):
        paced[k] = int(router.choose(x[k : k + 1], pacer.cost_weight)[0])
        pacer.update(1.0 if paced[k] == top else 0.0)
    return {
        "stream": stream_name,
        "calls": len(stream),
        "top_model": pacer.top_model,
        "calibrated_cost_weight": pacer.initial_cost_weight,
        "final_cost_weight": pacer.cost_weight,
        "min_cost_weight": pacer.min_cost_weight,
        "static": float((static == top).mean()),
        "paced": float((paced == top).mean()),
        "paced_second_half": float((paced[len(paced) // 2 :] == top).mean()),
        "static_cost": float(cost_true[stream, static].mean()),
        "paced_cost": float(cost_true[stream, paced].mean()),
    }


SECTIONS = {"budget": budget_section, "routing_text": routing_text_section, "price": price_section, "floor": floor_section, "sticky": sticky_section}


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
        "traffic" if set(args.only.split(",")) == set(SECTIONS) else f"traffic_{args.only.replace(',', '_')}",
        title="Decisions on real traffic (issue 17)",
        section_markdown="\n\n".join(parts),
        **raw,
    )


if __name__ == "__main__":
    main()
