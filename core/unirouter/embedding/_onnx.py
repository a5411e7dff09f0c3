"""ONNX Runtime inference for sentence-transformers models (``SentenceTransformerEmbedder(backend="onnx")``).

The model's transformer is exported once with ``torch.onnx.export`` into a cache folder, then run with
ONNX Runtime and the ``tokenizers`` library: torch is not imported at run time. fp32 gives the same
vectors as torch (to 1e-7); ``quantize=True`` stores int8 per-channel weights. Supports models made of
Transformer + Pooling (mean or CLS) + optional Normalize. Needs ``pip install 'unirouter[onnx]'``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from unirouter.exceptions import InvalidInputError

__all__ = ["DEFAULT_BATCH_TOKENS", "OnnxSentenceModel", "length_batches", "onnx_file", "read_st_layout"]

_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_ONNX_HINT = "pip install onnxruntime onnx"

DEFAULT_BATCH_TOKENS = 192
"""Padded tokens (rows x longest row) per ONNX Runtime forward pass. The cost is linear in tokens, so
batching saves only per-call overhead, and larger batches spill the caches. Interleaved A/B on this
2-core CPU (40 mixed prompts, 6 rounds, time per prompt against single calls, median): fp32 1 thread
192 -> 0.98, 512 -> 1.01, 1024 -> 1.11, 4096 -> 1.75; fp32 2 threads 192 -> 0.94, 512 -> 1.06; int8
192 -> 0.96, 512 -> 1.03 (128 about as good as 192). See ``benchmarks/bench_batching.py`` (issue 20).
The torch path keeps 512, where batching pays more (0.86 against 0.95 with 192)."""


def length_batches(lengths: Sequence[int], *, max_batch_size: int, max_tokens: int) -> list[np.ndarray]:
    """Indices grouped for batched inference: longest texts first, each group padded to its longest.

    A group grows while ``rows x longest <= max_tokens`` and ``rows <= max_batch_size`` (one text
    always fits): similar lengths pad little, and a bounded token count keeps large batches from
    being slower per prompt than single calls (the activations of 64 x 256 tokens spill the caches).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        width = max(int(lengths[order[start]]), 1)  # the longest of the group comes first
        rows = max(1, min(max_batch_size, max_tokens // width, n - start))
        groups.append(order[start : start + rows])
        start += rows
    return groups


class OnnxSentenceModel:
    """Transformer (ONNX Runtime) + mean/CLS pooling (numpy) + L2 normalisation, no torch at run time.

    Mirrors what sentence-transformers does for a Transformer + Pooling [+ Normalize] model: strip,
    tokenise (truncate to ``max_seq_length``), run, pool over the attention mask. Texts are grouped by
    token length under a token budget (:func:`length_batches`) so each batch pads little.
    """

    def __init__(self, session: Any, tokenizer: Any, *, max_seq_length: int, pooling: str, dim: int, lower: bool) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.pooling = pooling
        self.dim = dim
        self.lower = lower
        self._inputs = [i.name for i in session.get_inputs()]
        pad = tokenizer.padding or {}
        self._pad_id = int(pad.get("pad_id", 0))

    def get_embedding_dimension(self) -> int:
        return self.dim

    @classmethod
    def load(
        cls,
        model_path: str,
        *,
        onnx_dir: Path,
        quantize: bool,
        max_seq_length: int | None,
        num_threads: int | None,
    ) -> OnnxSentenceModel:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError:
            msg = f"SentenceTransformerEmbedder(backend='onnx') needs ONNX Runtime: {_ONNX_HINT}"
            raise ImportError(msg) from None
        root = Path(model_path)
        if not (root / "modules.json").is_file():
            msg = f"backend='onnx' needs a local sentence-transformers model directory; {model_path!r} is not one. Use backend='torch'."
            raise InvalidInputError(msg)
        pooling, dim, normalize_in_model, st_cfg = read_st_layout(root)
        del normalize_in_model  # rows are always L2-normalised here
        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        limit = int(max_seq_length or st_cfg.get("max_seq_length") or 512)
        tokenizer.enable_truncation(max_length=limit)
        tokenizer.no_padding()
        model_file = onnx_file(root, onnx_dir, quantize=quantize)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            opts.intra_op_num_threads = int(num_threads)
        opts.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: on a shared CPU, spinning threads steal the
        # cores the working ones need (measured: single-prompt p50 86 -> 67 ms at load 11 on 2 cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model_file), sess_options=opts, providers=["CPUExecutionProvider"])
        return cls(session, tokenizer, max_seq_length=limit, pooling=pooling, dim=dim, lower=bool(st_cfg.get("do_lower_case")))

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, max_batch_tokens: int = DEFAULT_BATCH_TOKENS, **_: Any
    ) -> np.ndarray:
        texts = [t.strip().lower() if self.lower else t.strip() for t in texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        encs = self.tokenizer.encode_batch(texts) if len(texts) > 1 else [self.tokenizer.encode(texts[0])]
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in length_batches(lengths, max_batch_size=batch_size, max_tokens=max_batch_tokens):
            width = int(lengths[idx].max())
            ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encs[i]
                n = len(e.ids)
                ids[row, :n] = e.ids
                mask[row, :n] = 1
                types[row, :n] = e.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {k: feeds[k] for k in self._inputs})[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0, :]
            else:
                m = mask[:, :, None].astype(np.float32)
                pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = pooled
        return out


def read_st_layout(root: Path) -> tuple[str, int, bool, dict[str, Any]]:
    """(pooling mode, dim, has Normalize, sentence_bert_config) of a sentence-transformers folder."""

    modules = json.loads((root / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        msg = f"backend='onnx' supports Transformer + Pooling [+ Normalize] models; {root} has {kinds}. Use backend='torch'."
        raise InvalidInputError(msg)
    pool_cfg = json.loads((root / modules[1]["path"] / "config.json").read_text())
    if pool_cfg.get("pooling_mode_mean_tokens"):
        pooling = "mean"
    elif pool_cfg.get("pooling_mode_cls_token"):
        pooling = "cls"
    else:
        msg = f"backend='onnx' supports mean or CLS pooling; {root} uses {pool_cfg}. Use backend='torch'."
        raise InvalidInputError(msg)
    cfg_file = root / "sentence_bert_config.json"
    st_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    return pooling, int(pool_cfg["word_embedding_dimension"]), "Normalize" in kinds, st_cfg


def onnx_file(root: Path, onnx_dir: Path, *, quantize: bool) -> Path:
    """The exported (and maybe int8-quantised) ONNX file of a model folder, exported on first use."""
    weights = [p for p in sorted(root.iterdir()) if p.suffix in {".safetensors", ".bin"}]
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in weights)
    key = hashlib.sha256(f"{root.resolve()}|{stamp}".encode()).hexdigest()[:16]
    folder = onnx_dir / f"{root.name}-{key}"
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        _export_onnx(root, fp32)
    if not quantize:
        return fp32
    int8 = folder / "model_qint8_per_channel.onnx"
    if not int8.is_file():
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError:
            msg = f"quantize=True needs onnxruntime's quantisation tools and onnx: {_ONNX_HINT}"
            raise ImportError(msg) from None
        tmp = int8.with_name(f".{int8.name}.{os.getpid()}.tmp")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, int8)
    return int8


def _export_onnx(root: Path, target: Path) -> None:
    """Export the model's transformer (last hidden state) to ONNX with torch; atomic rename."""
    import warnings

    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        msg = f"exporting the embedder to ONNX needs torch, sentence-transformers and onnx: {_ONNX_HINT}"
        raise ImportError(msg) from None

    class _LastHidden(torch.nn.Module):
        def __init__(self, auto: Any) -> None:
            super().__init__()
            self.auto = auto

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.auto(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    st = SentenceTransformer(str(root), device="cpu")
    wrapper = _LastHidden(st[0].auto_model.eval())
    sample = st.tokenizer(["a probe sentence", "another, longer probe sentence"], padding=True, return_tensors="pt")
    args = tuple(sample.get(k, torch.zeros_like(sample["input_ids"])) for k in _ONNX_INPUTS)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    axes = {k: {0: "batch", 1: "seq"} for k in (*_ONNX_INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(tmp),
            input_names=list(_ONNX_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, target)
