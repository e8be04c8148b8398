"""Hostile completions: every check returns within its bound, scores 0 and runs no model text.

Bounds are generous (timeout + 3 s per call; this is a bound check, not a speed assert). Pools are created
once per module and ``wait_ready()`` is called before each timed call so a worker restart after the previous
item's timeout is not charged to the next item.
"""

from __future__ import annotations

import time

import pytest

from rollwise.rewards import VerifierPool, get_verifier

TIMEOUT_S = 1.0
SLACK_S = 3.0
MARKER = "rollwise_hostile_marker"


def _corpus(marker: str) -> dict[str, str]:
    payload = f"__import__('os').system('touch {marker}')"
    return {
        "tower_boxed": "\\boxed{10^{10^{10^{10}}}}",
        "tower_plain": "The answer is 10^10^10^10",
        "tower_gsm8k": "#### 10^10^10^10",
        "power_9_9_9": "\\boxed{9^{9^{9}}}",
        "sum_to_googol": "\\boxed{\\sum_{n=1}^{10^{100}} n}",
        "megabyte": "9" * 1_000_000,
        "megabyte_boxes": "\\boxed{" * 150_000,
        "digits_60k": "\\boxed{" + "1" * 60_000 + "}",
        "nested_braces": "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
        "nested_parens": "\\boxed{" + "(" * 5_000 + "1" + ")" * 5_000 + "}",
        "def_macro": "\\def\\x{\\x\\x}\\boxed{\\x}",
        "newcommand": "\\newcommand{\\a}{\\a\\a}\\boxed{\\a}",
        "arabic_indic": "\\boxed{\u0664\u0662}",
        "fullwidth": "The answer is \uff14\uff12",
        "math_bold": "#### \U0001d7d2\U0001d7d0",
        "null_bytes": "\\boxed{4\x002}\n#### 4\x002",
        "import_boxed": f"\\boxed{{{payload}}}",
        "import_line": f"The answer is {payload}",
        "import_raw": payload,
        "redos_bait": "a" * 40 + "!",
    }


@pytest.fixture(scope="module")
def marker_path(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile") / MARKER


@pytest.fixture(scope="module")
def pools():
    built = {
        "math": VerifierPool("math", workers=2, timeout_s=TIMEOUT_S),
        "regex": VerifierPool("regex", workers=1, timeout_s=TIMEOUT_S),
        "gsm8k": VerifierPool("gsm8k", timeout_s=TIMEOUT_S),  # inline
        "exact": VerifierPool("exact", timeout_s=TIMEOUT_S),  # inline
    }
    yield built
    for pool in built.values():
        pool.close()


REFERENCES = {"math": "42", "regex": "(a+)+$", "gsm8k": "42", "exact": "42"}


@pytest.mark.parametrize("verifier", ["math", "regex", "gsm8k", "exact"])
def test_hostile_corpus_is_bounded_and_scores_zero(pools, marker_path, verifier):
    pool = pools[verifier]
    for name, completion in _corpus(str(marker_path)).items():
        pool.wait_ready()
        start = time.monotonic()
        result = pool.score(completion, REFERENCES[verifier])
        elapsed = time.monotonic() - start
        assert elapsed < TIMEOUT_S + SLACK_S, (verifier, name, elapsed)
        assert result.score == 0.0, (verifier, name, result)
    assert not marker_path.exists(), "model text was executed"
    assert pool.stats["checks"] == len(_corpus(""))
    assert pool.stats["skipped"] == 2  # the two megabyte strings never reach a verifier


def test_power_tower_is_stopped_and_counted(pools):
    pool = pools["math"]
    pool.wait_ready()
    counted = ("timeouts", "crashes", "errors")
    before = sum(pool.stats[k] for k in counted)
    result = pool.score("\\boxed{10^{10^{10^{10}}}}", "10")
    # sympy evaluates the power: today it runs into the deadline; a memory-cap failure is as good
    assert result.score == 0.0 and result.info["reason"] in ("timeout", "crash", "error")
    assert sum(pool.stats[k] for k in counted) == before + 1


def test_catastrophic_regex_times_out(pools):
    pool = pools["regex"]
    pool.wait_ready()
    result = pool.score("a" * 40 + "!", "(a+)+$")
    assert result.info["reason"] == "timeout"


@pytest.mark.parametrize("verifier", ["gsm8k", "exact"])
def test_inline_verifiers_are_linear_without_the_size_cap(marker_path, verifier):
    fn = get_verifier(verifier)
    for name, completion in _corpus(str(marker_path)).items():
        start = time.monotonic()
        assert fn(completion, "42").score == 0.0, name
        assert time.monotonic() - start < SLACK_S, name


def test_lookalike_digits_do_not_match_ascii(pools):
    pool = pools["math"]
    for digits in ("\u0664\u0662", "\uff14\uff12", "\U0001d7d2\U0001d7d0"):
        assert pool.score(f"\\boxed{{{digits}}}", "42").score == 0.0
        assert pools["gsm8k"].score(f"#### {digits}", "42").score == 0.0
        assert pools["exact"].score(digits, "42").score == 0.0
