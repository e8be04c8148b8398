"""``ledger``: arithmetic word problems played with a calculator tool (procedural, offline), the multi-turn text
game for a pretrained chat model (SmolLM2-135M-Instruct, ``configs/smollm2_ledger.toml``).

A task is a word problem of the ``words`` suite (:mod:`rollwise.data.word_problems`; default level ``mix2``,
"Tom has 23 apples, gets 45 more and then gives 12 away. How many apples does he have now?"). Each turn the
policy writes one action, a tool call as text:

- ``CALC: <expr>``: the environment evaluates the expression (integers, ``+ - * / ( )``; bounded, never Python's
  ``eval``) and answers ``= <value>`` (``= error: ...`` when it cannot); reward 0, the episode goes on;
- ``ANSWER: <n>``: ends the episode with reward 1 (``info["success"]``) if ``n`` is the answer, else 0.

A CALC scores ``step_reward`` (default 0) when the functional step check below accepts it (each needed value
once, so an episode's return is at most ``1 + 2 * step_reward`` on ``mix2``).

Anything else is an invalid action (``info["valid"] = False``): the environment says how to act and the turn is
spent. A played transcript (chat messages; the observation is a user message)::

    user:      Tom has 23 apples, gets 45 more and then gives 12 away. How many apples does he have now?
    assistant: CALC: 23 + 45
    user:      = 68
    assistant: CALC: 68 - 12
    user:      = 56
    assistant: ANSWER: 56

**Expert** (:meth:`Ledger.expert`): the canonical CALC sequence, left to right, then the answer:
``["CALC: 23 + 45", "CALC: 68 - 12", "ANSWER: 56"]``. **Functional step check** (:meth:`Ledger.action_reward`): a
CALC is correct when its value is an intermediate that some valid solution order still needs (``12*4``, ``4*12``
and ``48`` are the same step); for ``a + b - c`` the orders are ``(a+b)-c``, ``(a-c)+b`` and ``(b-c)+a``, an order
stays valid while it contains every useful value computed so far, and a value already computed is not needed
again. An ANSWER is correct when it is the answer. ``snapshot``/``restore`` copy the episode state.

Train and held-out problems are disjoint by operands (a problem is held out iff a hash of its operands says so,
one in five), whatever the seeds, so a held-out ``23 + 45 - 12`` is never trained on in another phrasing.
"""

from __future__ import annotations

import ast
import operator
import random
import re
import zlib
from collections.abc import Iterator
from fractions import Fraction

from pydantic import Field, field_validator

from rollwise.data.word_problems import WORD_LEVELS, render_problem
from rollwise.envs.base import EnvKnobs, StepResult
from rollwise.types import Prompt

INVALID = "Invalid action. Reply with one line: CALC: <expression> or ANSWER: <number>.\n"
_ACTION = re.compile(r"\b(CALC|ANSWER)\s*:\s*([^\n]*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_SYMBOLS = (("×", "*"), ("÷", "/"), ("x", "*"), ("X", "*"), ("−", "-"))
MAX_EXPR_CHARS, MAX_NODES, MAX_ABS = 80, 41, 10**12
LedgerState = tuple[str, tuple[int, ...], tuple[int, ...], bool]  # (op, operands, useful values computed, done)


class LedgerKnobs(EnvKnobs):
    """Knobs of ``ledger``."""

    levels: list[str] = Field(["mix2"], min_length=1, description="word-problem levels of the tasks "
                              "(rollwise.data.word_problems: add1, add2, sub2, mul1, mul2, div1, mix2, ...)")
    max_turns: int = Field(6, ge=1, description="actions per episode (the expert needs 3 on mix2, 2 on one-step "
                           "levels); an episode still running after them ends unsolved")
    step_reward: float = Field(0.0, ge=0, le=1, description="reward of a CALC the functional step check accepts "
                               "(shaping for a start model that never solves: a signal for the protocol and the "
                               "first step; 0 = only a right ANSWER scores)")
    max_tokens: int = Field(640, ge=2, description="tokens per episode, context and actions together (SmolLM2's "
                            "system prompt and six turns fit)")

    @field_validator("levels")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in WORD_LEVELS]
        if unknown:
            raise ValueError(f"unknown word-problem level(s) {unknown}; choose from {list(WORD_LEVELS)}")
        return v


class CalcError(ValueError):
    """An expression the calculator refuses (syntax, a name or call, too long, too large, division by zero)."""


