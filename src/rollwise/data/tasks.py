"""Procedural verifiable arithmetic tasks: deterministic by seed, stable ids, graded difficulty.

The levels are chosen so a warm-started ~1M-parameter model spans from near-perfect (one-digit addition) to
near-zero (two-digit multiplication): heterogeneous difficulty is what adaptive sampling exploits, and real
math sets have it. Every prompt is ``"<expression>="`` and the reference is the integer result. The ``chain``
level (``"sum(3,14,7,25)="``, worked as running totals ``3,17,24,49|49``) gives worked answers of widely varying
length, the long tail that partial-rollout and pruning methods (APRIL, ARRoL) exploit.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from rollwise.data.scratch import carry_scratchpad
from rollwise.types import Prompt


def _rand(rng: random.Random, digits: int) -> int:
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo, 10**digits - 1)


def _binary(op: str, da: int, db: int) -> Callable[[random.Random], tuple[str, int]]:
    fns = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

    def gen(rng: random.Random) -> tuple[str, int]:
        a, b = _rand(rng, da), _rand(rng, db)
        return f"{a}{op}{b}=", fns[op](a, b)

    return gen


def _sum3(rng: random.Random) -> tuple[str, int]:
    a, b, c = (_rand(rng, 2) for _ in range(3))
    return f"{a}+{b}+{c}=", a + b + c


def _chain(rng: random.Random) -> tuple[str, int]:
    """A sum of 2-10 terms in 1..29: worked answers (running totals) of 5 to ~40 characters (long tail)."""
    terms = [rng.randint(1, 29) for _ in range(rng.randint(2, 10))]
    return f"sum({','.join(map(str, terms))})=", sum(terms)


@dataclass(frozen=True)
class Level:
    """One difficulty level: a generator of (prompt text, integer answer) and the size of its space."""

    name: str
    doc: str
    make: Callable[[random.Random], tuple[str, int]]
    space: int  # number of distinct problems


LEVELS: dict[str, Level] = {
    lv.name: lv
    for lv in [
        Level("add1", "one-digit addition", _binary("+", 1, 1), 100),
        Level("add2", "two-digit addition", _binary("+", 2, 2), 90 * 90),
        Level("sub2", "two-digit subtraction (may be negative)", _binary("-", 2, 2), 90 * 90),
        Level("mul1", "two-digit times one-digit", _binary("*", 2, 1), 90 * 10),
        Level("add3", "three-digit addition", _binary("+", 3, 3), 900 * 900),
        Level("add4", "four-digit addition", _binary("+", 4, 4), 9000 * 9000),
        Level("sum3", "sum of three two-digit numbers", _sum3, 90**3),
        Level("mul2", "two-digit times two-digit", _binary("*", 2, 2), 90 * 90),
        Level("add5", "five-digit addition", _binary("+", 5, 5), 90000 * 90000),
        Level("chain", "sum of 2-10 numbers in 1..29, worked as running totals (long-tail lengths)", _chain,
              sum(29**k for k in range(2, 11))),
    ]
}


def format_answer(value: int, order: str = "msb") -> str:
    """The reference text of an integer answer: digits most-significant first (``msb``, the usual way) or
    least-significant first (``lsb``, sign kept in front), the order in which carries are computed."""
    if order == "msb":
        return str(value)
    if order == "lsb":
        return ("-" if value < 0 else "") + str(abs(value))[::-1]
    raise ValueError(f"task.answer_order: unknown order {order!r}; choose 'msb' or 'lsb'")


def _unique(level: Level, rng: random.Random, k: int, exclude: set[str]) -> list[tuple[str, int]]:
    """Up to ``k`` distinct problems of ``level`` not in ``exclude`` (fewer if the space is exhausted)."""
    out: dict[str, int] = {}
    tries = 0
    limit = max(k, 1) * 50 + 10 * level.space if level.space < 10 * k else max(k, 1) * 50
    while len(out) < k and tries < limit:
        text, ans = level.make(rng)
        tries += 1
        if text not in exclude and text not in out:
            out[text] = ans
    return list(out.items())


@dataclass
class TaskSuite:
    """Train pool, held-out eval sets per level, and the level index of every pool prompt."""

    pool: list[Prompt]
    levels: np.ndarray  # [N] int level index per pool prompt
    level_names: list[str]
    eval_sets: dict[str, list[Prompt]]
    heldout: set[str]  # eval texts kept out of the pool and the warm start (levels with a large space)


def assemble_suite(level_names: list[str],
                   make: Callable[[str], tuple[list[tuple[str, str]], list[tuple[str, str]], set[str]]]) -> TaskSuite:
    """A suite from ``make(level) -> (eval [(text, answer)], train [(text, answer)], held-out texts)``, level by
    level: the prompt ids, level metadata and level index every procedural suite shares."""
    pool: list[Prompt] = []
    levels: list[int] = []
    eval_sets: dict[str, list[Prompt]] = {}
    heldout: set[str] = set()
    for li, name in enumerate(level_names):
        ev, tr, held = make(name)
        eval_sets[name] = [Prompt(f"{name}-eval-{i:05d}", t, a, {"level": name}) for i, (t, a) in enumerate(ev)]
        heldout |= held
        pool += [Prompt(f"{name}-{i:05d}", t, a, {"level": name}) for i, (t, a) in enumerate(tr)]
        levels += [li] * len(tr)
    return TaskSuite(pool, np.array(levels, dtype=np.int64), list(level_names), eval_sets, heldout)


def build_suite(level_names: list[str], train_size: int, eval_size: int, seed: int,
                answer_order: str = "msb") -> TaskSuite:
    """Build the suite deterministically. Eval prompts are excluded from the pool, except for levels whose
    whole space is smaller than eval + train share (``add1`` has 100 problems): those share prompts."""
    unknown = [n for n in level_names if n not in LEVELS]
    if unknown:
        raise ValueError(f"unknown task level(s) {unknown}; choose from {sorted(LEVELS)}")
    per_level = max(train_size // max(len(level_names), 1), 1)

    def make(name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]], set[str]]:
        lv = LEVELS[name]
        ev = _unique(lv, random.Random(f"eval-{seed}-{name}"), eval_size, set())
        exclude = set() if lv.space < 2 * (eval_size + per_level) else {t for t, _ in ev}
        tr = _unique(lv, random.Random(f"train-{seed}-{name}"), per_level, exclude)
        return ([(t, format_answer(a, answer_order)) for t, a in ev],
                [(t, format_answer(a, answer_order)) for t, a in tr], exclude)

    return assemble_suite(level_names, make)


def sft_stream(weights: dict[str, float], seed: int, exclude: set[str], answer_order: str = "msb",
               scratchpad: str = "none", share: float = 0.2, prompted: float = 0.5) -> Iterator[tuple[str, str]]:
    """Endless (prompt, target) pairs for the warm start, levels drawn by ``weights``, eval prompts excluded.

    Targets by ``scratchpad``: ``'none'`` the answer; ``'carries'`` the carry scratchpad and the answer;
    ``'mixed'`` a ``prompted`` share of prompts end in ``'#'`` (a request for working) and get the scratchpad,
    the rest get ``'#'`` + scratchpad with probability ``share`` (unprompted working) and the answer otherwise."""
    names = [n for n, w in weights.items() if w > 0]
    if not names:
        raise ValueError("warmstart.level_weights has no positive weight")
    unknown = [n for n in names if n not in LEVELS]
    if unknown:
        raise ValueError(f"warmstart.level_weights: unknown level(s) {unknown}")
    w = np.array([weights[n] for n in names], dtype=np.float64)
    rng = random.Random(f"sft-{seed}")
    cum = np.cumsum(w / w.sum())
    mixed = scratchpad == "mixed"
    while True:
        name = names[min(int(np.searchsorted(cum, rng.random())), len(names) - 1)]
        text, ans = LEVELS[name].make(rng)
        asked = mixed and prompted > 0 and rng.random() < prompted
        worked = mixed and rng.random() < share
        if text in exclude:
            continue
        if scratchpad == "carries" or asked:
            yield text + ("#" if asked else ""), carry_scratchpad(text, ans)
        elif worked:
            yield text, "#" + carry_scratchpad(text, ans)
        else:
            yield text, format_answer(ans, answer_order)
