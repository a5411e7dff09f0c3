"""Replay models: answer MMLU-Pro questions with the real recorded answers of real models.

``../shared/data/mmlu_pro/pred_letter.csv.gz`` holds, for every model and question, the answer letter
the model gave (empty when none could be extracted). A replay model answers a question with that
letter wrapped in free text, in one of several phrasings real models use, so a scorer has to parse it
like a real response. Grading the replayed answers reproduces ``correctness.csv.gz`` exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from unirouter import RoutingDataset

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
    """The free-text response for a recorded letter (phrasing chosen by a hash of the prompt)."""
    if not letter:
        return NO_ANSWER
    h = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16)
    return TEMPLATES[h % len(TEMPLATES)].format(L=letter)


@dataclass
class RecordedModel:
    """Answers prompts of a routing dataset as model ``name`` did. Unknown prompts get NO_ANSWER."""

    name: str
    answers: dict[str, str | None]
    price_in: float = 0.0
    price_out: float = 0.0
    calls: list[str] = field(default_factory=list)

    @classmethod
    def from_dataset(cls, dataset: RoutingDataset, name: str) -> RecordedModel:
        if dataset.responses is None:
            raise ValueError(f"dataset {dataset.name!r} has no recorded responses")
        j = dataset.model_index([name])[0]
        answers: dict[str, str | None] = {}
        for text, letter, corr in zip(dataset.texts, dataset.responses[:, j], dataset.correctness[:, j]):
            if np.isnan(corr):
                continue  # the model has no record for this prompt
            answers.setdefault(text, letter)
        row = dataset.models[j] if dataset.models else {}
        return cls(
            name=name,
            answers=answers,
            price_in=float(row.get("price_in_usd_per_mtok") or 0.0),
            price_out=float(row.get("price_out_usd_per_mtok") or 0.0),
        )

    def find(self, text: str) -> str | None:
        """The recorded letter for the question contained in ``text`` (exact match first)."""
        if text in self.answers:
            return self.answers[text]
        for q, letter in self.answers.items():  # the question embedded in a longer prompt
            if q in text:
                return letter
        return None

    def __call__(self, prompt: str) -> str:
        self.calls.append(prompt)
        return answer_text(self.find(prompt), prompt)


@dataclass
class BundledReplay:
    """Answers the bundled validation set (``unirouter.pretrained``) as a known model did.

    MMLU-Pro prompts get the model's recorded letter (through :class:`RecordedModel`); GSM8K, MATH and
    CRUXEval-O prompts, whose responses are not in the shared data, get the reference answer in free
    text when the model's recorded correctness is 1 and a wrong answer when it is 0, so grading the
    replies reproduces the recorded labels.
    """

    mmlu: RecordedModel
    zeroeval_correct: dict[str, float]
    references: dict[str, str]
    formats: dict[str, str]
    calls: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, mmlu: RoutingDataset, zeroeval: RoutingDataset, name: str, mmlu_name: str | None = None) -> BundledReplay:
        from unirouter.pretrained import answer_formats, validation_set

        vs = validation_set()
        j = zeroeval.model_index([name])[0]
        correct = {t: float(c) for t, c in zip(zeroeval.texts, zeroeval.correctness[:, j]) if not np.isnan(c)}
        return cls(
            mmlu=RecordedModel.from_dataset(mmlu, mmlu_name or name),
            zeroeval_correct=correct,
            references=dict(zip(vs.prompts, vs.references)),
            formats=dict(zip(vs.prompts, answer_formats())),
        )

    @property
    def name(self) -> str:
        return self.mmlu.name

    def __call__(self, prompt: str) -> str:
        self.calls.append(prompt)
        fmt = self.formats.get(prompt, "letter")
        if fmt == "letter":
            return answer_text(self.mmlu.find(prompt), prompt)
        ok = self.zeroeval_correct.get(prompt) == 1.0
        ref = self.references[prompt]
        if fmt == "number":
            return f"Step by step we get the result.\nThe answer is {ref if ok else '123456789.5'}."
        return f"[ANSWER]assert f(...) == {ref if ok else repr('unirouter-wrong')}[/ANSWER]"
