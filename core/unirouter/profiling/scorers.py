"""Scorers: turn ``(prompt, response, reference)`` into a quality in [0, 1].

A scorer's :meth:`~Scorer.score` returns a float in [0, 1], or ``None`` when the response could not
be parsed (no answer letter, no number, ...). The profiler grades an unparsed response 0.0 (a wrong
answer, not a failed call) and reports how many there were. :meth:`~Scorer.score_many` does the same
for a batch and returns ``(scores, n_unparsed)``.

=====================  ==========================================================  =================
class                  what it compares                                            alias
=====================  ==========================================================  =================
MultipleChoiceScorer   the answer letter found in the response vs the reference    "multiple_choice"
NumericScorer          the final number (commas, units, $, %, boxed, fractions)    "numeric"
ExactMatchScorer       normalised text (case, whitespace, punctuation, articles)   "exact"
RegexScorer            the text a regex extracts (or: does it match at all)
PythonLiteralScorer    the Python literal in the response vs the reference value    "python_literal"
PerPromptScorer        each prompt's own scorer (mixed validation sets)
CallableScorer         any function ``(prompt, response, reference) -> float``
LLMJudgeScorer         a judge model's verdict, with or without a reference
=====================  ==========================================================  =================

:func:`get_scorer` turns an alias, a class, a scorer or a plain function into a scorer.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import math
import re
import string
import threading
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import numpy as np

from unirouter.exceptions import InvalidInputError

__all__ = [
    "BaseScorer",
    "CallableScorer",
    "ExactMatchScorer",
    "LLMJudgeScorer",
    "MultipleChoiceScorer",
    "NumericScorer",
    "PerPromptScorer",
    "PythonLiteralScorer",
    "RegexScorer",
    "Scorer",
    "get_scorer",
    "normalize_text",
    "run_sync",
]


@runtime_checkable
class Scorer(Protocol):
    """What the profiler needs from a scorer."""

    needs_reference: bool
    unparsed: int

    def score(self, prompt: str, response: str, reference: Any) -> float | None:
        """Quality in [0, 1], or ``None`` if the response could not be parsed."""
        ...

    def score_many(
        self, prompts: Sequence[str], responses: Sequence[str], references: Sequence[Any] | None
    ) -> tuple[np.ndarray, int]:
        """``(scores (n,), n_unparsed)``; unparsed responses score 0.0."""
        ...


class BaseScorer:
    """Shared behaviour: the ``unparsed`` counter, :meth:`score_many`, a readable ``repr``.

    Subclasses implement ``_score`` (``None`` = could not parse).

    Attributes
    ----------
    needs_reference : bool
        Whether :meth:`score` needs a reference answer.
    unparsed : int
        Responses this scorer could not parse since creation (or :meth:`reset`).
    """

    needs_reference: bool = True

    def __init__(self) -> None:
        self.unparsed = 0
        self._lock = threading.Lock()

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:  # pragma: no cover
        raise NotImplementedError

    def score(self, prompt: str, response: str, reference: Any = None) -> float | None:
        """Quality of ``response`` in [0, 1], or ``None`` if it could not be parsed."""
        if self.needs_reference and reference is None:
            msg = f"{type(self).__name__} needs a reference answer; give the validation set references=."
            raise InvalidInputError(msg)
        value = self._score(prompt, response if isinstance(response, str) else str(response), reference)
        if value is None:
            with self._lock:
                self.unparsed += 1
            return None
        return _check_quality(value, type(self).__name__)

    def score_many(
        self, prompts: Sequence[str], responses: Sequence[str], references: Sequence[Any] | None = None
    ) -> tuple[np.ndarray, int]:
        """Score a batch: ``(scores (n,), n_unparsed)``; an unparsed response scores 0.0."""
        if len(prompts) != len(responses) or (references is not None and len(references) != len(prompts)):
            msg = "prompts, responses and references must have the same length."
            raise InvalidInputError(msg)
        out = np.zeros(len(prompts), dtype=np.float64)
        missed = 0
        for i, (p, r) in enumerate(zip(prompts, responses)):
            s = self.score(p, r, None if references is None else references[i])
            if s is None:
                missed += 1
            else:
                out[i] = s
        return out, missed

    def reset(self) -> None:
        """Set the ``unparsed`` counter back to zero."""
        self.unparsed = 0

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def _check_quality(value: Any, who: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        msg = f"{who} must return a number in [0, 1] or None. Got {type(value).__name__}: {value!r:.60}."
        raise InvalidInputError(msg) from None
    if not (0.0 <= v <= 1.0):  # also refuses NaN
        msg = f"{who} must return a quality in [0, 1] (or None for 'could not parse'). Got {v!r}."
        raise InvalidInputError(msg)
    return v


# -- multiple choice ---------------------------------------------------------------------------
_HEDGE = r"(?:think|believe|guess|am|was|would|will|feel|suppose|must|can|could|need|have|did|do|might|should|mean)\b"


class MultipleChoiceScorer(BaseScorer):
    """1.0 when the answer letter in the response equals the reference letter, else 0.0.

    Explicit statements win over bare letters, and the last one wins within a kind:

    1. "The answer is (C)", "Answer: C", "**Answer:** c", "the correct option is C", "\\boxed{C}";
    2. a bold letter "**C**";
    3. a letter opening a line: "C) ...", "(C) ...", "C. ...", or the whole response "C";
    4. any "(C)".

    The capital letters "I" and "A" in prose ("I think", "A common mistake") are never taken for an
    answer; a lowercase letter is only taken in an explicit statement or alone ("answer: c.").

    Parameters
    ----------
    letters : str, default="ABCDEFGHIJ"
        The option letters.
    """

    def __init__(self, letters: str = "ABCDEFGHIJ") -> None:
        super().__init__()
        if not isinstance(letters, str) or not letters or not letters.isalpha() or len(set(letters.upper())) != len(letters):
            msg = f"letters must be a string of distinct option letters such as 'ABCD'. Got {letters!r}."
            raise InvalidInputError(msg)
        self.letters = letters.upper()
        cls = "[" + self.letters + self.letters.lower() + "]"
        up = "[" + self.letters + "]"
        word = r"(?:answer|option|choice)"
        verb = r"(?:is|would\s+be|should\s+be|must\s+be|:|=|-{1,2}|–|—)"
        self._explicit = re.compile(
            rf"\b{word}\b[\s*]*(?:\s+\w+){{0,2}}?[\s*]*{verb}[\s*:]*(?:(?:option|choice|letter)\s+)?"
            rf"(?P<open>[(\[]?)\**(?P<L>{cls})\**(?P<close>[)\]]?)(?![\w'’-])",
            re.IGNORECASE,
        )
        self._boxed = re.compile(rf"\\boxed\{{\s*(?:\\text\{{)?\s*\(?({cls})\)?\s*\}}?\s*\}}")
        self._bold = re.compile(rf"\*\*\s*\(?({cls})\)?[.):]?\s*\*\*")
        self._line = re.compile(rf"(?m)^[ \t>*#-]*(?:\(({up})\)|({up})[).:](?=\s|$))")
        self._alone = re.compile(rf"^\W*({cls})\W*$")
        self._paren = re.compile(rf"\(({up})\)")
        self._hedge = re.compile(r"\s+" + _HEDGE, re.IGNORECASE)

    def _params(self) -> dict[str, Any]:
        return {"letters": self.letters} if self.letters != "ABCDEFGHIJ" else {}

    def extract(self, response: str) -> str | None:
        """The answer letter in ``response`` (upper case), or ``None``."""
        text = response.strip()
        m = self._alone.match(text)
        if m:
            return m.group(1).upper()
        found = None
        for m in self._explicit.finditer(text):
            letter, wrapped = m.group("L"), bool(m.group("open")) or "*" in m.group(0)[-3:]
            if not wrapped:
                after = text[m.end() :]
                if letter.islower() and not re.match(r"\s*(?:[.,;:!?)\]]|$)", after):
                    continue  # "the answer is a bit ..."
                if letter.upper() in "AI" and self._hedge.match(after):
                    continue  # "the answer is I think (C)"
            found = letter
        if found is None:
            found = _last(self._boxed, text)
        if found is None:
            found = _last(self._bold, text)
        if found is None:
            found = _last(self._line, text)
        if found is None:
            found = _last(self._paren, text)
        return None if found is None else found.upper()

    def _reference_letter(self, reference: Any) -> str:
        if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
            if 0 <= int(reference) < len(self.letters):
                return self.letters[int(reference)]
        ref = str(reference).strip().strip("()[]*. ").upper()
        if len(ref) == 1 and ref in self.letters:
            return ref
        letter = self.extract(str(reference))
        if letter is None:
            msg = f"reference {reference!r} is not an option letter in {self.letters!r} (or an index into it)."
            raise InvalidInputError(msg)
        return letter

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        letter = self.extract(response)
        if letter is None:
            return None
        return float(letter == self._reference_letter(reference))


def _last(pattern: re.Pattern[str], text: str) -> str | None:
    out = None
    for m in pattern.finditer(text):
        out = next(g for g in m.groups() if g)
    return out


# -- numbers -----------------------------------------------------------------------------------
_NUMBER = re.compile(
    r"""
    \\[dt]?frac\s*\{\s*(?P<fn>[-+]?[\d.]+)\s*\}\s*\{\s*(?P<fd>[-+]?[\d.]+)\s*\}   # \frac{1}{2}
  | \\[dt]?frac(?P<gn>\d)(?P<gd>\d)                                              # \frac12
  | (?<![\w.,/])(?P<sn>[-+]?\d+)\s*/\s*(?P<sd>\d+)(?![\d/.,])                     # 1/2
  | (?<![\w.])(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+)
    (?P<pct>\s*(?:%|percent\b))?
    """,
    re.VERBOSE,
)
_ANSWER_CUE = re.compile(r"(?:\banswer\b[^\n:]{0,20}?(?:\bis\b|:)|####|\bresult\s+is\b|\btotal\s+is\b)", re.IGNORECASE)


def _clean_math(text: str) -> str:
    text = text.replace("−", "-").replace("–", "-").replace("\\%", "%").replace("{,}", ",")
    text = re.sub(r"\\[,!;: ]|\\left|\\right|\\\$", " ", text)
    text = text.replace("$", " ")
    # "- 5" written with a space after a minus sign that starts a number
    return re.sub(r"(?<![\w)])-\s+(?=\d)", "-", text)


def _numbers(text: str) -> list[tuple[float, bool]]:
    out: list[tuple[float, bool]] = []
    for m in _NUMBER.finditer(text):
        try:
            if m.group("fn") is not None:
                val = float(Fraction(m.group("fn")) / Fraction(m.group("fd")))
            elif m.group("gn") is not None:
                val = int(m.group("gn")) / int(m.group("gd"))
            elif m.group("sn") is not None:
                val = int(m.group("sn")) / int(m.group("sd"))
            else:
                val = float(m.group("num").replace(",", ""))
        except (ValueError, ZeroDivisionError):
            continue
        if math.isfinite(val):
            out.append((val, bool(m.group("pct"))))
    return out


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces)."""
    found = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.append(text[m.end() : i - 1])
    return found


