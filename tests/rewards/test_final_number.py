"""``final_number``: the final number of a chatty reply, hand-checked on the shapes a small chat model writes,
and bounded on hostile output (huge numbers, marker floods, unclosed boxes)."""

from __future__ import annotations

import pytest

from rollwise.rewards import VERIFIERS, get_verifier, raw_verifier
from rollwise.rewards.final_number import extract_final_number, verify_final_number


@pytest.mark.parametrize(("completion", "reference", "score", "where"), [
    ("Tom has 23 apples and buys 45 more, so he has 23 + 45 = 68 apples now.", "68", 1.0, "last_number"),
    ("23 + 45 = 68", "68", 1.0, "last_number"),
    ("So the total is 68. That was 23 plus 45", "68", 0.0, "last_number"),  # last number, not the best one
    ("The answer is 68.", "68", 1.0, "answer_line"),
    ("The answer is 68 (that is 23 + 45).", "68", 1.0, "answer_line"),  # number right after the marker
    ("The answer is 23 + 45 = 68.", "68", 1.0, "answer_line"),  # worked line: after the last '='
    ("Answer: **1,234** apples", "1234", 1.0, "answer_line"),
    ("First 23 + 45 = 68.\nThe answer is 69.", "68", 0.0, "answer_line"),  # the stated answer counts
    ("#### 282", "282", 1.0, "answer_line"),
    ("So 7 x 8 = \\boxed{56}. Check: 8 x 7 = 56, and 3 more", "56", 1.0, "boxed"),
    ("\\boxed{23+45=68}", "68", 1.0, "boxed"),
    ("It is 68.0", "68", 1.0, "last_number"),
    ("It is 68.5", "68", 0.0, "last_number"),
    ("45-23=22", "22", 1.0, "last_number"),  # a dash between numbers is not a sign
    ("The answer is -5", "-5", 1.0, "answer_line"),
    ("He has $1,200 left.", "1200", 1.0, "last_number"),
])
def test_hand_checked(completion, reference, score, where):
    r = verify_final_number(completion, reference)
    assert (r.score, r.parsed, r.info["where"]) == (score, True, where), r


def test_no_number_is_unparsed():
    r = verify_final_number("I do not know how many apples Tom has.", "68")
    assert (r.score, r.parsed, r.info["reason"]) == (0.0, False, "no_number")
    assert extract_final_number("") == (None, "last_number")


def test_reference_without_number_raises():
    with pytest.raises(ValueError, match="no number"):
        verify_final_number("68", "sixty-eight")


@pytest.mark.parametrize("completion", [
    "9" * 1_000_000,  # one number of a million digits: no answer, not a million-digit int
    "The answer is " * 50_000 + "7",
    "\\boxed{" * 50_000 + "7",
    "1, " * 200_000,
    "-" * 300_000 + "5",
    "answer: 12 = " * 20_000,
], ids=["huge_number", "marker_flood", "unclosed_boxes", "comma_list", "dash_run", "worked_lines"])
def test_hostile_output_is_bounded(completion):
    r = verify_final_number(completion, "7")
    assert r.score in (0.0, 1.0)
    assert len(r.info.get("extracted", "")) <= 64
    if completion.startswith("9"):
        assert not r.parsed


def test_registered_inline_safe():
    assert "final_number" in VERIFIERS.names()
    v = get_verifier("final_number")
    assert v is raw_verifier("final_number") or getattr(v, "safe_inline", False)
    assert v("The answer is 56.", "56").score == 1.0
