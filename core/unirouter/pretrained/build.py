"""Build the bundled validation set and the pre-trained routers from the shared routing data.

Run from the repository (needs ``../shared/data``, never needed at run time)::

    python -m unirouter.pretrained.build --data ../shared/data

What it does, all seeded (``--seed``), so two runs give byte-identical files:

1. Reads the task families with gold answers and permissive licences: MMLU-Pro (14 categories,
   answer letter, MIT questions) and ZeroEval's GSM8K, MATH level 5 and CRUXEval-O (number or
   Python literal, MIT). RouterBench is left out (no gold answers in the shared subset, licence of
   the subset unclear).
2. Picks the validation set: ``--per-category`` prompts of each MMLU-Pro category and
   ``--per-task`` of each ZeroEval task, among prompts with a unique text, a gold answer its scorer
   can read, and labels from every model that covers the family. Each item keeps its reference,
   answer format and a typical answer length (median over the known models, for cost estimates).
3. Puts all known models in one matrix (names merged when two datasets hold the same model; a
   model without a family is NaN there, never 0) and chooses K for the K-means map on an inner
   split of the *training* prompts (no validation or test labels are used to choose it).
4. Fits the K-means router, the learned-map router (same K) and DifficultyRouter on the training
   prompts, registers every known model from its labels and per-prompt costs on the validation
   set (prices from ``models.csv`` in the profile metadata), and saves each with the library's own
   JSON + .npy format, plus the validation set, its float16 embeddings, a NOTICE and a manifest
   with the version and the SHA-256 of every file.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import io
import json
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unirouter._files import sha256_file

FORMAT = "unirouter-pretrained/1"
FIXED_TIME = "2026-01-01T00:00:00+00:00"  # timestamps in the bundled files: builds stay byte-identical

# Same model, two spellings across the shared datasets (MMLU-Pro name -> ZeroEval name).
ALIASES = {
    "Meta-Llama-3_1-70B-Instruct": "Meta-Llama-3.1-70B-Instruct",
    "Meta-Llama-3_1-8B-Instruct": "Meta-Llama-3.1-8B-Instruct",
}

SOURCES = {
    "mmlu_pro": {
        "family": "MMLU-Pro (14 categories, 10 options)",
        "origin": "TIGER-AI-Lab/MMLU-Pro (questions: MIT licence; repository and model outputs: Apache-2.0)",
    },
    "zeroeval_math_code": {
        "family": "GSM8K, MATH level 5, CRUXEval-O",
        "origin": "WildEval/ZeroEval (Apache-2.0); GSM8K (MIT), MATH (MIT), CRUXEval (MIT)",
    },
}

_NUMBER_REF = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$|^\s*-?\\d?frac\{-?\d+\}\{\d+\}\s*$|^\s*-?\d+\s*/\s*\d+\s*$")


@dataclass
class Item:
    id: str
    text: str
    reference: str | None
    format: str
    group: str
    source: str
    row: int  # row in the combined matrices
    output_tokens: float


def _read_csv_gz(path: Path) -> tuple[list[str], np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0][1:]
    arr = np.array([[float(v) if v != "" else np.nan for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    return header, arr


def _reference(source: str, group: str, answer: Any) -> tuple[str | None, str]:
    """The normalised reference and answer format of one item (reference None = not gradable)."""
    if source == "mmlu_pro":
        ref = str(answer).strip().upper()
        return (ref if len(ref) == 1 and ref in "ABCDEFGHIJ" else None), "letter"
    task = group.split("/", 1)[1]
    text = str(answer).strip()
    if task == "crux":
        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None, "python_literal"
        return text, "python_literal"
    if task == "gsm":
        text = text.lstrip("#").strip().replace(",", "")
    return (text if _NUMBER_REF.match(text) else None), "number"


def load_families(data: Path) -> dict[str, Any]:
    """The combined items, correctness and cost matrices (n, M) with NaN = missing, and the model table."""
    from unirouter.data.datasets import load_dataset

    items: list[Item] = []
    blocks = []
    model_rows: dict[str, dict[str, Any]] = {}
    for name in ("mmlu_pro", "zeroeval_math_code"):
        ds = load_dataset(data / name, load_responses=False)
        chars_path = ds.path / "output_chars.csv.gz"
        chars = _read_csv_gz(chars_path)[1] if chars_path.is_file() else None
        offset = sum(b[0].shape[0] for b in blocks)
        names = [ALIASES.get(m, m) for m in ds.model_names]
        for j, m in enumerate(names):
            row = ds.models[j] if ds.models else {}
            entry = model_rows.setdefault(m, {"name": m, "families": [], "source_names": {}})
            entry["families"].append(name)
            entry["source_names"][name] = ds.model_names[j]
            for key in ("price_in_usd_per_mtok", "price_out_usd_per_mtok", "price_basis"):
                if row.get(key) not in (None, ""):
                    entry.setdefault(key, float(row[key]) if key != "price_basis" else row[key])
        for i in range(len(ds)):
            group = f"{name}/{ds.groups[i]}"
            ref, fmt = _reference(name, group, ds.answers[i])
            tokens = float(np.nanmedian(chars[i])) / 4.0 if chars is not None and not np.isnan(chars[i]).all() else 256.0
            items.append(Item(f"{name}:{ds.ids[i]}", ds.texts[i], ref, fmt, group, name, offset + i, round(tokens, 1)))
        blocks.append((ds.correctness, ds.cost, names))
    all_models = list(dict.fromkeys(m for _, _, names in blocks for m in names))
    col = {m: j for j, m in enumerate(all_models)}
    n = sum(b[0].shape[0] for b in blocks)
    y = np.full((n, len(all_models)), np.nan)
    c = np.full((n, len(all_models)), np.nan)
    start = 0
    for corr, cost, names in blocks:
        rows = slice(start, start + corr.shape[0])
        for j, m in enumerate(names):
            y[rows, col[m]] = corr[:, j]
            c[rows, col[m]] = cost[:, j]
        start += corr.shape[0]
    return {"items": items, "y": y, "cost": c, "models": all_models, "model_rows": model_rows}


def select_validation(
    fam: dict[str, Any], *, per_category: int, per_task: int, seed: int
) -> list[int]:
    """Indices (into ``fam['items']``) of the validation prompts, stratified by group."""
    items, y = fam["items"], fam["y"]
    counts: dict[str, int] = {}
    for it in items:
        counts[it.text] = counts.get(it.text, 0) + 1
    by_group: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_group.setdefault(it.group, []).append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for group in sorted(by_group):
        idx = np.asarray(by_group[group])
        # The models that cover this family (>= 99% of its prompts) must all have a label.
        cover = (~np.isnan(y[idx])).mean(axis=0)
        full = np.flatnonzero(cover >= 0.99)
        ok = [
            i
            for i in idx
            if items[i].reference is not None and counts[items[i].text] == 1 and not np.isnan(y[i, full]).any()
        ]
        want = per_category if items[idx[0]].source == "mmlu_pro" else per_task
        if len(ok) < want:
            msg = f"group {group!r} has only {len(ok)} eligible prompts for {want} wanted."
            raise SystemExit(msg)
        chosen.extend(sorted(rng.choice(ok, size=want, replace=False).tolist()))
    return chosen


def select_training(fam: dict[str, Any], val: Sequence[int], *, max_per_source: dict[str, int], seed: int) -> list[int]:
    """Training prompts: everything but the validation prompts (and their texts), capped per source
    by a seeded stratified sample so the build stays bounded."""
    items = fam["items"]
    val_texts = {items[i].text for i in val}
    taken = set(val)
    rng = np.random.default_rng(seed + 1)
    out: list[int] = []
    for source in ("mmlu_pro", "zeroeval_math_code"):
        pool = [i for i, it in enumerate(items) if it.source == source and i not in taken and it.text not in val_texts]
        cap = max_per_source.get(source)
        if cap is not None and len(pool) > cap:
            groups: dict[str, list[int]] = {}
            for i in pool:
                groups.setdefault(items[i].group, []).append(i)
            share = cap / len(pool)
            pick: list[int] = []
            for g in sorted(groups):
                k = max(1, int(round(share * len(groups[g]))))
                pick.extend(rng.choice(groups[g], size=min(k, len(groups[g])), replace=False).tolist())
            pool = sorted(pick)
        out.extend(pool)
    return out


def _masked_brier(gamma: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the predicted error against the observed error (NaN cells skipped)."""
    obs = ~np.isnan(y)
    return float((((gamma - (1.0 - np.where(obs, y, 0.0))) ** 2) * obs).sum() / max(obs.sum(), 1))


