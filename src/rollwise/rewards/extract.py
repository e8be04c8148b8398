"""Answer extraction from model text: ``\\boxed{}`` contents and "The answer is X" lines.

Pure python and linear in the input (a brace scanner, not a regex, so nested braces and unclosed boxes cost
one pass each), which is what lets the cheap verifiers run in-process. Only ASCII digits count as digits
anywhere in rollwise's verifiers: look-alike digits (Arabic-Indic, fullwidth, mathematical bold) are kept
as they are and never silently equal ASCII ones.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "final_answer_line", "last_boxed", "strip_math_delimiters"]

_BOXED = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)
# "The final answer is X", "Answer: X", "**Answer:** X"; the capture runs to the end of the line.
_ANSWER_LINE = re.compile(r"(?i)\banswer\s*(?:is|:)[\s:*]*([^\n]*)")
UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_MAX_BOX_TRIES = 8  # unclosed boxes are retried from the end; cap keeps the worst case linear


def _braced(text: str, open_pos: int) -> str | None:
    """Contents of the ``{...}`` group opening at ``open_pos`` (escaped ``\\{`` ignored), None if unclosed."""
    depth = 0
    for m in _BRACE.finditer(text, open_pos):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return text[open_pos + 1 : m.start()]
    return None


def last_boxed(text: str) -> str | None:
    """Contents of the last closed ``\\boxed{}`` / ``\\fbox{}`` / ``\\framebox{}`` (or ``\\boxed 5``)."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for end in reversed(starts[-_MAX_BOX_TRIES:]):
        i = end
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "[":  # \framebox[width]{...}
            close = text.find("]", i)
            i = close + 1 if close != -1 else i
        if i < len(text) and text[i] == "{":
            inner = _braced(text, i)
            if inner is not None:
                return inner.strip()
        elif i > end:  # "\boxed 5": one token up to whitespace or a math delimiter
            m = re.match(r"[^\s$]+", text[i : i + 256])
            if m:
                return m.group().rstrip(".")
    return None


def strip_math_delimiters(s: str) -> str:
    """Trim markdown emphasis, ``$``/``\\(``/``\\[`` delimiters and a trailing full stop."""
    s = s.strip().strip("*").strip().rstrip(" .")
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    s = s.rstrip(" .")
    if len(UNESCAPED_DOLLAR.findall(s)) == 1:  # a lone "$" left from "$x$ dollars" etc.
        s = UNESCAPED_DOLLAR.sub("", s)
    return s.strip()


def final_answer_line(text: str) -> str | None:
    """The text after the last "answer is" / "answer:" marker, up to the end of its line."""
    last = None
    for m in _ANSWER_LINE.finditer(text):
        last = m
    if last is None:
        return None
    ans = strip_math_delimiters(last.group(1))
    return ans or None


def extract_answer(text: str) -> tuple[str | None, str]:
    """The final answer and how it was found: last box first, then a final-answer line."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    line = final_answer_line(text)
    if line is not None:
        return line, "answer_line"
    return None, "none"