class NumericScorer(BaseScorer):
    """1.0 when the response's final number equals the reference within a tolerance.

    The number is taken from the last ``\\boxed{...}``, else from the text after the last "answer is" /
    "Answer:" / "####", else it is the last number in the response. Thousands separators, ``$`` signs,
    units ("12 cm"), LaTeX (``\\frac{1}{2}``, ``\\dfrac12``, ``1{,}000``) and fractions ("1/2") are
    understood. A percentage ("50%") matches a reference of 50 or 0.5.

    Parameters
    ----------
    rel_tol : float, default=1e-4
        Relative tolerance (of the reference).
    abs_tol : float, default=1e-8
        Absolute tolerance.
    """

    def __init__(self, *, rel_tol: float = 1e-4, abs_tol: float = 1e-8) -> None:
        super().__init__()
        for what, v in (("rel_tol", rel_tol), ("abs_tol", abs_tol)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v >= 0 and math.isfinite(v)):
                msg = f"{what} must be a finite number >= 0. Got {v!r}."
                raise InvalidInputError(msg)
        self.rel_tol = float(rel_tol)
        self.abs_tol = float(abs_tol)

    def _params(self) -> dict[str, Any]:
        return {"rel_tol": self.rel_tol, "abs_tol": self.abs_tol}

    def extract(self, response: str) -> tuple[float, bool] | None:
        """``(value, is_percentage)`` of the final answer in ``response``, or ``None``."""
        text = _clean_math(response)
        for box in reversed(_boxed_contents(text)):
            nums = _numbers(box.rsplit("=", 1)[-1])  # "\\boxed{x = 5}"
            if nums:
                return nums[0]
        cues = list(_ANSWER_CUE.finditer(text))
        if cues:
            tail = text[cues[-1].end() :].split("\n\n")[0]
            nums = _numbers(tail)
            if nums:
                return nums[0]
        nums = _numbers(text)
        return nums[-1] if nums else None

    def _reference_value(self, reference: Any) -> float:
        if isinstance(reference, (int, float, np.integer, np.floating)) and not isinstance(reference, bool):
            return float(reference)
        got = self.extract(str(reference))
        if got is None:
            msg = f"reference {reference!r} is not a number; NumericScorer needs numeric references."
            raise InvalidInputError(msg)
        return got[0]

    def _close(self, a: float, b: float) -> bool:
        return abs(a - b) <= max(self.abs_tol, self.rel_tol * abs(b))

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        got = self.extract(response)
        if got is None:
            return None
        value, pct = got
        ref = self._reference_value(reference)
        return float(self._close(value, ref) or (pct and self._close(value / 100.0, ref)))