def choose_k(
    x: np.ndarray, y: np.ndarray, grid: Sequence[int], *, seed: int, n_inner_val: int, embedder: Any = None
) -> tuple[int, dict[str, float]]:
    """K for the K-means map, chosen on an inner split of the training prompts only.

    The training prompts are split into inner-train (fits the clusters), inner-validation (profiles
    the known models, sized like the bundled set) and inner-test; the K whose routers predict the
    known models' errors on inner-test best (masked Brier score) wins.
    """
    from unirouter.routers import UniRouter

    rng = np.random.default_rng(seed + 2)
    n = x.shape[0]
    perm = rng.permutation(n)
    n_hold = n // 4
    hold, inner_train = perm[:n_hold], np.sort(perm[n_hold:])
    inner_val, inner_test = np.sort(hold[:n_inner_val]), np.sort(hold[n_inner_val:])
    scores: dict[str, float] = {}
    for k in grid:
        if k > len(inner_train) or k > len(inner_val):
            continue
        r = UniRouter(n_clusters=int(k), random_state=seed, embedder=embedder)
        r.fit(embeddings=x[inner_train], validation_embeddings=x[inner_val])
        for j in range(y.shape[1]):
            if np.isnan(y[inner_val, j]).all():
                continue
            r.add_model(f"m{j}", correctness=y[inner_val, j], cost=1.0)
        names = r.models_
        cols = [int(m[1:]) for m in names]
        gamma, _, _ = r.predict(embeddings=x[inner_test])
        scores[str(k)] = round(_masked_brier(gamma, y[np.ix_(inner_test, cols)]), 6)
    best = min(scores, key=lambda s: (scores[s], int(s)))
    return int(best), scores


