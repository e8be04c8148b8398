"""User-code verifiers for the fault-counting tests (imported by ``module:function`` name in pool workers)."""

from __future__ import annotations

import math
import os
import time

from rollwise.rewards.base import VerifyResult, inline_safe

WARMUP_TEXT = "The answer is \\boxed{\\frac{1}{2}}"  # the pool's warm-up completion (rewards/pool.py)


def faulty(completion: str, reference: str) -> float | VerifyResult:
    """Does what the completion says: sleep past any timeout, exit its process, raise, return an
    out-of-range or NaN score, or pass; and dies on the pool's warm-up string, as a strict user check might."""
    if completion == WARMUP_TEXT:
        os._exit(7)
    if completion == "sleep":
        time.sleep(60)
    elif completion == "exit":
        os._exit(3)
    elif completion == "raise":
        raise RuntimeError("verifier bug")
    elif completion == "five":
        return 5.0
    elif completion == "minus":
        return VerifyResult(-2.0, True, {"user": True})
    elif completion == "nan":
        return VerifyResult(math.nan, True)
    return 1.0


@inline_safe
def faulty_inline(completion: str, reference: str) -> float | VerifyResult:
    """The same checks, minus the ones that would take the test process down; marked safe to run in-process."""
    if completion in ("sleep", "exit") or completion == WARMUP_TEXT:
        raise AssertionError("not for the inline tests")
    return faulty(completion, reference)