# -- text --------------------------------------------------------------------------------------
_PUNCT = re.compile("[" + re.escape(string.punctuation + "“”‘’«»…") + "]")


def normalize_text(text: str, *, case_sensitive: bool = False, punctuation: bool = False, articles: bool = False) -> str:
    """Lower-case, drop punctuation and English articles, collapse whitespace (SQuAD-style)."""
    if not case_sensitive:
        text = text.lower()
    if not punctuation:
        text = _PUNCT.sub(" ", text)
    if not articles:
        text = re.sub(r"\b(?:a|an|the)\b", " ", text, flags=0 if not case_sensitive else re.IGNORECASE)
    return " ".join(text.split())


class ExactMatchScorer(BaseScorer):
    """1.0 when the normalised response equals the normalised reference (or one of several).

    Normalisation lower-cases, drops punctuation and the articles a/an/the, and collapses whitespace.
    With ``contains=True`` the reference only has to appear in the response as whole words.

    Parameters
    ----------
    case_sensitive, keep_punctuation, keep_articles : bool, default=False
        Turn parts of the normalisation off.
    contains : bool, default=False
        Accept a response that contains the reference.
    """

    def __init__(
        self,
        *,
        case_sensitive: bool = False,
        keep_punctuation: bool = False,
        keep_articles: bool = False,
        contains: bool = False,
    ) -> None:
        super().__init__()
        self.case_sensitive = case_sensitive
        self.keep_punctuation = keep_punctuation
        self.keep_articles = keep_articles
        self.contains = contains

    def _params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in {"unparsed", "_lock"} and v}

    def normalize(self, text: str) -> str:
        return normalize_text(
            str(text), case_sensitive=self.case_sensitive, punctuation=self.keep_punctuation, articles=self.keep_articles
        )

    def _matches(self, got: str, reference: Any) -> bool:
        refs = list(reference) if isinstance(reference, (list, tuple, set)) else [reference]
        for ref in refs:
            want = self.normalize(ref)
            if got == want or (self.contains and want and f" {want} " in f" {got} "):
                return True
        return False

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        got = self.normalize(response)
        if not got:
            return None
        return float(self._matches(got, reference))


