"""The arithmetic step checker (SCOPE's oracle PRM): step segmentation and first wrong step, by hand."""

from __future__ import annotations

import pytest

from rollwise.rewards.prm import PRMS, ArithStepChecker, arith_step_starts, split_steps
from rollwise.sampling.scope import compute_first_error, compute_rectify_step


@pytest.mark.parametrize("text, chain, steps", [
    ("11|125", False, ["1", "1", "|125"]),
    ("+10|14", False, ["+", "1", "0", "|14"]),
    ("42,21|1692", False, ["4", "2", ",2", "1", "|1692"]),
    ("3,17,24,49|49", True, ["3", ",17", ",24", ",49", "|49"]),
    ("3,17", True, ["3", ",17"]),
    ("", False, []),
])
def test_segmentation(text, chain, steps):
    assert split_steps(text, arith_step_starts(text, chain)) == steps


@pytest.mark.parametrize("prompt, ref, text, scores, first", [
    ("57+68=", "125", "11|125", [1, 1, 1], None),
    ("57+68=", "125", "10|115", [1, 0, 0], 1),
    ("sum(3,14,7,25)=", "49", "3,17,25,50|50", [1, 1, 0, 0, 0], 2),
    ("sum(3,14,7,25)=", "49", "3,17,24|24", [1, 1, 1, 0], 3),  # stopped one term early: the bar is the error
    ("47*36=", "1692", "42,22|1702", [1, 1, 1, 0, 0], 3),
    ("57+68=", "125", "11|12", [1, 1, 0], 2),
])
def test_first_wrong_step(prompt, ref, text, scores, first):
    got = PRMS.get("arith")()(prompt, ref, text)
    assert got.scores == scores
    assert compute_first_error(got.scores) == first


def test_not_arithmetic_has_no_steps():
    assert ArithStepChecker()("hello", "3", "3").scores == []


def test_rectify_step_rule():
    # k >= rho * S: S = 5, rho = 0.3 -> k >= 1.5
    assert compute_rectify_step([1, 1, 0, 0, 0], 0.5, 0.3) == 2
    assert compute_rectify_step([1, 0, 0, 0, 0], 0.5, 0.3) is None  # mostly wrong: left alone
    assert compute_rectify_step([1, 1, 1], 0.5, 0.3) == 3  # every step right yet failed: the end is the error
    assert compute_rectify_step([], 0.5, 0.3) is None
    assert compute_rectify_step([0.6, 0.4], 0.5, 0.0) == 1  # the threshold tau


def test_sampling_names_every_registered_prm():
    from rollwise.sampling.scope import BUILTIN_PRMS

    assert set(BUILTIN_PRMS) == set(PRMS.names())
