"""What the trainer side lends the rescue transforms (``sampling.RescueSources``): per-prompt reference traces
(PrefixRL), hint generators and reference answers (HiLL), the hint-reliance scorer and the factory of HiLL's LM
hinter (``train/hinter.py``). ``sampling/`` imports neither ``data/`` nor torch, so everything task- or
model-specific is built here.

For the arithmetic suite:

- the reference trace is the worked answer the warm start teaches (``carry_scratchpad``: the carries, ``|``,
  the answer; with ``task.scratchpad = 'mixed'`` behind the ``#`` that starts unprompted working; with
  ``'none'`` the direct answer itself): what a stronger model's rejection sampling would give;
- the hint generators read the operands and never write the full answer (the leakage gate checks anyway).

Datasets get no traces and no hints: PrefixRL then uses the policy's own successes only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from rollwise.data.scratch import carry_scratchpad
from rollwise.data.templates import encode_prompt
from rollwise.sampling import RescueSources
from rollwise.train.scope import build_rectifier

_EXPR = re.compile(r"^(\d+)([+\-*])(\d+)(?:\+(\d+))?=$")

#: the arithmetic hint generators, in the hinter's action order
HINT_NAMES = ("carries", "carries_half", "digits", "last_digit", "units", "estimate")


class PerPrompt(Sequence):
    """A read-only sequence computed on access (a trace for every prompt of a large pool costs nothing)."""

    def __init__(self, size: int, fn: Callable[[int], Any]) -> None:
        self._size, self._fn = size, fn

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int):
            raise TypeError("PerPrompt takes one integer index")
        if not -self._size <= i < self._size:
            raise IndexError(i)
        return self._fn(i % self._size)


def parse_arith(text: str) -> tuple[list[int], str, int] | None:
    """(operands, operator, value) of ``"a+b="``, ``"a-b="``, ``"a*b="`` or ``"a+b+c="``; None otherwise."""
    m = _EXPR.match(text)
    if m is None:
        return None
    ops = [int(m[1]), int(m[3])] + ([int(m[4])] if m[4] is not None else [])
    op = m[2]
    value = sum(ops) if op == "+" else ops[0] - ops[1] if op == "-" else ops[0] * ops[1]
    return ops, op, value


def arith_trace(text: str, reference: str, scratchpad: str) -> str | None:
    """The worked answer of an arithmetic prompt as the warm-started policy writes it (None: not arithmetic)."""
    parsed = parse_arith(text)
    if parsed is None:
        return None
    if scratchpad == "none":
        return reference
    work = carry_scratchpad(text, parsed[2])
    return "#" + work if scratchpad == "mixed" else work


def _lead(x: int) -> int:
    """``x`` rounded to one significant digit (57 -> 60, 4321 -> 4000)."""
    return round(x, -(len(str(x)) - 1)) if x >= 10 else x


def arith_hints(text: str) -> dict[str, str]:
    """Every hint generator's text for an arithmetic prompt ({} when it is not one)."""
    parsed = parse_arith(text)
    if parsed is None:
        return {}
    ops, op, value = parsed
    work = carry_scratchpad(text, value).split("|", 1)[0]
    units = [x % 10 for x in ops]
    if op == "*":
        unit_problem = f"{ops[0]}*{units[1]}={ops[0] * units[1]}"  # the first partial product
    else:
        unit_value = sum(units) if op == "+" else units[0] - units[1]
        unit_problem = f"{op.join(map(str, units))}={unit_value}"
    lead = [_lead(x) for x in ops]
    lead_value = sum(lead) if op == "+" else lead[0] - lead[1] if op == "-" else lead[0] * lead[1]
    return {
        "carries": f"carries {work}",
        "carries_half": f"carries start {work[: math.ceil(len(work) / 2)]}",
        "digits": f"{len(str(abs(value)))} digits" + (", negative" if value < 0 else ""),
        "last_digit": f"ends in {abs(value) % 10}",
        "units": f"units {unit_problem}",
        "estimate": f"about {op.join(map(str, lead))}={lead_value}",
    }


def build_rescue_sources(cfg: Any, task: Any, model: Any = None, tok: Any = None) -> RescueSources:
    """Traces, hints and reference answers of the task's pool; the reliance scorer and the LM hinter's factory
    (nothing is built until a ``hill`` transform with ``hinter = "lm"`` asks) when the policy is given."""
    pool = task.pool
    texts = [p.text for p in pool]
    refs = [p.reference for p in pool]
    traces = hints = None
    names: tuple[str, ...] = ()
    if cfg.task.suite == "arith":
        scratchpad = cfg.task.scratchpad
        traces = PerPrompt(len(pool), lambda i: arith_trace(texts[i], refs[i], scratchpad))
        hints, names = (lambda i: arith_hints(texts[i])), HINT_NAMES
    reliance = hinter = rectifier = None
    if tok is not None and traces is not None:  # SCOPE's PRM and reference splice (built on first use)
        rectifier = build_rectifier(cfg, texts, refs, traces, tok)
    if model is not None and tok is not None:
        from rollwise.train.hinter import build_hinter_factory
        from rollwise.train.scoring import build_reliance

        def encode(text: str) -> list[int]:  # as Trainer.encode: the configured template
            return encode_prompt(text, cfg.task, tok)

        reliance = build_reliance(model, tok.pad_token_id, encode, texts, cfg.generation.temperature)
        hinter = build_hinter_factory(cfg, texts, refs, model, tok)
    return RescueSources(references=refs, traces=traces, hint_names=names, hints=hints, reliance=reliance,
                         hinter=hinter, rectifier=rectifier)
