"""Offline stand-ins for real LLMs: answer MMLU-Pro questions with the recorded answers of real models.

``../shared/data/mmlu_pro`` records, for 31 real models and 12,032 questions, the answer letter each
model gave and the length of its generated text. A replay model answers a question with that letter
in free text (several phrasings, so a scorer has to parse it like a real answer) and reports the
token usage of the real generation (prompt chars / 4 in, recorded output chars / 4 out), so cost
accounting at the models' real prices (``models.csv``) matches ``cost_usd.csv.gz``.

Framework-neutral part: :class:`ReplayBook` (``answer(prompt) -> (text, usage)``). LangChain part:
:class:`ReplayChatModel`. Other examples may import this module; it is not part of the library.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unirouter import RoutingDataset, default_data_dir, load_dataset

__all__ = [
    "MMLU",
    "ReplayBook",
    "ReplayChatModel",
    "answer_text",
    "bundled_math_code_replies",
    "load_mmlu",
    "replay_chat_models",
]

TEMPLATES = (
    "Let's think step by step. Comparing the options, the answer is ({L}).",
    "The answer is ({L})",
    "**{L}**",
    "{L}) is the correct choice.",
    "After working through it, I conclude: Answer: {L}",
    "The correct option is {L}.",
)
NO_ANSWER = "I am not able to determine which option is correct from the information given."


def answer_text(letter: str | None, prompt: str) -> str:
    """The free-text answer for a recorded letter (phrasing picked by a hash of the prompt)."""
    if not letter:
        return NO_ANSWER
    h = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16)
    return TEMPLATES[h % len(TEMPLATES)].format(L=letter)


@dataclass
class MMLU:
    """The MMLU-Pro routing dataset plus the recorded output lengths (chars) per model."""

    dataset: RoutingDataset
    output_chars: dict[str, list[float | None]]

    def price(self, name: str) -> tuple[float, float]:
        """(USD per Mtok in, USD per Mtok out) from ``models.csv``."""
        row = self.dataset.models[self.dataset.model_index([name])[0]]
        return float(row["price_in_usd_per_mtok"]), float(row["price_out_usd_per_mtok"])

    def book(self, name: str) -> ReplayBook:
        ds = self.dataset
        j = ds.model_index([name])[0]
        lengths = self.output_chars[name]
        answers: dict[str, tuple[str | None, float]] = {}
        for i, text in enumerate(ds.texts):
            if ds.correctness[i, j] != ds.correctness[i, j]:  # NaN: no record for this question
                continue
            letter = ds.responses[i, j] or None
            answers.setdefault(text, (letter, lengths[i] or 0.0))
        price_in, price_out = self.price(name)
        return ReplayBook(name=name, answers=answers, price_in=price_in, price_out=price_out)


def load_mmlu(data_dir: str | Path | None = None) -> MMLU:
    """Load ``mmlu_pro`` from the shared data directory (``UNIROUTER_DATA`` or ``../shared/data``)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    dataset = load_dataset(root / "mmlu_pro")
    with gzip.open(root / "mmlu_pro" / "output_chars.csv.gz", "rt", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        columns: dict[str, list[float | None]] = {name: [] for name in header[1:]}
        for row in reader:
            for name, cell in zip(header[1:], row[1:]):
                columns[name].append(float(cell) if cell else None)
    return MMLU(dataset=dataset, output_chars=columns)


@dataclass
class ReplayBook:
    """One model's recorded answers: ``answer(prompt) -> (text, usage)``.

    The question is found by exact match, else as the last paragraph(s) of a longer prompt.
    Unknown questions get a no-answer reply (graded wrong), as a real model's unparsable answer.
    """

    name: str
    answers: dict[str, tuple[str | None, float]]
    price_in: float = 0.0
    price_out: float = 0.0
    calls: list[str] = field(default_factory=list)
    replies: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Whole replies for non-MMLU prompts (see :func:`bundled_math_code_replies`)."""

    def find(self, text: str) -> tuple[str | None, float]:
        if text in self.answers:
            return self.answers[text]
        start = text.find("\n\n")
        while start != -1:  # a template around the question: try each trailing block
            if (hit := self.answers.get(text[start + 2 :])) is not None:
                return hit
            start = text.find("\n\n", start + 2)
        return None, float(len(NO_ANSWER))

    def answer(self, prompt: str) -> tuple[str, dict[str, int]]:
        self.calls.append(prompt)
        if prompt in self.replies:
            text, out_chars = self.replies[prompt]
        else:
            letter, out_chars = self.find(prompt)
            text = answer_text(letter, prompt)
        usage = {"input_tokens": max(1, round(len(prompt) / 4)), "output_tokens": max(1, round(out_chars / 4))}
        return text, usage


def _wrong(reference: str, fmt: str) -> str:
    """An answer that is certainly not ``reference`` (a recorded failure, in the same format)."""
    if fmt == "number":
        try:
            return f"{-2 * (abs(float(reference)) + 1):g}"  # far outside any tolerance of the reference
        except ValueError:
            return "0"
    return "None" if reference.strip() != "None" else "0"


def bundled_math_code_replies(zeroeval_name: str, data_dir: str | Path | None = None) -> dict[str, tuple[str, float]]:
    """Replies of a real model to the GSM8K / MATH / CRUXEval-O prompts of unirouter's bundled set.

    ``zeroeval_math_code`` records whether each model was right on each item and how long its
    output was, not the text. So the reply is in ZeroEval's own JSON format, with the reference
    answer where the model was recorded right and a different answer where it was recorded wrong:
    graded by the bundled scorer, the model scores exactly what it scored in the recording.
    Prompts without a record for the model are left out (the caller's model then has no answer).
    """
    import json

    import numpy as np
    from unirouter.pretrained import answer_formats, validation_set

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    ds = load_dataset(root / "zeroeval_math_code", load_responses=False)
    j = ds.model_index([zeroeval_name])[0]
    with gzip.open(root / "zeroeval_math_code" / "output_chars.csv.gz", "rt", encoding="utf-8") as f:
        reader = csv.reader(f)
        col = next(reader).index(zeroeval_name)
        chars = [float(r[col]) if r[col] else float("nan") for r in reader]
    row = {text: i for i, text in enumerate(ds.texts)}
    vs = validation_set()
    out: dict[str, tuple[str, float]] = {}
    for prompt, ref, fmt in zip(vs.prompts, vs.references, answer_formats()):
        i = row.get(prompt)
        if fmt == "letter" or i is None or np.isnan(ds.correctness[i, j]):
            continue
        answer = str(ref) if ds.correctness[i, j] >= 0.5 else _wrong(str(ref), fmt)
        reply = json.dumps({"reasoning": "Working through it step by step.", "answer": answer})
        out[prompt] = (reply, chars[i] if chars[i] == chars[i] else float(len(reply)))
    return out


try:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
except ImportError:  # pragma: no cover - LangChain not installed: ReplayBook still works
    BaseChatModel = None  # type: ignore[assignment,misc]

if BaseChatModel is not None:

    class ReplayChatModel(BaseChatModel):
        """A LangChain chat model that answers the latest user message like ``book`` did.

        Reports ``usage_metadata`` and ``response_metadata["model_name"]`` like a provider, and
        streams (the answer in word chunks, usage on the last one).
        """

        book: Any
        """The model's :class:`ReplayBook`."""

        @property
        def model_name(self) -> str:
            return self.book.name

        def _reply(self, messages: list[BaseMessage]) -> AIMessage:
            text = next((m.text for m in reversed(messages) if m.type == "human" and m.text), "")
            reply, usage = self.book.answer(text)
            usage = {**usage, "total_tokens": usage["input_tokens"] + usage["output_tokens"]}
            return AIMessage(content=reply, usage_metadata=usage, response_metadata={"model_name": self.book.name})

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            message = self._reply(messages)
            words = message.content.split(" ")
            for i, word in enumerate(words):
                last = i == len(words) - 1
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=word if last else word + " ",
                        usage_metadata=message.usage_metadata if last else None,
                        response_metadata=message.response_metadata if last else {},
                    )
                )

        @property
        def _llm_type(self) -> str:
            return "mmlu-replay"

        @property
        def _identifying_params(self) -> dict[str, Any]:
            return {"model_name": self.book.name}

else:  # pragma: no cover
    ReplayChatModel = None  # type: ignore[assignment,misc]


def replay_chat_models(mmlu: MMLU, names: Sequence[str]) -> dict[str, Any]:
    """``{name: ReplayChatModel}`` for real MMLU-Pro model names."""
    if ReplayChatModel is None:
        msg = "replay_chat_models needs langchain-core: pip install 'unirouter[langchain]'"
        raise ImportError(msg)
    return {name: ReplayChatModel(book=mmlu.book(name)) for name in names}
