"""Process reward models (PRMs): a completion cut into steps, each step scored in [0, 1] (1 = correct).

SCOPE (arXiv:2602.24110) locates the *first wrong step* of a failed rollout with a PRM and rectifies the rollout
from there. The slot is a registry of factories; each builds a callable::

    prm = PRMS.get(name)(**knobs)
    judged = prm(prompt_text, reference, completion_text) -> StepScores(starts, scores)

``starts[i]`` is the character offset where step i begins in the completion, so the same object segments an
expert solution too (the splice takes the expert's steps from the first wrong one on). A name that is not
registered but reads ``package.module:attr`` is imported as user code (any callable of that signature, or a
factory of one: a model-backed PRM goes here). Torch-free.

``arith``, the exact checker of the arithmetic scratchpads (``carry_scratchpad``), is an oracle: the worked
answer of a prompt is unique (one carry per column, one running total per term), so a step is correct iff it
equals the expert's step at the same index. Steps: every carry (or borrow, or sign) character of the working,
one step per running total of a ``chain`` sum (its ``,`` opens the step), and ``|`` with the answer as the last
step. A step missing from a completion is not scored (the completion simply has fewer steps).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rollwise.data.scratch import carry_scratchpad
from rollwise.registry import Registry

_CHAIN = re.compile(r"^sum\((\d+(?:,\d+)+)\)=$")
_EXPR = re.compile(r"^(\d+)([+\-*])(\d+)(?:\+(\d+))?=$")


@dataclass(frozen=True)
class StepScores:
    """A PRM's verdict on one completion: where each step starts and its score."""

    starts: list[int]  # [S] character offset of each step in the completion, increasing, starts[0] == 0
    scores: list[float]  # [S] in [0, 1]; 1 = the step is right


PRM = Callable[[str, str, str], StepScores]
PRMS: Registry[Callable[..., PRM]] = Registry("process reward model")


def arith_step_starts(text: str, chain: bool) -> list[int]:
    """Character offsets of the steps of a worked arithmetic answer ``<working>|<answer>``: for a chain sum one
    step per running total (a ``,`` belongs to the total after it); otherwise one per working character (a ``,``
    between multiplication rows belongs to the character after it); ``|`` and the answer are the last step."""
    bar = text.find("|")
    work = text if bar < 0 else text[:bar]
    if chain:
        starts = [0] + [i for i, ch in enumerate(work) if ch == ","] if work else []
    else:
        starts = [i - 1 if i > 0 and work[i - 1] == "," else i for i, ch in enumerate(work) if ch != ","]
        if work and (not starts or starts[0] != 0):
            starts = [0] + starts
    if bar >= 0:
        starts.append(bar)
    return starts


def split_steps(text: str, starts: list[int]) -> list[str]:
    """The step texts of ``text`` cut at ``starts``."""
    ends = starts[1:] + [len(text)]
    return [text[a:b] for a, b in zip(starts, ends)]


def compute_first_error(scores: list[float], tau: float = 0.5) -> int | None:
    """Index of the first step scored below ``tau`` (None: every step passes)."""
    for i, s in enumerate(scores):
        if s < tau:
            return i
    return None


class ArithStepChecker:
    """Exact step checker of the carry / running-total scratchpads: step i scores 1 iff it equals step i of the
    unique correct working (``carry_scratchpad``); 0 otherwise. A prompt that is not arithmetic gets no steps."""

    def __call__(self, prompt: str, reference: str, completion: str) -> StepScores:
        expert = self.expert(prompt, reference)
        if expert is None:
            return StepScores([], [])
        chain = _CHAIN.match(prompt) is not None
        starts = arith_step_starts(completion, chain)
        mine = split_steps(completion, starts)
        truth = split_steps(expert, arith_step_starts(expert, chain))
        scores = [float(i < len(truth) and s == truth[i]) for i, s in enumerate(mine)]
        return StepScores(starts, scores)

    @staticmethod
    def expert(prompt: str, reference: str) -> str | None:
        """The correct worked answer of an arithmetic prompt (None: not one)."""
        if _CHAIN.match(prompt) is None and _EXPR.match(prompt) is None:
            return None
        try:
            return carry_scratchpad(prompt, int(reference))
        except ValueError:
            return None


PRMS.register("arith", ArithStepChecker, doc="exact step checker of the arithmetic carry / running-total "
              "scratchpads (an oracle: every step compared with the unique correct working)")
