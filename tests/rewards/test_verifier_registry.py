"""Registry lookup, user ``module:function`` verifiers and result coercion (of the raw verifier: a bounded one
turns a coercion error into an "error" fault, see test_verifier_bounded.py)."""

from __future__ import annotations

import pickle

import pytest

from rollwise.rewards import VERIFIERS, VerifyResult, get_verifier
from rollwise.rewards.base import as_verifier, is_inline_safe, raw_verifier


def test_builtin_names_registered():
    assert {"math", "gsm8k", "exact", "regex"} <= set(VERIFIERS.names())


def test_unknown_name_lists_options():
    with pytest.raises(KeyError, match="math"):
        get_verifier("no_such_verifier")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rollwise_user_verifiers:half", VerifyResult(0.5, True)),
        ("rollwise_user_verifiers:typed", VerifyResult(1.0, True, {"user": True})),
    ],
)
def test_user_function_by_path_is_wrapped(name, expected):
    assert get_verifier(name)("a", "b") == expected


def test_bool_result_becomes_score():
    fn = get_verifier("rollwise_user_verifiers:same")
    assert fn("x", "x") == VerifyResult(1.0, True)
    assert fn("x", "y") == VerifyResult(0.0, True)


def test_bad_return_type_raises():
    with pytest.raises(TypeError, match="VerifyResult, float or bool"):
        raw_verifier("rollwise_user_verifiers:bad_type")("a", "b")
    with pytest.raises(TypeError, match="VerifyResult, float or bool"):
        get_verifier("rollwise_user_verifiers:bad_type", bounded=False)("a", "b")


def test_non_finite_score_raises():
    with pytest.raises(ValueError, match="non-finite"):
        as_verifier(lambda c, r: float("nan"), bounded=False)("a", "b")


def test_safe_inline_marks():
    assert is_inline_safe(get_verifier("exact")) and is_inline_safe(get_verifier("gsm8k"))
    assert not is_inline_safe(get_verifier("math")) and not is_inline_safe(get_verifier("regex"))


def test_wrapped_verifier_pickles_by_reference():
    fn = get_verifier("gsm8k")
    assert pickle.loads(pickle.dumps(fn))("#### 5", "5").score == 1.0


def test_verify_result_is_frozen():
    with pytest.raises(AttributeError):
        VerifyResult(1.0, True).score = 0.0  # type: ignore[misc]
