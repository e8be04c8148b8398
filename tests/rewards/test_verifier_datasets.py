"""Done-when checks on the real benchmark files (``../shared/data``; skipped where absent).

Every GSM8K reference solution's final line must score as its reference answer, and every MATH-500
solution's last ``\\boxed{}`` as its ``answer``; shifted pairs (solution i vs answer i+1) must not match
unless the two answers are the same value.
"""

from __future__ import annotations

import pytest

from rollwise.data.loaders import data_dir, load_preset
from rollwise.rewards import VerifierPool, get_verifier
from rollwise.rewards.math import normalize_latex

pytestmark = pytest.mark.skipif(not (data_dir() / "gsm8k").exists(), reason="shared benchmark data absent")


@pytest.fixture(scope="module")
def math_pool():
    with VerifierPool("math", workers=2) as pool:
        yield pool


@pytest.mark.parametrize("split", ["gsm8k:test", "gsm8k:train"])
def test_gsm8k_reference_final_lines_all_match(split):
    verify = get_verifier("gsm8k")
    examples = load_preset(split)
    failures = [
        ex.uid
        for ex in examples
        if verify(ex.meta["answer"].strip().splitlines()[-1], ex.reference).score != 1.0
    ]
    assert failures == []


def test_math500_boxed_solutions_all_match(math_pool):
    examples = load_preset("math500:test")
    results = math_pool.score_batch(
        [ex.meta["solution"] for ex in examples], [ex.reference for ex in examples]
    )
    assert [ex.uid for ex, r in zip(examples, results) if r.score != 1.0] == []
    assert math_pool.stats["timeouts"] == math_pool.stats["crashes"] == 0


def test_math500_shifted_answers_do_not_match(math_pool):
    examples = load_preset("math500:test", limit=120)
    shifted = [ex.reference for ex in examples[1:]] + [examples[0].reference]
    results = math_pool.score_batch([ex.meta["solution"] for ex in examples], shifted)
    same = [
        normalize_latex(ex.reference) == normalize_latex(ref).removeprefix("x=")
        for ex, ref in zip(examples, shifted)
    ]
    assert all(s for s, r in zip(same, results) if r.score == 1.0)
