"""A user verifier that calls a built-in through the public (bounded) API: inside a pool worker it must run the
raw verifier, not start a pool of its own (imported by ``module:function`` name in pool workers)."""

from __future__ import annotations

from rollwise.rewards import VerifyResult, get_verifier


def via_math(completion: str, reference: str) -> VerifyResult:
    return get_verifier("math")(completion, reference)
