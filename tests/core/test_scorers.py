"""Scorers: many real-looking response formats, tricky prose, references, aliases, the judge."""

from __future__ import annotations

import re

import numpy as np
import pytest
from replay import NO_ANSWER, TEMPLATES, answer_text

from unirouter.exceptions import InvalidInputError
from unirouter.profiling.scorers import (
    CallableScorer,
    ExactMatchScorer,
    LLMJudgeScorer,
    MultipleChoiceScorer,
    NumericScorer,
    RegexScorer,
    Scorer,
    get_scorer,
    run_sync,
)

# -- multiple choice ---------------------------------------------------------------------------
MC_CASES = [
    ("The answer is (C)", "C"),
    ("Let's think step by step. Comparing the options, the answer is (C).", "C"),
    ("C)", "C"),
    ("C) is the correct choice.", "C"),
    ("**C**", "C"),
    ("Answer: C", "C"),
    ("(C)", "C"),
    ("c", "C"),
    ("the answer is (c)", "C"),
    ("answer: c.", "C"),
    ("**Answer:** G", "G"),
    ("So the answer is: **B**", "B"),
    ("The correct option is J.", "J"),
    ("The answer is option F, since F is the only one left.", "F"),
    ("Final answer: \\boxed{H}", "H"),
    ("We conclude \\boxed{\\text{E}}", "E"),
    ("After working through it, I conclude: Answer: I", "I"),
    ("The answer is (I)", "I"),
    ("**I**", "I"),
    ("I) is the correct choice.", "I"),
    ("The correct option is A.", "A"),
    ("The answer is A because the other options contradict the premise.", "A"),
    ("Correct answer - C", "C"),
    ("ANSWER: F", "F"),
    ("The correct answer is: **(D)**", "D"),
    ("Therefore, the answer is \\boxed{B}.", "B"),
    ("Answer: (B) 42 km, since the train is faster.", "B"),
    # prose with the words "I" and "A" must not be read as answers
    ("I think the answer is B because A is wrong.", "B"),
    ("A common mistake is to pick B. I believe (D) is right.", "D"),
    ("The answer is I think (C)", "C"),
    ("The answer is a bit tricky; I'd say (E).", "E"),
    ("I went to the store. A man was there.", None),
    (NO_ANSWER, None),
    ("I am sure it is not possible to tell.", None),
    # the last explicit answer wins; explicit beats bare
    ("The answer is B. Wait, actually the answer is D.", "D"),
    ("(A) is tempting and (B) is close, but the answer is (C).", "C"),
    ("Option A is wrong. Option B is a distractor. The answer is J.", "J"),
    ("**B** looks right at first.\n\nThe answer is (D)", "D"),
    # letters outside the options
    ("The answer is (K)", None),
    ("", None),
]


@pytest.mark.parametrize(("response", "letter"), MC_CASES)
def test_multiple_choice_extracts_the_answer_letter(response, letter):
    assert MultipleChoiceScorer().extract(response) == letter


@pytest.mark.parametrize("letter", list("ABCDEFGHIJ"))
@pytest.mark.parametrize("template", TEMPLATES)
def test_multiple_choice_reads_every_replay_template(template, letter):
    assert MultipleChoiceScorer().extract(template.format(L=letter)) == letter


def test_multiple_choice_scores_against_reference_forms():
    s = MultipleChoiceScorer()
    assert s.score("q", "The answer is (C)", "C") == 1.0
    assert s.score("q", "The answer is (C)", "(c)") == 1.0
    assert s.score("q", "The answer is (C)", 2) == 1.0  # index into the letters
    assert s.score("q", "The answer is (C)", "D") == 0.0
    assert s.score("q", NO_ANSWER, "C") is None
    assert s.unparsed == 1


def test_multiple_choice_letters_are_configurable():
    s = MultipleChoiceScorer(letters="ABCD")
    assert s.extract("The answer is (E)") is None
    assert s.extract("The answer is (d)") == "D"
    with pytest.raises(InvalidInputError, match="letters"):
        MultipleChoiceScorer(letters="AAB")
    with pytest.raises(InvalidInputError, match="not an option letter"):
        s.score("q", "The answer is (A)", "Z")