def _pin_times(router_dir: Path) -> None:
    """Replace the save and creation times in router.json by a fixed date (reproducible bytes)."""
    meta_path = router_dir / "router.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["saved_at"] = FIXED_TIME
    for m in meta["models"]:
        m["created_at"] = FIXED_TIME
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # router.json changed after the save: list the files again, so the directory stays one that
    # the library recognises as its own (and the bytes stay reproducible).
    from unirouter.persistence.store import _write_manifest

    _write_manifest(router_dir)


def _notice(fam: dict[str, Any], n_val: int) -> str:
    lines = [
        "unirouter pre-trained routers and bundled validation set",
        "=========================================================",
        "",
        f"The bundled validation set ({n_val} prompts with reference answers) and the pre-trained routers",
        "were built by `python -m unirouter.pretrained.build` from these sources:",
        "",
    ]
    for name, s in SOURCES.items():
        lines += [f"- {s['family']}: {s['origin']}."]
    lines += [
        "",
        "Per-model correctness and prices: the MMLU-Pro authors' published 5-shot outputs (eval_results/ in",
        "TIGER-AI-Lab/MMLU-Pro) and ZeroEval's published zero-shot outputs (result_dirs/ in WildEval/ZeroEval),",
        "as collected in the project's shared routing data. Prices are approximate list prices (USD per",
        "million tokens), documented estimates rather than measured bills.",
        "",
        "Licences: MMLU-Pro questions MIT; MMLU-Pro repository Apache-2.0; ZeroEval Apache-2.0; GSM8K MIT;",
        "MATH MIT; CRUXEval MIT. RouterBench data is not included.",
        "",
        "Cite: MMLU-Pro (Wang et al., 2024, arXiv 2406.01574); GSM8K (Cobbe et al., 2021); MATH (Hendrycks",
        "et al., 2021); CRUXEval (Gu et al., 2024); ZeroEval (Lin, 2024); UniRoute (Jitkrittum et al., 2025).",
        "",
    ]
    return "\n".join(lines)