class RegexScorer(ExactMatchScorer):
    """Extract the answer with a regular expression, then compare it with the reference.

    The last match wins; its group ``group`` (default: the first group if the pattern has one, else
    the whole match) is compared with the normalised reference as in :class:`ExactMatchScorer`. No
    match means unparsed. With ``match_only=True`` there is no reference: a match scores 1.0 and no
    match 0.0.

    Parameters
    ----------
    pattern : str or compiled pattern
    group : int or str, optional
    flags : int, default=re.IGNORECASE
    match_only : bool, default=False
    """

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        *,
        group: int | str | None = None,
        flags: int = re.IGNORECASE,
        match_only: bool = False,
    ) -> None:
        super().__init__()
        try:
            self.pattern = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        except re.error as e:
            msg = f"pattern {pattern!r} is not a valid regular expression: {e}."
            raise InvalidInputError(msg) from e
        self.group = group if group is not None else (1 if self.pattern.groups else 0)
        self.match_only = match_only
        self.needs_reference = not match_only

    def _params(self) -> dict[str, Any]:
        return {"pattern": self.pattern.pattern, **({"match_only": True} if self.match_only else {})}

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        matches = list(self.pattern.finditer(response))
        if self.match_only:
            return float(bool(matches))
        if not matches:
            return None
        got = matches[-1].group(self.group) or ""
        return float(self._matches(self.normalize(got), reference))


