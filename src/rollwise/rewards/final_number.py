"""``final_number`` verifier: the numeric final answer of a chatty reply (word problems, small chat models).

Looked for, in order: the last ``\\boxed{}`` (its last number, so ``\\boxed{23+45=68}`` reads 68); the last
"answer is" / "Answer:" / ``####`` line, where the number right after the marker is the answer unless the
line works it out ("The answer is 23 + 45 = 68": then the number after the last ``=``); otherwise the last
number in the reply. The GSM8K verifier reads the first number of an answer line, which scores that worked
line as 23. Numbers are read by :mod:`rollwise.rewards.gsm8k` (thousands separators, ``$``, decimals,
negatives, fractions; at most 64 digits, so a huge number is no answer). Pure python with linear regexes,
so it is marked safe to run in-process.
"""

from __future__ import annotations

from fractions import Fraction

from rollwise.rewards.base import VerifyResult, inline_safe
from rollwise.rewards.extract import final_answer_line, last_boxed
from rollwise.rewards.gsm8k import _last_number, parse_number, render_number

__all__ = ["extract_final_number", "verify_final_number"]


def _answer_line(text: str) -> str | None:
    """The text after the last ``####`` (to its line end) when there is one, else the last answer line."""
    hashes = text.rfind("####")
    if hashes != -1:
        return text[hashes + 4 :].split("\n", 1)[0]
    return final_answer_line(text)


def extract_final_number(completion: str) -> tuple[Fraction | None, str]:
    """The reply's final answer as an exact fraction (None if it has no number) and where it was found."""
    boxed = last_boxed(completion)
    if boxed is not None:
        value = _last_number(boxed)
        if value is not None:
            return value, "boxed"
    line = _answer_line(completion)
    if line is not None:
        value = _last_number(line.rsplit("=", 1)[1]) if "=" in line else parse_number(line)
        if value is not None:
            return value, "answer_line"
    return _last_number(completion), "last_number"


@inline_safe
def verify_final_number(completion: str, reference: str) -> VerifyResult:
    """Final number of the reply (box, answer line, else the last number) equals the numeric reference."""
    gold = parse_number(reference)
    if gold is None:
        raise ValueError(f"final_number reference has no number: {reference[:80]!r}")
    pred, where = extract_final_number(completion)
    if pred is None:
        return VerifyResult(0.0, False, {"reason": "no_number"})
    return VerifyResult(float(pred == gold), True, {"extracted": render_number(pred), "where": where})
