"""``exact`` and ``regex`` verifiers."""

from __future__ import annotations

import re

import pytest

from rollwise.rewards.text import normalize_text, verify_exact, verify_regex


@pytest.mark.parametrize(
    ("completion", "reference", "score"),
    [
        ("Paris", "paris", 1.0),
        ("  Paris.  ", "Paris", 1.0),
        ("The answer is Paris.", "Paris", 1.0),
        ("\\boxed{\\text{Paris}}", "Paris", 1.0),
        ("New   York", "new york", 1.0),
        ("I think\nLondon", "Paris", 0.0),
        ("\uff14\uff12", "42", 0.0),  # fullwidth digits stay distinct: no NFKC
        ("Ｐａｒｉｓ", "Paris", 0.0),
    ],
)
def test_exact(completion, reference, score):
    assert verify_exact(completion, reference).score == score


def test_exact_empty_is_unparsed():
    assert verify_exact("   ", "x").parsed is False


def test_normalize_text():
    assert normalize_text("**$\\text{Hello   World}$.**") == "hello world"


@pytest.mark.parametrize(
    ("completion", "pattern", "score"),
    [
        ("The answer is 42.", r"4\d", 1.0),
        ("\\boxed{x = 3}", r"x\s*=\s*3", 1.0),
        ("reasoning\nA", r"[A-E]", 1.0),
        ("The answer is 421", r"4\d", 0.0),  # fullmatch, not search
        ("", r".*", 0.0),
    ],
)
def test_regex(completion, pattern, score):
    assert verify_regex(completion, pattern).score == score


def test_regex_bad_pattern_raises():
    with pytest.raises(re.error):
        verify_regex("x", "(")
