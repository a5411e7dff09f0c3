"""The README's demo (examples/langchain_demo.py) runs, offline, from the pre-trained router."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture()
def replay_module():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _mmlu_replay

        yield _mmlu_replay
    finally:
        sys.path.remove(str(EXAMPLES))


def test_math_code_replies_grade_to_the_recorded_labels(replay_module, data_dir):
    """The demo's unknown model answers GSM8K / MATH / CRUXEval-O prompts of the bundled set so that
    the bundled scorer gives exactly the model's recorded correctness."""
    from unirouter import load_dataset
    from unirouter.pretrained import scorer, validation_set

    name = "Meta-Llama-3.1-70B-Instruct"
    replies = replay_module.bundled_math_code_replies(name, data_dir)
    zero = load_dataset(data_dir / "zeroeval_math_code", load_responses=False)
    j = zero.model_index([name])[0]
    row = {t: i for i, t in enumerate(zero.texts)}
    vs = validation_set()
    refs = dict(zip(vs.prompts, vs.references))
    assert len(replies) >= 150
    grade = scorer()
    got = [grade.score(p, text, refs[p]) for p, (text, _) in replies.items()]
    want = [float(zero.correctness[row[p], j]) for p in replies]
    np.testing.assert_array_equal(got, want)
    assert 0 < np.mean(want) < 1  # both right and wrong answers were replayed


def test_demo_runs_offline_from_the_pretrained_router(data_dir, tmp_path):
    env = {
        **os.environ,
        "UNIROUTER_DATA": str(data_dir),
        "OPENAI_API_KEY": "",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",  # one stream in the order it was written
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "langchain_demo.py"), "--n-test", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300, cwd=tmp_path, check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out[-3000:]
    # The unknown model's profiling cost is announced before its profile is shown.
    estimate = out.index("unirouter: profiling 'my-llama-70b': 501 calls")
    assert estimate < out.index("(profiled now)")
    assert out.count("(stored profile)") == 5
    decisions = re.findall(r"^\s+\d+\s+(\S+)\s+([\d.]+)%\s+([\d.]+)\s+(yes|no)$", out, flags=re.M)
    assert len(decisions) == 3
    assert all(0 <= float(q) <= 100 and float(c) > 0 for _, q, c, _ in decisions)
    assert "Summary over 3 held-out questions" in out
    assert not any(tmp_path.iterdir())  # nothing written where it ran
