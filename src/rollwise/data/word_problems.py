"""Procedural arithmetic word problems for pretrained chat models (``task.suite = "words"``).

The arith suite's ``"23+45="`` suits a model warm-started on that format; a pretrained chat model instead
reads questions. Each level here is one operation at one operand size, asked either bare ("What is 23 + 45?",
"What is 23 plus 45?") or as a short story ("Tom has 23 apples and gets 45 more. How many apples does he
have now?"); the reference is the integer result and ``final_number`` is the verifier that reads a chatty
reply's answer.

A *problem* is its operands (``add2`` 23, 45); the phrasing, name and object are drawn with it. The held-out
split is disjoint from the train pool by problem, not only by text, so a held-out ``23 + 45`` is never trained
on in another phrasing. Levels with a small problem space (``mul1``: 64 one-digit products) hold out at most
half of it; their pool then repeats the other half in many phrasings. Everything is deterministic by
``task.seed`` (the eval draw by ``eval-{seed}-{level}``, the pool by ``train-{seed}-{level}``), as in
:mod:`rollwise.data.tasks`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from rollwise.data.tasks import TaskSuite, assemble_suite

__all__ = ["WORD_LEVELS", "WordLevel", "build_word_suite", "render_problem"]

_PEOPLE = (("Tom", "he"), ("Mia", "she"), ("Sam", "he"), ("Ana", "she"), ("Leo", "he"), ("Zoe", "she"),
           ("Ben", "he"), ("Eva", "she"), ("Max", "he"), ("Lily", "she"))
_THINGS = ("apples", "stickers", "marbles", "books", "coins", "pencils", "cookies", "cards", "shells", "stamps")

# {a} {b} {c}: operands; {name} {pron}: a person and "he"/"she"; {obj}: a plural noun
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "add": (
        "What is {a} + {b}?",
        "What is {a} plus {b}?",
        "{name} has {a} {obj} and gets {b} more. How many {obj} does {pron} have now?",
        "There are {a} {obj} in a box and {b} {obj} on the table. How many {obj} are there in total?",
        "{name} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {pron} read in all?",
    ),
    "sub": (
        "What is {a} - {b}?",
        "What is {a} minus {b}?",
        "{name} has {a} {obj} and gives {b} of them to a friend. How many {obj} does {pron} have left?",
        "A shelf holds {a} {obj}. {name} takes {b} of them away. How many {obj} are still on the shelf?",
    ),
    "mul": (
        "What is {a} * {b}?",
        "What is {a} times {b}?",
        "There are {a} boxes with {b} {obj} in each box. How many {obj} are there in total?",
        "{name} buys {a} packs of {obj}. Each pack has {b} {obj}. How many {obj} does {pron} buy?",
    ),
    "div": (
        "What is {a} / {b}?",
        "What is {a} divided by {b}?",
        "{name} shares {a} {obj} equally among {b} friends. How many {obj} does each friend get?",
    ),
    "mix": (
        "What is {a} + {b} - {c}?",
        "{name} has {a} {obj}, gets {b} more and then gives {c} away. How many {obj} does {pron} have now?",
    ),
}


def _digits(rng: random.Random, n: int) -> int:
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10**n - 1)


def _add(n: int) -> Callable[[random.Random], tuple[int, ...]]:
    return lambda rng: (_digits(rng, n), _digits(rng, n))


def _sub(n: int) -> Callable[[random.Random], tuple[int, ...]]:
    def draw(rng: random.Random) -> tuple[int, ...]:  # a >= b: a story cannot give away more than there is
        a, b = _digits(rng, n), _digits(rng, n)
        return (a, b) if a >= b else (b, a)

    return draw


def _mul(n: int) -> Callable[[random.Random], tuple[int, ...]]:
    return lambda rng: (rng.randint(2, 9) if n == 1 else _digits(rng, n), rng.randint(2, 9))


def _div(rng: random.Random) -> tuple[int, ...]:
    b, q = rng.randint(2, 9), rng.randint(2, 9)
    return b * q, b  # exact: the quotient q is the answer


def _mix(rng: random.Random) -> tuple[int, ...]:
    a, b = _digits(rng, 2), _digits(rng, 2)
    return a, b, rng.randint(10, a + b)


_RESULT: dict[str, Callable[..., int]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a // b, "mix": lambda a, b, c: a + b - c,
}


@dataclass(frozen=True)
class WordLevel:
    """One level: an operation, a draw of its operands, and how many distinct problems it has."""

    name: str
    doc: str
    op: str  # key of _TEMPLATES and _RESULT
    draw: Callable[[random.Random], tuple[int, ...]]
    space: int  # distinct operand tuples

    def answer(self, operands: tuple[int, ...]) -> int:
        return _RESULT[self.op](*operands)


WORD_LEVELS: dict[str, WordLevel] = {
    lv.name: lv
    for lv in [
        WordLevel("add1", "one-digit + one-digit", "add", _add(1), 10 * 10),
        WordLevel("add2", "two-digit + two-digit", "add", _add(2), 90 * 90),
        WordLevel("add3", "three-digit + three-digit", "add", _add(3), 900 * 900),
        WordLevel("sub2", "two-digit - two-digit, result >= 0", "sub", _sub(2), 90 * 91 // 2),
        WordLevel("sub3", "three-digit - three-digit, result >= 0", "sub", _sub(3), 900 * 901 // 2),
        WordLevel("mul1", "one-digit x one-digit (2..9)", "mul", _mul(1), 8 * 8),
        WordLevel("mul2", "two-digit x one-digit (2..9)", "mul", _mul(2), 90 * 8),
        WordLevel("div1", "exact division, one-digit divisor and quotient (2..9)", "div", _div, 8 * 8),
        WordLevel("mix2", "two-digit + two-digit - a number in 10..sum (two steps)", "mix", _mix, 90 * 90 * 50),
    ]
}


def render_problem(op: str, operands: tuple[int, ...], rng: random.Random) -> str:
    """The question text of ``operands`` under operation ``op``, phrasing, person and object drawn from ``rng``."""
    template = rng.choice(_TEMPLATES[op])
    name, pron = rng.choice(_PEOPLE)
    obj = rng.choice(_THINGS)
    return template.format(**dict(zip("abc", operands)), name=name, pron=pron, obj=obj)


def _eval_problems(level: WordLevel, k: int, seed: int) -> list[tuple[str, tuple[int, ...]]]:
    """``k`` distinct problems (capped at half the space), each with one phrasing."""
    rng = random.Random(f"eval-{seed}-{level.name}")
    want = min(k, level.space // 2)
    out: dict[tuple[int, ...], str] = {}
    tries = 0
    while len(out) < want and tries < 50 * max(want, 1) + 20 * level.space:
        tries += 1
        operands = level.draw(rng)
        text = render_problem(level.op, operands, rng)
        out.setdefault(operands, text)
    return [(text, operands) for operands, text in out.items()]


def _train_problems(level: WordLevel, k: int, seed: int,
                    held_out: set[tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
    """Up to ``k`` distinct texts whose problems are not held out (a problem may recur in other phrasings)."""
    rng = random.Random(f"train-{seed}-{level.name}")
    out: dict[str, tuple[int, ...]] = {}
    tries = 0
    while len(out) < k and tries < 50 * max(k, 1):
        tries += 1
        operands = level.draw(rng)
        text = render_problem(level.op, operands, rng)
        if operands not in held_out:
            out.setdefault(text, operands)
    return list(out.items())


def build_word_suite(level_names: list[str], train_size: int, eval_size: int, seed: int) -> TaskSuite:
    """Train pool (``train_size`` spread evenly over levels) and ``eval_size`` held-out problems per level."""
    unknown = [n for n in level_names if n not in WORD_LEVELS]
    if unknown:
        raise ValueError(f"task.levels: unknown word-problem level(s) {unknown}; choose from {list(WORD_LEVELS)}")
    per_level = max(train_size // max(len(level_names), 1), 1)

    def make(name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]], set[str]]:
        lv = WORD_LEVELS[name]
        ev = _eval_problems(lv, eval_size, seed)
        tr = _train_problems(lv, per_level, seed, {o for _, o in ev})
        return ([(t, str(lv.answer(o))) for t, o in ev], [(t, str(lv.answer(o))) for t, o in tr], {t for t, _ in ev})

    return assemble_suite(level_names, make)
