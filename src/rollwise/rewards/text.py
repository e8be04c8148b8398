"""String verifiers: ``exact`` (normalised match) and ``regex`` (reference is a fullmatch pattern).

Normalisation is deliberately small: whitespace collapsed, case folded, markdown/``$`` delimiters and a
trailing full stop dropped, ``\\text{}`` unwrapped. No NFKC: fullwidth or other look-alike characters stay
distinct, so a model cannot be paid for an answer that only looks right. ``regex`` is not inline-safe: a
reference pattern with nested quantifiers can backtrack exponentially on hostile text, and Python's ``re``
has no timeout, so only a worker process can bound it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rollwise.rewards.base import VerifyResult, inline_safe
from rollwise.rewards.extract import extract_answer, strip_math_delimiters

__all__ = ["normalize_text", "verify_exact", "verify_regex"]

_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}$")


def normalize_text(s: str) -> str:
    """Collapse whitespace, casefold, strip delimiters, a trailing full stop and a ``\\text{}`` wrapper."""
    s = strip_math_delimiters(s)
    m = _TEXT_WRAP.match(s)
    if m:
        s = m.group(1)
    return " ".join(s.casefold().split()).rstrip(".")


def _candidate(completion: str) -> tuple[str, str]:
    """The extracted final answer, else the last non-empty line of the completion."""
    answer, where = extract_answer(completion)
    if answer is not None:
        return answer, where
    lines = [ln for ln in completion[-4096:].splitlines() if ln.strip()]
    return (lines[-1] if lines else ""), "last_line"


@inline_safe
def verify_exact(completion: str, reference: str) -> VerifyResult:
    """Whole completion or its final answer equals the reference after light normalisation."""
    gold = normalize_text(reference)
    if normalize_text(completion) == gold:
        return VerifyResult(1.0, True, {"where": "whole"})
    answer, where = _candidate(completion)
    if not answer.strip():
        return VerifyResult(0.0, False, {"reason": "empty"})
    return VerifyResult(
        float(normalize_text(answer) == gold), True, {"extracted": answer[:200], "where": where}
    )


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def verify_regex(completion: str, reference: str) -> VerifyResult:
    """The final answer (box, answer line or last line; stripped) fullmatches the reference pattern."""
    pattern = _compile(reference)  # a bad pattern is a data error: raises re.error, counted by the pool
    answer, where = _candidate(completion)
    answer = strip_math_delimiters(answer)
    if not answer:
        return VerifyResult(0.0, False, {"reason": "empty"})
    ok = pattern.fullmatch(answer) is not None
    return VerifyResult(float(ok), True, {"extracted": answer[:200], "where": where})