def safe_eval(expr: str) -> Fraction:
    """The exact value of an arithmetic expression: integer and decimal literals, ``+ - * /``, unary signs and
    parentheses (``×``, ``x``, ``÷`` read as ``*``, ``/``; ``1,234`` as ``1234``), at most 80 characters and
    41 syntax nodes, every intermediate within 1e12 in magnitude. The text is parsed (``ast.parse``) and walked;
    nothing is executed."""
    text = expr.strip()
    for a, b in _SYMBOLS:
        text = text.replace(a, b)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    if not text or len(text) > MAX_EXPR_CHARS:
        raise CalcError(f"expression must be 1-{MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalcError("not an arithmetic expression") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalcError("expression too long")
    return _value(tree.body)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        out = Fraction(str(node.value))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        out = _value(node.operand) * (-1 if isinstance(node.op, ast.USub) else 1)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise CalcError("division by zero")
        out = _BINOPS[type(node.op)](left, right)
    else:
        raise CalcError("only numbers, + - * / and parentheses")
    if abs(out) > MAX_ABS:
        raise CalcError("number too large")
    return out


def show(value: Fraction) -> str:
    """A calculator's display: an integer as is, else a decimal to 4 places."""
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.4f}".rstrip("0")


def parse_action(text: str) -> tuple[str, str] | None:
    """The first ``CALC: ...`` / ``ANSWER: ...`` in ``text`` as ``("calc" | "answer", argument)``; a CALC's
    argument stops at ``=`` (``CALC: 23 + 45 = 68`` asks for ``23 + 45``). None: no action."""
    m = _ACTION.search(text)
    if m is None:
        return None
    kind, arg = m.group(1).lower(), m.group(2).strip()
    return kind, (arg.split("=")[0].strip() if kind == "calc" else arg)


def parse_answer(arg: str) -> int | None:
    m = _NUMBER.search(arg)
    return None if m is None else int(m.group(0).replace(",", ""))


def solution_orders(op: str, operands: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every valid order of a problem's intermediate values, each ending at the answer."""
    if op == "mix":
        a, b, c = operands
        return [(a + b, a + b - c), (a - c, a + b - c), (b - c, a + b - c)]
    return [(_OPS[op](*operands),)]


_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.floordiv}
_SIGN = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def needed_values(op: str, operands: tuple[int, ...], done: tuple[int, ...]) -> set[int]:
    """Values some valid order still needs given the useful values computed so far (``done``)."""
    live = [o for o in solution_orders(op, operands) if set(done) <= set(o)]
    return {v for o in live for v in o} - set(done)


def expert_actions(op: str, operands: tuple[int, ...]) -> list[str]:
    """The canonical CALC sequence (left to right) and the answer."""
    if op == "mix":
        a, b, c = operands
        return [f"CALC: {a} + {b}", f"CALC: {a + b} - {c}", f"ANSWER: {a + b - c}"]
    a, b = operands
    return [f"CALC: {a} {_SIGN[op]} {b}", f"ANSWER: {_OPS[op](a, b)}"]


def held_out(operands: tuple[int, ...]) -> bool:
    """One problem in five, by a hash of its operands: the held-out split, disjoint from train at any seed."""
    return zlib.crc32(repr(tuple(operands)).encode()) % 5 == 0