def build(
    data: Path,
    out: Path,
    *,
    seed: int = 0,
    per_category: int = 24,
    per_task: int = 55,
    max_train: dict[str, int] | None = None,
    k_grid: Sequence[int] = (8, 12, 16, 24, 32, 48),
    embedder: Any = None,
    learned_epochs: int = 120,
    progress: bool = True,
) -> dict[str, Any]:
    """Build everything into ``out`` (replaced whole); returns the manifest."""
    from unirouter._version import __version__
    from unirouter.routers import DifficultyRouter, UniRouter
    from unirouter.data.datasets import ValidationSet
    from unirouter.embedding.embedders import SentenceTransformerEmbedder, default_cache_dir

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    max_train = {"mmlu_pro": 2500, "zeroeval_math_code": None} if max_train is None else max_train
    fam = load_families(data)
    items, y, cost = fam["items"], fam["y"], fam["cost"]
    val = select_validation(fam, per_category=per_category, per_task=per_task, seed=seed)
    train = select_training(fam, val, max_per_source=max_train, seed=seed)
    say(f"validation: {len(val)} prompts; training: {len(train)} prompts; known models: {len(fam['models'])}")

    emb = embedder if embedder is not None else SentenceTransformerEmbedder(cache=default_cache_dir())
    xv = emb.embed([items[i].text for i in val])
    xt = emb.embed([items[i].text for i in train])
    ytr, yval, ctr, cval = y[train], y[val], cost[train], cost[val]

    # Known models with labels on the training prompts (the learned map and DifficultyRouter learn
    # from them); a model must have labels on the validation set to be registered.
    known = [j for j in range(y.shape[1]) if not np.isnan(yval[:, j]).all()]
    k, k_scores = choose_k(xt, ytr, k_grid, seed=seed, n_inner_val=len(val), embedder=emb)
    say(f"K chosen on the inner training split: {k} (masked Brier by K: {k_scores})")

    vs = ValidationSet(
        [items[i].text for i in val],
        references=[items[i].reference for i in val],
        ids=[items[i].id for i in val],
        groups=[items[i].group for i in val],
    )
    ident = getattr(emb, "name", "sentence-transformers/all-MiniLM-L6-v2")
    routers = {
        "kmeans": UniRouter(n_clusters=k, method="kmeans", random_state=seed),
        "learned": UniRouter(n_clusters=k, method="learned", random_state=seed, max_epochs=learned_epochs),
        "difficulty": DifficultyRouter(random_state=seed),
    }
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "routers").mkdir(parents=True)
    for method, router in routers.items():
        router._embedder = emb  # the build embedder (cached); the saved identity is the default MiniLM
        kw: dict[str, Any] = {}
        if method != "kmeans":
            kw = {"train_correctness": ytr[:, known], "validation_correctness": yval[:, known]}
        if method == "difficulty":
            kw["train_cost"] = ctr[:, known]
        router.fit(embeddings=xt, validation=vs, validation_embeddings=xv, **kw)
        for j in known:
            name = fam["models"][j]
            row = fam["model_rows"][name]
            meta = {
                "known": True,
                "families": row["families"],
                "source_names": row["source_names"],
                **{key: row[key] for key in ("price_in_usd_per_mtok", "price_out_usd_per_mtok", "price_basis") if key in row},
            }
            router.add_model(name, correctness=yval[:, j], cost=cval[:, j])
            profile = router.get_profile(name)
            router._register(profile.model_copy(update={"metadata": meta}), replace=True)
        router.validation_set_ = None  # the prompts are stored once, in validation.jsonl
        router.save(tmp / "routers" / method)
        _pin_times(tmp / "routers" / method)
        say(f"fitted and saved the {method} router")

    with open(tmp / "validation.jsonl", "w", encoding="utf-8") as f:
        for i in val:
            it = items[i]
            f.write(
                json.dumps(
                    {
                        "id": it.id,
                        "prompt": it.text,
                        "reference": it.reference,
                        "group": it.group,
                        "format": it.format,
                        "typical_output_tokens": it.output_tokens,
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
                + "\n"
            )
    buf = io.BytesIO()
    np.save(buf, xv.astype(np.float16), allow_pickle=False)
    (tmp / "validation_embeddings.npy").write_bytes(buf.getvalue())
    (tmp / "NOTICE").write_text(_notice(fam, len(val)), encoding="utf-8")

    groups: dict[str, int] = {}
    for i in val:
        groups[items[i].group] = groups.get(items[i].group, 0) + 1
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "version": __version__,
        "seed": seed,
        "embedder": ident,
        "validation": {"n": len(val), "fingerprint": vs.fingerprint, "groups": groups},
        "training": {"n": len(train), "max_per_source": max_train},
        "known_models": len(known),
        "settings": {
            "n_clusters": k,
            "k_grid": list(k_grid),
            "k_selection": "masked Brier score of predicted errors on an inner split of the training prompts",
            "k_scores": k_scores,
            "learned_max_epochs": learned_epochs,
        },
        "methods": sorted(routers),
        "files": {str(p.relative_to(tmp)): sha256_file(p) for p in files},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder of the shared routing datasets")
    p.add_argument("--out", type=Path, default=here.parent / "data" / "bundle", help="output folder (replaced whole)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-category", type=int, default=24, help="validation prompts per MMLU-Pro category")
    p.add_argument("--per-task", type=int, default=55, help="validation prompts per ZeroEval task")
    p.add_argument("--max-train-mmlu", type=int, default=2500, help="cap on MMLU-Pro training prompts")
    p.add_argument("--max-train-zeroeval", type=int, default=0, help="cap on ZeroEval training prompts (0 = all)")
    p.add_argument("--k-grid", default="8,12,16,24,32,48")
    p.add_argument("--learned-epochs", type=int, default=120)
    args = p.parse_args(argv)
    manifest = build(
        args.data,
        args.out,
        seed=args.seed,
        per_category=args.per_category,
        per_task=args.per_task,
        max_train={"mmlu_pro": args.max_train_mmlu, "zeroeval_math_code": args.max_train_zeroeval or None},
        k_grid=[int(v) for v in args.k_grid.split(",")],
        learned_epochs=args.learned_epochs,
    )
    print(json.dumps({k: manifest[k] for k in ("version", "validation", "training", "known_models", "settings")}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