class CallableScorer(BaseScorer):
    """Wrap a function as a scorer.

    The function takes ``(prompt, response, reference)``, ``(response, reference)`` or
    ``(response)`` (decided from its signature) and returns a number or bool in [0, 1], or ``None``
    when it cannot parse the response.

    Parameters
    ----------
    fn : callable
    needs_reference : bool, default=False
    """

    def __init__(self, fn: Callable[..., Any], *, needs_reference: bool = False) -> None:
        super().__init__()
        if not callable(fn):
            msg = f"CallableScorer needs a function. Got {type(fn).__name__}."
            raise InvalidInputError(msg)
        self.fn = fn
        self.needs_reference = needs_reference
        self._arity = _arity(fn)

    def _params(self) -> dict[str, Any]:
        return {"fn": getattr(self.fn, "__name__", type(self.fn).__name__)}

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        if self._arity == 1:
            return self.fn(response)
        if self._arity == 2:
            return self.fn(response, reference)
        return self.fn(prompt, response, reference)


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    return min(max(n, 1), 3)


# -- Python literals (CRUXEval-O style) -------------------------------------------------------
_LITERAL_CUES = (
    re.compile(r"\[ANSWER\](.*?)\[/ANSWER\]", re.DOTALL),
    re.compile(r"(?m)^\s*assert\s+[^\n]*?==\s*(.+?)\s*$"),
    re.compile(r"(?im)\b(?:final\s+)?(?:answer|output)\b[^\n:]{0,20}?(?:\bis\b|:)\s*(.+?)\s*$"),
    re.compile(r"```(?:python|py)?\s*\n?(.*?)```", re.DOTALL),
)


_CALL_EQ = re.compile(r"^(?:assert\s+)?[A-Za-z_][\w.]*\(.*?\)\s*==\s*(.+)$", re.DOTALL)


def _rhs(text: str) -> str:
    """``X`` from ``f(...) == X`` / ``assert f(...) == X``; the text itself otherwise."""
    m = _CALL_EQ.match(text.strip())
    return m.group(1).strip() if m else text


def _literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text.strip().strip("`").strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def _same_literal(a: Any, b: Any) -> bool:
    """Equal values of the same type (so ``True`` is not ``1`` and ``'1'`` is not ``1``), recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_literal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_literal(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class PythonLiteralScorer(BaseScorer):
    """1.0 when the Python literal in the response equals the reference literal (CRUXEval-O).

    The answer is taken from, in order: a JSON object's ``"answer"`` field (ZeroEval's format), the
    last ``[ANSWER] ... [/ANSWER]``, the right side of the last ``assert ... == X`` line, the last
    "answer is X" / "Output: X", the last code block, or the whole response if it is one line. Both
    sides are read with :func:`ast.literal_eval` and compared as values of the same type, so
    ``[1, 2]`` matches ``[1,2]`` and ``"a"`` matches ``'a'`` but ``True`` does not match ``1``. When
    the answer is not a literal, the texts are compared with surrounding quotes stripped.
    """

    def extract(self, response: str) -> str | None:
        """The answer text in ``response``, or ``None``."""
        text = response.strip()
        start = text.find("{")
        while start != -1:  # the first JSON object with an "answer" field
            try:
                obj, _ = json.JSONDecoder().raw_decode(text[start:])
            except ValueError:
                obj = None
            if isinstance(obj, dict) and "answer" in obj:
                value = obj["answer"]
                return value if isinstance(value, str) else json.dumps(value)
            start = text.find("{", start + 1)
        for cue in _LITERAL_CUES:
            found = [m.group(1).strip() for m in cue.finditer(text)]
            found = [f for f in found if f]
            if found:
                return _rhs(found[-1])
        return _rhs(text) if text and "\n" not in text else None

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        got = self.extract(response)
        if got is None:
            return None
        ok_ref, ref = _literal(str(reference))
        ok_got, value = _literal(got)
        if ok_ref and ok_got:
            return float(_same_literal(value, ref))
        return float(got.strip().strip("`").strip("'\"") == str(reference).strip().strip("'\""))


# -- one scorer per prompt ---------------------------------------------------------------------
class PerPromptScorer(BaseScorer):
    """Grade each prompt with the scorer of its answer format (a validation set mixing tasks).

    Parameters
    ----------
    prompts : list of str
        The validation prompts.
    formats : list of str
        The answer format of each prompt, a key of ``scorers``.
    scorers : mapping of str to scorer, optional
        Format -> scorer (anything :func:`get_scorer` accepts). Default: ``"letter"`` ->
        :class:`MultipleChoiceScorer`, ``"number"`` -> :class:`NumericScorer`, ``"python_literal"``
        -> :class:`PythonLiteralScorer`.

    The prompt text selects the scorer, so the scorer works with any caller that passes the prompt
    (the profiler does). A prompt it was not built for raises :class:`InvalidInputError`.
    """

    def __init__(self, prompts: Sequence[str], formats: Sequence[str], *, scorers: Any = None) -> None:
        super().__init__()
        if isinstance(prompts, str) or isinstance(formats, str) or len(prompts) != len(formats):
            msg = "PerPromptScorer needs one answer format per prompt (two lists of the same length)."
            raise InvalidInputError(msg)
        table = (
            {"letter": MultipleChoiceScorer(), "number": NumericScorer(), "python_literal": PythonLiteralScorer()}
            if scorers is None
            else {str(k): get_scorer(v) for k, v in dict(scorers).items()}
        )
        unknown = sorted(set(formats) - set(table))
        if unknown:
            msg = f"answer formats {unknown} have no scorer; known formats: {sorted(table)}."
            raise InvalidInputError(msg)
        self.scorers = table
        self._by_prompt = {p: f for p, f in zip(prompts, formats)}
        self.needs_reference = any(getattr(table[f], "needs_reference", False) for f in set(formats))

    def _params(self) -> dict[str, Any]:
        return {"formats": sorted(set(self._by_prompt.values())), "n_prompts": len(self._by_prompt)}

    def scorer_for(self, prompt: str) -> Any:
        """The scorer that grades ``prompt``."""
        fmt = self._by_prompt.get(prompt)
        if fmt is None:
            msg = f"PerPromptScorer has no answer format for the prompt {prompt[:60]!r}...; build it for this validation set."
            raise InvalidInputError(msg)
        return self.scorers[fmt]

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        return self.scorer_for(prompt).score(prompt, response, reference)


# -- LLM judge ---------------------------------------------------------------------------------
DEFAULT_RUBRIC = (
    "Judge whether the response answers the question correctly and completely. "
    "Give a score from 0 (wrong or no answer) to 10 (fully correct)."
)

_JUDGE_TEMPLATE = """You are grading an answer.

