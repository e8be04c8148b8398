"""``gsm8k`` verifier: where the final number is found and how numbers are compared."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rollwise.rewards.gsm8k import extract_number, parse_number, verify_gsm8k


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,000", 1000),
        ("$1,234,567.50", Fraction("1234567.5")),
        ("costs $18.00", 18),
        ("-5 degrees", -5),
        ("\u22127", -7),  # U+2212 minus sign
        ("-$3", -3),
        ("3/4 of it", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("\\$20", 20),
        ("75%", 75),
        ("0.5 kg", Fraction(1, 2)),
        ("12,34", 12),  # not a thousands group: the first number is 12
        ("\u0664\u0662", None),  # Arabic-Indic digits are not digits here
        ("\uff14\uff12", None),  # fullwidth
        ("\U0001d7d2\U0001d7d0", None),  # mathematical bold
        ("1/0", None),
        ("9" * 65, None),  # longer than any real answer: refused rather than converted
        ("no digits", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == (None if value is None else Fraction(value))


@pytest.mark.parametrize(
    ("completion", "value", "where"),
    [
        ("so 3 + 4 = 7\n#### 7", 7, "####"),
        ("#### 1,200 dollars", 1200, "####"),
        ("first 5 then \\boxed{12}", 12, "boxed"),
        ("The answer is $1,200. Earlier I said 7", 1200, "answer_line"),
        ("She makes 9 * 2 = $<<9*2=18>>18 every day.", 18, "last_number"),
        ("I don't know", None, "last_number"),
    ],
)
def test_extract_number(completion, value, where):
    assert extract_number(completion) == (None if value is None else Fraction(value), where)


@pytest.mark.parametrize(
    ("completion", "reference", "score"),
    [
        ("#### 18", "18", 1.0),
        ("The total is 18.00 dollars.", "18", 1.0),
        ("#### 2125", "2,125", 1.0),
        ("#### 0.75", "3/4", 1.0),
        ("#### -3", "-3", 1.0),
        ("#### 3", "-3", 0.0),
        ("#### 17.5", "18", 0.0),
        ("#### 42%", "42", 1.0),
        ("worked solution\n#### 5", "step\n#### 5", 1.0),  # a full reference solution works too
        ("#### \u0664\u0662", "42", 0.0),
    ],
)
def test_verify_gsm8k(completion, reference, score):
    assert verify_gsm8k(completion, reference).score == score


def test_no_number_is_unparsed():
    result = verify_gsm8k("no idea", "5")
    assert (result.score, result.parsed) == (0.0, False)


def test_reference_without_number_raises():
    with pytest.raises(ValueError, match="no number"):
        verify_gsm8k("#### 5", "five")