def test_score_many_counts_unparsed_and_grades_them_zero():
    s = MultipleChoiceScorer()
    responses = [answer_text("A", "p1"), NO_ANSWER, answer_text("B", "p3")]
    scores, unparsed = s.score_many(["p1", "p2", "p3"], responses, ["A", "A", "C"])
    np.testing.assert_array_equal(scores, [1.0, 0.0, 0.0])
    assert unparsed == 1 and s.unparsed == 1
    s.reset()
    assert s.unparsed == 0


def test_reference_needed():
    with pytest.raises(InvalidInputError, match="reference"):
        MultipleChoiceScorer().score("q", "(A)", None)


# -- numbers -----------------------------------------------------------------------------------
NUM_CASES = [
    ("The answer is 42.", 42),
    ("$1,234.50", 1234.5),
    ("It costs $ 12 in total", 12),
    ("x = -4", -4),
    ("The answer is $-5$", -5),
    ("−7 degrees", -7),
    ("The result is 3.5 cm.", 3.5),
    ("We get 50%", 50),
    ("So 5 + 7 = 12.", 12),
    ("#### 1,000", 1000),
    ("2.5e3 joules", 2500),
    ("\\boxed{\\frac{1}{2}}", 0.5),
    ("\\dfrac12 of the cake", 0.5),
    ("It is 1/2 of it", 0.5),
    ("\\boxed{12 \\text{ cm}^2}", 12),
    ("\\boxed{x = 5}", 5),
    ("The final answer is \\boxed{1{,}000}", 1000),
    ("Answer: 12 apples and 3 oranges", 12),
    ("First 3 steps, then 4 more; the answer is 7, checked twice with 2 methods.", 7),
    ("Using 3 and 4 we get \\boxed{25} since 9 + 16", 25),
    ("no number here", None),
]


@pytest.mark.parametrize(("response", "value"), NUM_CASES)
def test_numeric_extracts_the_final_number(response, value):
    got = NumericScorer().extract(response)
    assert (got is None) if value is None else (got is not None and got[0] == pytest.approx(value))


def test_numeric_tolerance_percent_and_references():
    s = NumericScorer(rel_tol=1e-3)
    assert s.score("q", "about 3.1416", "3.14159") == 1.0
    assert s.score("q", "about 3.15", 3.14159) == 0.0
    assert s.score("q", "50%", 0.5) == 1.0 and s.score("q", "50%", "50") == 1.0
    assert s.score("q", "0.3333", "1/3") == 1.0
    assert s.score("q", "$1,000", "1000") == 1.0
    assert s.score("q", "nothing", "1") is None
    assert NumericScorer(abs_tol=0.5).score("q", "10.4", 10) == 1.0
    with pytest.raises(InvalidInputError, match="rel_tol"):
        NumericScorer(rel_tol=-1)
    with pytest.raises(InvalidInputError, match="numeric references"):
        s.score("q", "1", "one")


# -- text --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("response", "reference", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower", 1.0),
        ("  eiffel   TOWER ", "The Eiffel Tower", 1.0),
        ("Paris, France", "paris", 0.0),
        ("an apple", ["pear", "Apple"], 1.0),
        ("banana", ["pear", "apple"], 0.0),
    ],
)
def test_exact_match_normalises(response, reference, expected):
    assert ExactMatchScorer().score("q", response, reference) == expected


def test_exact_match_options():
    assert ExactMatchScorer(contains=True).score("q", "It is Paris, France.", "paris") == 1.0
    assert ExactMatchScorer(contains=True).score("q", "Parisian food", "paris") == 0.0
    assert ExactMatchScorer(case_sensitive=True).score("q", "paris", "Paris") == 0.0
    assert ExactMatchScorer().score("q", "...", "x") is None  # nothing left after normalising


def test_regex_scorer_extracts_or_matches():
    s = RegexScorer(r"answer:\s*(\w+)")
    assert s.score("q", "Reasoning... Answer: Paris", "paris") == 1.0
    assert s.score("q", "Answer: Rome. No wait, Answer: Paris", "Paris") == 1.0  # last match
    assert s.score("q", "no match", "paris") is None
    m = RegexScorer(r"\bdef \w+\(", match_only=True)
    assert m.needs_reference is False
    assert m.score("q", "def f(x): return x", None) == 1.0 and m.score("q", "lambda x: x", None) == 0.0
    with pytest.raises(InvalidInputError, match="regular expression"):
        RegexScorer("(")