Question:
{prompt}

{reference_block}Response to grade:
{response}

Rubric: {rubric}

End your reply with a line of the form "Score: N" where N is an integer from 0 to {scale}."""

_SCORE_RE = re.compile(r"\b(?:score|rating|grade)\b\W{0,5}(\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)
_FRACTION_RE = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)\b")
_VERDICT_RE = re.compile(
    r"\b(?:verdict|judg(?:e)?ment|decision)\b\W{0,5}(incorrect|correct|wrong|right|pass|fail|yes|no)\b", re.IGNORECASE
)
_BARE_VERDICT = re.compile(r"^\W*(incorrect|correct|wrong|right|pass|fail|yes|no)\W*$", re.IGNORECASE)
_POSITIVE = {"correct", "right", "pass", "yes"}


class LLMJudgeScorer(BaseScorer):
    """Ask a judge model to grade the response (with the reference when there is one).

    The judge is a sync or async callable ``prompt -> text`` (or ``(text, usage)``). Its reply is
    parsed for "Score: N" (divided by ``scale``; "7/10" uses its own denominator) or a verdict
    ("Verdict: correct", or a reply that is just "correct"/"incorrect"); otherwise it is unparsed.
    The profiler awaits :meth:`ascore` with its concurrency limit; :meth:`score` works without a loop.

    Parameters
    ----------
    judge : callable
    rubric : str, optional
        What a good answer is; the default asks for correctness on a 0-10 scale.
    scale : int, default=10
    template : str, optional
        Prompt template with ``{prompt}``, ``{response}``, ``{reference_block}``, ``{rubric}``, ``{scale}``.
    """

    needs_reference = False

    def __init__(
        self, judge: Callable[[str], Any], *, rubric: str = DEFAULT_RUBRIC, scale: int = 10, template: str | None = None
    ) -> None:
        super().__init__()
        if not callable(judge):
            msg = f"judge must be a callable prompt -> text (sync or async). Got {type(judge).__name__}."
            raise InvalidInputError(msg)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            msg = f"scale must be an int >= 1. Got {scale!r}."
            raise InvalidInputError(msg)
        self.judge = judge
        self.rubric = rubric
        self.scale = scale
        self.template = template or _JUDGE_TEMPLATE

    def _params(self) -> dict[str, Any]:
        return {"judge": getattr(self.judge, "__name__", type(self.judge).__name__), "scale": self.scale}

    def judge_prompt(self, prompt: str, response: str, reference: Any = None) -> str:
        block = "" if reference is None else f"Reference answer:\n{reference}\n\n"
        return self.template.format(prompt=prompt, response=response, reference_block=block, rubric=self.rubric, scale=self.scale)

    def parse(self, reply: Any) -> float | None:
        """Quality in [0, 1] from the judge's reply, or ``None``."""
        if isinstance(reply, tuple):
            reply = reply[0]
        if not isinstance(reply, str):
            return None
        scores = list(_SCORE_RE.finditer(reply))
        if scores:
            m = scores[-1]
            denom = float(m.group(2)) if m.group(2) else float(self.scale)
            return _clamp(float(m.group(1)) / denom) if denom > 0 else None
        verdicts = list(_VERDICT_RE.finditer(reply)) or list(_BARE_VERDICT.finditer(reply.strip()))
        if verdicts:
            return float(verdicts[-1].group(1).lower() in _POSITIVE)
        fractions = list(_FRACTION_RE.finditer(reply))
        if fractions:
            num, den = float(fractions[-1].group(1)), float(fractions[-1].group(2))
            return _clamp(num / den) if den > 0 else None
        return None

    def _score(self, prompt: str, response: str, reference: Any) -> float | None:
        reply = self.judge(self.judge_prompt(prompt, response, reference))
        if inspect.isawaitable(reply):
            reply = run_sync(_await(reply))
        return self.parse(reply)

    async def ascore(self, prompt: str, response: str, reference: Any = None) -> float | None:
        """Async :meth:`score`: awaits an async judge, runs a sync one in a thread."""
        text = self.judge_prompt(prompt, response if isinstance(response, str) else str(response), reference)
        if _is_async_callable(self.judge):
            reply = await self.judge(text)
        else:
            reply = await asyncio.to_thread(self.judge, text)
            if inspect.isawaitable(reply):
                reply = await reply
        value = self.parse(reply)
        if value is None:
            with self._lock:
                self.unparsed += 1
        return value


