"""``gsm8k`` verifier: a numeric final answer compared exactly (as a fraction) with the reference.

The answer is looked for, in order, on the last ``####`` line, in the last ``\\boxed{}``, on a final-answer
line ("The answer is $1,200.") and finally as the last number in the text. Thousands separators, currency
signs, units, trailing percent signs, decimals (``18.00`` == ``18``), negatives (also U+2212 minus) and
fractions (``3/4``, ``\\frac{3}{4}``) are understood. Only ASCII digits are digits. Pure python with
linear regexes (no nested or adjacent quantifiers), so it is marked safe to run in-process.
"""

from __future__ import annotations

import re
from fractions import Fraction

from rollwise.rewards.base import VerifyResult, inline_safe
from rollwise.rewards.extract import final_answer_line, last_boxed

__all__ = ["extract_number", "parse_number", "verify_gsm8k"]

# Optional sign/currency prefix without spaces (spaces between optional parts would backtrack
# quadratically on long blank runs), then 1,234,567 or 1234567, an optional decimal part, optional /den.
_NUMBER = re.compile(
    r"(?<![0-9.])(?P<sign>-\$?|\$-?)?"
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?P<dec>\.[0-9]+)?(?:/(?P<den>[0-9]+))?"
)
_FRAC = re.compile(r"\\[dt]?frac\{(-?[0-9]+)\}\{([0-9]+)\}")
_CALC = re.compile(r"<<[^<>\n]*>>")  # GSM8K calculator annotations "<<48/2=24>>"
_MAX_DIGITS = 64


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` as an exact fraction, or None."""
    text = _FRAC.sub(r"\1/\2", text.replace("\u2212", "-").replace("\\$", "$").replace("\\%", "%"))
    m = _NUMBER.search(text)
    return _to_fraction(m) if m else None


def _to_fraction(m: re.Match[str]) -> Fraction | None:
    digits = m.group("int").replace(",", "") + (m.group("dec") or "")
    if len(digits) > _MAX_DIGITS:
        return None
    value = Fraction(digits)
    if m.group("den") is not None:
        if len(m.group("den")) > _MAX_DIGITS or int(m.group("den")) == 0:
            return None
        value /= int(m.group("den"))
    return -value if "-" in (m.group("sign") or "") else value


def _last_number(text: str) -> Fraction | None:
    text = _FRAC.sub(r"\1/\2", _CALC.sub("", text).replace("\u2212", "-").replace("\\$", "$"))
    last = None
    for last in _NUMBER.finditer(text):  # noqa: B007 - only the last match is wanted
        pass
    return _to_fraction(last) if last else None


def extract_number(completion: str) -> tuple[Fraction | None, str]:
    """The final numeric answer of a completion and where it was found."""
    hashes = completion.rfind("####")
    if hashes != -1:
        line = completion[hashes + 4 :].split("\n", 1)[0]
        value = parse_number(line)
        if value is not None:
            return value, "####"
    for where, found in (("boxed", last_boxed(completion)), ("answer_line", final_answer_line(completion))):
        if found is not None:
            value = parse_number(found)
            if value is not None:
                return value, where
    return _last_number(completion), "last_number"


def render_number(value: Fraction) -> str:
    """A parsed number as text: an integer plainly, else as a fraction (``3/4``)."""
    return str(value.numerator) if value.denominator == 1 else str(value)


@inline_safe
def verify_gsm8k(completion: str, reference: str) -> VerifyResult:
    """Numeric final answer (``####`` line, box, answer line or last number) equals the reference."""
    gold, _ = extract_number(reference) if "####" in reference else (parse_number(reference), "")
    if gold is None:
        raise ValueError(f"gsm8k reference has no number: {reference[:80]!r}")
    pred, where = extract_number(completion)
    if pred is None:
        return VerifyResult(0.0, False, {"reason": "no_number"})
    return VerifyResult(float(pred == gold), True, {"extracted": render_number(pred), "where": where})