def test_callable_scorer_arity_and_range():
    assert CallableScorer(lambda p, r, ref: float(ref in r)).score("q", "abc", "b") == 1.0
    assert CallableScorer(lambda r, ref: r == ref).score("q", "x", "x") == 1.0
    assert CallableScorer(lambda r: 0.25 if r else None).score("q", "x", None) == 0.25
    assert CallableScorer(lambda r: None).score("q", "x", None) is None
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        CallableScorer(lambda r: 2.0).score("q", "x", None)
    with pytest.raises(InvalidInputError, match="number"):
        CallableScorer(lambda r: "yes").score("q", "x", None)


# -- judge -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "quality"),
    [
        ("The response is mostly right.\nScore: 7", 0.7),
        ("Score: 8/10", 0.8),
        ("**Score:** 10", 1.0),
        ("I'd rate it 4 out of 5.", 0.8),
        ("Verdict: INCORRECT", 0.0),
        ("Verdict: correct", 1.0),
        ("correct", 1.0),
        ("Incorrect.", 0.0),
        (("Score: 5", {"output_tokens": 3}), 0.5),
        ("I cannot grade this.", None),
        (None, None),
    ],
)
def test_judge_parses_scores_and_verdicts(reply, quality):
    assert LLMJudgeScorer(lambda p: reply).parse(reply) == quality


def test_judge_prompt_includes_reference_and_rubric():
    seen = []
    judge = LLMJudgeScorer(lambda p: seen.append(p) or "Score: 9", rubric="Be strict.")
    assert judge.score("What is 2+2?", "4", "4") == pytest.approx(0.9)
    assert "Reference answer:\n4" in seen[0] and "Be strict." in seen[0] and "What is 2+2?" in seen[0]
    assert judge.score("What is 2+2?", "4") == pytest.approx(0.9)  # no reference needed
    assert "Reference answer" not in seen[1]


async def test_judge_async_and_sync_paths():
    async def ajudge(prompt: str) -> str:
        return "Score: 10" if "Paris" in prompt.split("Response to grade:")[1] else "Score: 0"

    s = LLMJudgeScorer(ajudge)
    assert await s.ascore("Capital of France?", "Paris") == 1.0
    assert await LLMJudgeScorer(lambda p: "Score: 3").ascore("q", "r") == pytest.approx(0.3)
    assert s.score("Capital of France?", "Lyon") == 0.0  # sync API inside a running loop
    assert await LLMJudgeScorer(lambda p: "??").ascore("q", "r") is None


def test_run_sync_inside_a_running_loop_hands_back_errors():
    import asyncio

    async def outer():
        async def boom():
            raise KeyError("x")

        with pytest.raises(KeyError):
            run_sync(boom())

        async def ok():
            return 5

        return run_sync(ok())

    assert asyncio.run(outer()) == 5


# -- lookup ------------------------------------------------------------------------------------
def test_get_scorer_aliases_classes_instances_functions():
    assert isinstance(get_scorer("multiple_choice"), MultipleChoiceScorer)
    assert isinstance(get_scorer("Multiple-Choice"), MultipleChoiceScorer)
    assert isinstance(get_scorer("numeric"), NumericScorer)
    assert isinstance(get_scorer("exact"), ExactMatchScorer)
    assert isinstance(get_scorer(NumericScorer), NumericScorer)
    s = MultipleChoiceScorer()
    assert get_scorer(s) is s
    assert isinstance(get_scorer(lambda r, ref: 1.0), CallableScorer)
    for obj in (s, get_scorer("numeric"), get_scorer(lambda r: 1.0), LLMJudgeScorer(lambda p: "")):
        assert isinstance(obj, Scorer)
    with pytest.raises(InvalidInputError, match=re.escape("'exact'")):
        get_scorer("fuzzy")
    with pytest.raises(InvalidInputError, match="Scorer"):
        get_scorer(3)
    assert repr(MultipleChoiceScorer(letters="ABCD")) == "MultipleChoiceScorer(letters='ABCD')"
