"""Carry scratchpads for the procedural arithmetic tasks: ``<carries>|<answer>``.

A direct answer written most-significant digit first makes the network resolve the whole carry chain
inside one forward pass before its first digit, which a 4-layer model cannot do for long numbers. The
scratchpad writes the carry (or borrow) of every column first, least-significant column first, then ``|`` and
the answer: every emitted token then needs only a constant amount of computation (the column's digits and the
carry just written). Errors compound with the number of columns, so difficulty still grows with length.

    57+68=    ->  11|125        (column carries 1, 1)
    52-38=    ->  +10|14        (sign, then borrows of |a-b| computed as larger minus smaller)
    38-52=    ->  -10|-14
    47*6=     ->  42|282        (carries of 7*6=42 and 4*6+4=28)
    47*36=    ->  42,21|1692    (carries of 47*6 and of 47*3, then the answer)
    12+34+56= ->  11|102        (three-operand column sums)

The ``chain`` level's prompts ``sum(3,14,7,25)=`` are worked as running totals, one addition per step:

    sum(3,14,7,25)=  ->  3,17,24,49|49

so the working's length grows with the number of terms (5 to ~40 characters): the long-tail testbed.
"""

from __future__ import annotations

import re

_EXPR = re.compile(r"^(\d+)([+\-*])(\d+)(?:\+(\d+))?=$")
_CHAIN = re.compile(r"^sum\((\d+(?:,\d+)+)\)=$")


def _digits(n: int, width: int) -> list[int]:
    """Digits of ``n`` least-significant first, padded with zeros to ``width``."""
    return [(n // 10**i) % 10 for i in range(width)]


def _add_carries(operands: list[int]) -> str:
    width = max(len(str(x)) for x in operands)
    carry, out = 0, []
    for column in zip(*(_digits(x, width) for x in operands)):
        carry = (sum(column) + carry) // 10
        out.append(str(carry))
    return "".join(out)


def _sub_borrows(big: int, small: int) -> str:
    width = len(str(big))
    borrow, out = 0, []
    for x, y in zip(_digits(big, width), _digits(small, width)):
        borrow = int(x - y - borrow < 0)
        out.append(str(borrow))
    return "".join(out)


def _mul_carries(a: int, d: int) -> str:
    carry, out = 0, []
    for x in _digits(a, len(str(a))):
        carry = (x * d + carry) // 10
        out.append(str(carry))
    return "".join(out)


def running_totals(terms: list[int]) -> str:
    """The running totals of a chain sum, comma-separated: ``[3, 14, 7, 25]`` -> ``"3,17,24,49"``."""
    total, out = 0, []
    for x in terms:
        total += x
        out.append(str(total))
    return ",".join(out)


def carry_scratchpad(prompt: str, value: int) -> str:
    """The ``<carries>|<answer>`` completion of an arithmetic prompt ``"a+b=" | "a-b=" | "a*b=" | "a+b+c="``, or
    ``<running totals>|<answer>`` for a chain sum ``"sum(a,b,...)="``."""
    if (c := _CHAIN.match(prompt)) is not None:
        return f"{running_totals([int(x) for x in c[1].split(',')])}|{value}"
    m = _EXPR.match(prompt)
    if m is None:
        raise ValueError(f"carry scratchpad: not an arithmetic prompt: {prompt!r}")
    a, op, b, c = int(m[1]), m[2], int(m[3]), m[4]
    if op == "+":
        work = _add_carries([a, b] + ([int(c)] if c is not None else []))
    elif op == "-":
        work = ("+" if a >= b else "-") + _sub_borrows(max(a, b), min(a, b))
    else:
        work = ",".join(_mul_carries(a, d) for d in _digits(b, len(str(b))))
    return f"{work}|{value}"