def _clamp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _is_async_callable(fn: Any) -> bool:
    while hasattr(fn, "func") and not inspect.isfunction(fn):  # functools.partial
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, with or without a running event loop.

    Without a running loop this is :func:`asyncio.run`. Inside one (Jupyter, an async app calling a
    sync API) the coroutine runs on its own loop in a helper thread, and its result or exception
    (``KeyboardInterrupt`` included) is handed back to the caller.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller below
            box["error"] = e

    thread = threading.Thread(target=target, name="unirouter-run-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- lookup ------------------------------------------------------------------------------------
_ALIASES: dict[str, Callable[[], BaseScorer]] = {
    "multiple_choice": MultipleChoiceScorer,
    "mc": MultipleChoiceScorer,
    "letter": MultipleChoiceScorer,
    "numeric": NumericScorer,
    "number": NumericScorer,
    "exact": ExactMatchScorer,
    "exact_match": ExactMatchScorer,
    "python_literal": PythonLiteralScorer,
    "literal": PythonLiteralScorer,
}


def get_scorer(obj: Any) -> Any:
    """A scorer from an alias (``"multiple_choice"``, ``"numeric"``, ``"exact"``), a scorer class,
    a scorer instance or a plain function ``(prompt, response, reference) -> float | None``."""
    if isinstance(obj, str):
        key = obj.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in _ALIASES:
            msg = f"unknown scorer {obj!r}; use one of {sorted(set(_ALIASES))} or a Scorer instance."
            raise InvalidInputError(msg)
        return _ALIASES[key]()
    if isinstance(obj, type):
        if hasattr(obj, "score"):
            return obj()
        msg = f"{obj.__name__} is not a scorer class (it has no score method)."
        raise InvalidInputError(msg)
    if hasattr(obj, "score") and callable(obj.score):
        return obj
    if callable(obj):
        return CallableScorer(obj)
    msg = f"scorer must be a Scorer, a function or one of {sorted(set(_ALIASES))}. Got {type(obj).__name__}."
    raise InvalidInputError(msg)
