"""Verifiers for the procedural integer tasks: the integer answer first (``synthetic_int``) or after a scratchpad
and ``|`` (``synthetic_scratch``)."""

from __future__ import annotations

import re

from rollwise.rewards.base import VerifyResult

_INT = re.compile(r"-?[0-9]{1,40}")


def verify_int(completion: str, reference: str) -> VerifyResult:
    """Score 1 iff the completion (up to the first whitespace) is exactly the reference integer."""
    head = completion.strip().split(maxsplit=1)[0] if completion.strip() else ""
    if not _INT.fullmatch(head):
        return VerifyResult(0.0, False, {"reason": "no integer"})
    # "extracted": the final answer, so a majority vote (PETS, maj@k) compares answers, not working
    return VerifyResult(float(int(head) == int(reference)), True, {"extracted": str(int(head))})


verify_int.safe_inline = True  # type: ignore[attr-defined]


def verify_scratch(completion: str, reference: str) -> VerifyResult:
    """Score 1 iff the text after the last ``|`` (up to the first whitespace) is exactly the reference integer."""
    if "|" not in completion:
        return VerifyResult(0.0, False, {"reason": "no '|'"})
    return verify_int(completion.rsplit("|", 1)[1], reference)


verify_scratch.safe_inline = True  # type: ignore[attr-defined]


def verify_mixed(completion: str, reference: str) -> VerifyResult:
    """Either form of ``task.scratchpad = 'mixed'``: the integer after the last ``|`` when the completion has a
    scratchpad, else the leading integer of a direct answer."""
    return verify_scratch(completion, reference) if "|" in completion else verify_int(completion, reference)


verify_mixed.safe_inline = True  # type: ignore[attr-defined]
