"""``math`` verifier: answer extraction and a table of equivalences and near-misses.

Called in-process here: every row is benign. Hostile inputs go through the pool (test_verifier_hostile.py).
"""

from __future__ import annotations

import pytest

from rollwise.rewards.extract import extract_answer, final_answer_line, last_boxed
from rollwise.rewards.math import math_equal, verify_math

# (model answer, reference, equal?)
TABLE = [
    # fractions, decimals, \dfrac
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac12", "\\dfrac{1}{2}", True),
    ("1/2", "\\frac{1}{2}", True),
    ("\\frac{3}{4}", "0.75", True),
    ("\\frac 59", "\\frac{5}{9}", True),
    ("0.49", "\\frac{1}{2}", False),
    ("0.333", "\\frac{1}{3}", False),
    # percent (math-verify reads X% as X/100 and also accepts the bare number)
    ("50\\%", "50", True),
    ("0.5", "50\\%", True),
    ("5\\%", "50\\%", False),
    # intervals
    ("[0,1)", "[0,1)", True),
    ("(-\\infty, 3]", "(-\\infty,3]", True),
    ("[0,1]", "[0,1)", False),
    ("[2,\\infty)", "(2,\\infty)", False),
    # tuples / coordinates
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(\\frac32, -13)", "\\left( \\frac{3}{2}, -13 \\right)", True),
    ("(2,1)", "(1,2)", False),
    ("(-13, \\frac32)", "\\left( \\frac{3}{2}, -13 \\right)", False),
    # units and degrees
    ("5", "5 \\text{ cm}", True),
    ("5 \\text{ cm}", "5", True),
    ("6", "5 \\text{ cm}", False),
    ("864", "864 \\mbox{ inches}^2", True),
    ("90", "90^\\circ", True),
    ("\\frac{270}{7}", "\\frac{270}7\\text{ degrees}", True),
    ("\\$18", "18", True),
    ("1,000", "1000", True),
    # text answers: compared as words, not as sympy products (which would accept anagrams)
    ("Evelyn", "\\text{Evelyn}", True),
    ("\\text{East}", "\\text{east}", True),
    ("Nevely", "\\text{Evelyn}", False),
    ("west", "\\text{east}", False),
    # multiple-choice letters
    ("C", "\\text{(C)}", True),
    ("(C)", "\\text{(C)}", True),
    ("\\textbf{(C)}", "\\text{(C)}", True),
    ("D", "\\text{(C)}", False),
    # expressions, radicals, complex numbers, sets, matrices, equations
    ("\\sqrt{117}", "3\\sqrt{13}", True),
    ("5-6i", "6 - 5i", False),
    ("2(k+1)", "2k+2", True),
    ("q-p", "p - q", False),
    ("\\{2,1\\}", "\\{1,2\\}", True),
    (
        "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\end{pmatrix}",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
        True,
    ),
    ("5", "x=5", True),
    ("\\frac{\\pi}{6}", "-\\frac{\\pi}{6}", False),
    ("\\tan x", "\\cot x", False),
    # look-alike digits are not ASCII digits (no NFKC normalisation, by design)
    ("\u0664\u0662", "42", False),  # Arabic-Indic 42
    ("\uff14\uff12", "42", False),  # fullwidth 42
    ("\U0001d7d2\U0001d7d0", "42", False),  # mathematical bold 42
]


@pytest.mark.parametrize(("pred", "gold", "equal"), TABLE)
def test_equivalence_table(pred, gold, equal):
    assert math_equal(pred, gold)[0] is equal
    for completion in (f"So the result is \\boxed{{{pred}}}.", f"The final answer is ${pred}$."):
        result = verify_math(completion, gold)
        assert result.score == float(equal), (completion, gold, result.info)
        assert result.parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a \\boxed{1} then \\boxed{\\frac{2}{3}}", "\\frac{2}{3}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
        ("\\fbox{7}", "7"),
        ("$\\framebox{204}$ minutes", "204"),
        ("\\boxed 5.", "5"),
        ("\\boxed{" + "{" * 500 + "x" + "}" * 500 + "}", "{" * 500 + "x" + "}" * 500),
        ("\\boxed{3} and later an unclosed \\boxed{4", "3"),
        ("no box here", None),
        ("\\boxedfoo{3}", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("work...\nThe answer is 12.", "12"),
        ("Answer: $\\frac{1}{2}$", "\\frac{1}{2}"),
        ("**Final Answer:** (C)", "(C)"),
        ("answer is 1\nso the final answer is 2", "2"),
        ("no marker", None),
    ],
)
def test_final_answer_line(text, expected):
    assert final_answer_line(text) == expected


def test_box_wins_over_answer_line():
    assert extract_answer("The answer is 3, i.e. \\boxed{4}") == ("4", "boxed")


def test_no_answer_is_unparsed_zero():
    result = verify_math("I am not sure.", "3")
    assert (result.score, result.parsed, result.info["reason"]) == (0.0, False, "no_answer")


def test_reference_may_be_a_boxed_solution():
    assert verify_math("\\boxed{0.5}", "so it is \\boxed{\\frac{1}{2}}.").score == 1.0
