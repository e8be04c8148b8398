"""``math`` verifier: the last ``\\boxed{}`` (or final-answer line) vs a LaTeX reference.

Equivalence is decided in three steps, cheapest first: a normalised string match; multiple-choice letters
and plain-text answers (``\\text{east}``) by string, because sympy would read a word as a product of
symbols and accept anagrams; otherwise math-verify's symbolic comparison (fractions vs decimals, intervals,
tuples, sets, percent, units, degrees). math-verify is called with its own signal-based timeouts off (they
fail outside the main thread) and only its LaTeX extractor (its plain-expression extractor runs sympy's
``parse_expr``, which evals), so this verifier is NOT bounded on its own: run it through ``VerifierPool``,
which kills a worker that hangs (e.g. ``\\boxed{10^{10^{10^{10}}}}`` makes sympy compute a huge power).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from rollwise.rewards.base import VerifyResult
from rollwise.rewards.extract import UNESCAPED_DOLLAR, extract_answer, last_boxed, strip_math_delimiters

__all__ = ["math_equal", "normalize_latex", "verify_math"]

_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_SPACING = re.compile(r"\\[!,;: ]|\\(?:displaystyle|quad|qquad)(?![A-Za-z])|~|\s+")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°")
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\{(.*)\}$", re.DOTALL)
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*$")


def normalize_latex(s: str) -> str:
    """Cosmetic LaTeX normalisation for the string fast path (never changes the value it denotes)."""
    s = strip_math_delimiters(s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _LEFT_RIGHT.sub("", s)
    s = _DEGREES.sub("", s)
    s = _SPACING.sub("", s)
    return s.rstrip(".")


def _has_non_ascii_digit(s: str) -> bool:
    return any(c.isdigit() for c in s if ord(c) > 127)


def _unwrap_text(s: str) -> str:
    """``\\text{(C)}`` -> ``(C)``; repeated for nested wrappers like ``\\textbf{\\text{C}}``."""
    s = s.strip()
    for _ in range(4):
        m = _TEXT_WRAP.match(s)
        if not m:
            break
        s = m.group(1).strip()
    return s


def _choice(s: str) -> str | None:
    """The multiple-choice letter in ``(C)``, ``\\text{(C)}``, ``C`` or ``\\textbf{(C)}``, else None."""
    m = _CHOICE.match(_unwrap_text(strip_math_delimiters(s)).replace(" ", ""))
    return m.group(1).upper() if m else None


def _text_answer(s: str) -> str | None:
    """Casefolded words of a plain-text answer like ``\\text{Evelyn}``, else None."""
    stripped = strip_math_delimiters(s)
    inner = _unwrap_text(stripped)
    if inner == stripped:
        return None  # a bare word in a LaTeX reference is a variable (``x``, ``p - q``), not text
    return " ".join(inner.casefold().split()) if _WORDS.match(inner) else None


class _DropTimeoutWarning(logging.Filter):
    """math-verify warns on every call that its timeout is off: we bound calls with worker processes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


@lru_cache(maxsize=1)
def _math_verify() -> Any:
    import math_verify  # lazy: sympy + antlr cost ~1 s and ~100 MB, only in processes that verify math

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutWarning())
    return math_verify


@lru_cache(maxsize=1024)
def _parse(latex: str) -> list[Any]:
    """Parse one answer with math-verify's LaTeX extractor only (never ``parse_expr``)."""
    mv = _math_verify()
    latex = UNESCAPED_DOLLAR.sub("", latex)  # unescaped "$" only: "\\$18" is eighteen dollars
    config = [mv.LatexExtractionConfig(boxed_match_priority=0)]
    return list(mv.parse(f"${latex}$", extraction_config=config, parsing_timeout=None))


def math_equal(pred: str, gold: str) -> tuple[bool, str]:
    """Whether LaTeX answer ``pred`` equals reference ``gold``, and which step decided it."""
    if normalize_latex(pred) == normalize_latex(gold):
        return True, "string"
    gold_choice = _choice(gold)
    if gold_choice is not None and not gold.strip().isalpha():  # "(C)", "\text{(C)}": a choice letter
        return _choice(pred) == gold_choice, "choice"
    gold_text = _text_answer(gold)
    if gold_text is not None:
        pred_inner = _unwrap_text(strip_math_delimiters(pred))
        return " ".join(pred_inner.casefold().split()) == gold_text, "text"
    if _has_non_ascii_digit(pred) and not _has_non_ascii_digit(gold):
        # math-verify keeps look-alike digits as strings today; decide here so an upgrade cannot change it
        return False, "non_ascii_digits"
    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False, "unparsed"
    ok = _math_verify().verify(gold_parsed, pred_parsed, timeout_seconds=None)
    return bool(ok), "sympy"


def verify_math(completion: str, reference: str) -> VerifyResult:
    """Last ``\\boxed{}`` (or "The answer is X") vs a LaTeX reference, by symbolic equivalence."""
    answer, where = extract_answer(completion)
    if answer is None or not answer.strip():
        return VerifyResult(0.0, False, {"reason": "no_answer"})
    gold = last_boxed(reference) if "\\boxed" in reference else reference
    ok, method = math_equal(answer, gold if gold is not None else reference)
    return VerifyResult(
        1.0 if ok else 0.0, True, {"extracted": answer[:200], "where": where, "method": method}
    )