class Ledger:
    """The ``ledger`` environment (module docstring); one instance plays one episode."""

    Config = LedgerKnobs

    def __init__(self, levels: list[str] | None = None, step_reward: float = 0.0) -> None:
        self.levels, self.step_reward = list(levels or ["mix2"]), step_reward
        self.op, self.operands, self.answer = "add", (0, 0), 0
        self.done_values: tuple[int, ...] = ()
        self.done = False

    # ------------------------------------------------------------------ tasks
    def task(self, uid: str, level: str, operands: tuple[int, ...], text: str) -> Prompt:
        lv = WORD_LEVELS[level]
        return Prompt(uid, text, str(lv.answer(operands)), {"level": level, "op": lv.op, "operands": list(operands)})

    def tasks(self, split: str, size: int, seed: int) -> list[Prompt]:
        """``train``: ``size`` problems spread over the levels (phrasings may repeat a problem); ``eval``:
        ``size`` distinct held-out problems per level (fewer where the level has fewer)."""
        out: list[Prompt] = []
        per_level = size if split == "eval" else max(size // len(self.levels), 1)
        for name in self.levels:
            lv = WORD_LEVELS[name]
            rng = random.Random(f"ledger:{split}:{seed}:{name}")
            got: list[Prompt] = []
            seen: set[tuple[int, ...]] = set()
            for _ in range(50 * per_level + 20 * lv.space):
                if len(got) >= per_level:
                    break
                ops = lv.draw(rng)
                text = render_problem(lv.op, ops, rng)
                if held_out(ops) != (split == "eval") or (split == "eval" and ops in seen):
                    continue
                seen.add(ops)
                got.append(self.task(f"ledger-{split}-{seed}-{name}-{len(got)}", name, ops, text))
            out += got
        return out

    # ------------------------------------------------------------------ the episode
    def reset(self, task: Prompt) -> str:
        self.op, self.operands = task.meta["op"], tuple(int(x) for x in task.meta["operands"])
        self.answer, self.done_values, self.done = int(task.reference), (), False
        return task.text + "\n"

    def step(self, action: str) -> StepResult:
        got = parse_action(action)
        if got is None:
            return StepResult(INVALID, 0.0, False, {"valid": False})
        kind, arg = got
        if kind == "answer":
            n = parse_answer(arg)
            if n is None:
                return StepResult(INVALID, 0.0, False, {"valid": False})
            self.done = True
            ok = n == self.answer
            return StepResult(None, float(ok), True, {"valid": True, "success": ok, "answer": n})
        try:
            value = safe_eval(arg)
        except CalcError as e:
            return StepResult(f"= error: {e}\n", 0.0, False, {"valid": True, "useful": False})
        useful = value.denominator == 1 and int(value) in needed_values(self.op, self.operands, self.done_values)
        if useful:
            self.done_values += (int(value),)
        return StepResult(f"= {show(value)}\n", self.step_reward * useful, False, {"valid": True, "useful": useful})

    # ------------------------------------------------------------------ the step-level methods' extensions
    def snapshot(self) -> LedgerState:
        return (self.op, self.operands, self.done_values, self.done)

    def restore(self, state: LedgerState) -> None:
        self.op, self.operands, self.done_values, self.done = state
        self.answer = solution_orders(self.op, self.operands)[0][-1]

    def expert(self, task: Prompt) -> list[str]:
        return expert_actions(task.meta["op"], tuple(int(x) for x in task.meta["operands"]))

    def action_reward(self, state: LedgerState, action: str) -> float:
        """1.0 iff ``action`` is a correct step from ``state``: a CALC whose value some valid order still needs,
        or the right ANSWER; else 0.0 (the functional check, not a string match with the expert)."""
        op, operands, done_values, done = state
        got = parse_action(action)
        if done or got is None:
            return 0.0
        kind, arg = got
        if kind == "answer":
            return float(parse_answer(arg) == solution_orders(op, operands)[0][-1])
        try:
            value = safe_eval(arg)
        except CalcError:
            return 0.0
        return float(value.denominator == 1 and int(value) in needed_values(op, operands, done_values))

    @staticmethod
    def canonical_action(text: str) -> str | None:
        """The action parsed out of a reply, for string matches with the expert's (UI-S1's ``extract_match``,
        PivotRL's exact-match reward): ``CALC: 23 + 45 = 68`` -> ``CALC:23+45``, ``ANSWER: 1,056.`` ->
        ``ANSWER:1056``; None when the reply holds no action. ``CALC: 45 + 23`` is a different string (the
        functional check accepts it)."""
        got = parse_action(text)
        if got is None:
            return None
        kind, arg = got
        if kind == "answer":
            n = parse_answer(arg)
            return None if n is None else f"ANSWER:{n}"
        return "CALC:" + re.sub(r"\s+", "", arg)

    # ------------------------------------------------------------------ the warm start (plain-text models)
    def sft_pairs(self, seed: int, max_turns: int) -> Iterator[tuple[str, str]]:
        """Endless (context text, action text) pairs of the expert on random train problems, in plain text
        (a model without a chat template; a chat model reads the protocol from its system prompt)."""
        rng = random.Random(f"ledger-sft:{seed}")
        pool = self.tasks("train", 512, seed)
        while True:
            task = rng.choice(pool)
            context = self.reset(task)
            for a in self.expert(task)[:max_turns]:
                yield context, a
                res = self.step(a)
                if res.done:
                    break
                context += a + str(res.observation)
