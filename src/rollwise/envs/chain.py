"""``chain``: the arith ``chain`` level played one running total per turn (procedural, offline), the reference
environment of the step-level methods (PivotRL arXiv 2603.21383, UI-S1 arXiv 2509.11543).

A task is a sum of terms in ``1..max_term`` (the arith ``chain`` level's: 1..29, 2-10 terms; ``min_terms..max_terms``
of them; configs/chain.toml sizes them for the tiny model). The
episode opens with ``"sum(3,14,7,25)="``; each action is one running total ended by ``,`` (more to come) or ``|``
(this is the final sum), and the model closes the turn with its end-of-sequence token. With ``sep = ""`` a played
transcript is the arith level's worked answer without the repeated answer::

    sum(3,14,7,25)=3,17,24,49|

The environment answers ``sep`` (a space: the next turn continues the working; see the knob for why it is not
empty), so the played context reads ``sum(3,14,7,25)=3, 17, 24, 49|``. The episode ends at a ``|`` (reward 1 if
the total is the sum, ``info["success"]``), or at the first action that is not a correct step (reward 0, finish
'done', ``info["valid"] = False``): free-running play stops at the first error.

**Functional step check** (:meth:`ChainSum.action_reward`): an action is correct iff its number is a partial sum
``t_1 + ... + t_j`` of a prefix that *extends* the current one (``j > k``, the prefix summed so far), ended by
``,`` while terms remain (``j < n``) or by ``|`` at the whole sum (``j = n``). Skipping a term (``24`` straight
after ``3``) is accepted; a string match against the expert is not required. Terms are positive, so partial sums
are strictly increasing and ``j`` is unique. :meth:`ChainSum.exact_reward` is the string match (PivotRL's
exact-match baseline, UI-S1's ``extract_match``).

**Expert** (:meth:`ChainSum.expert`): every running total in turn, ``["3,", "17,", "24,", "49|"]`` (the arith
level's ``running_totals``, as :func:`rollwise.train.rescue.arith_trace` writes it). ``snapshot``/``restore`` copy
the episode state ``(terms, k, total, done)``, so a method can branch at turn t or put the expert back.

**Warm start** (:meth:`ChainSum.sft_pairs`): SFT on an imperfect scripted player that skips a term with
probability ``skip`` (a functionally correct, inexact step) and slips (writes a total a few off, and its episode
ends there) with probability ``slip``, so the start policy is imperfect in both ways the methods care about.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field, model_validator

from rollwise.data.scratch import running_totals
from rollwise.envs.base import EnvKnobs, StepResult
from rollwise.types import Prompt

_ACTION = re.compile(r"^\s*(\d{1,5})\s*([,|])\s*$")
ChainState = tuple[tuple[int, ...], int, int, bool]  # (terms, k terms summed, running total, done)


class ChainKnobs(EnvKnobs):
    """Knobs of ``chain``."""

    min_terms: int = Field(2, ge=2, le=10, description="fewest terms of a task (the arith chain level: 2)")
    max_terms: int = Field(6, ge=2, le=10, description="most terms of a task (the arith chain level: 10; 6 keeps "
                           "the tiny model's episodes short)")
    max_term: int = Field(29, ge=1, le=999, description="terms are drawn from 1..max_term (the arith chain level: "
                          "29; positive, so partial sums are strictly increasing)")
    max_turns: int = Field(10, ge=1, description="running totals per episode (a task never needs more than its "
                           "number of terms)")
    skip: float = Field(0.15, ge=0, le=1, description="warm-start player: probability of skipping a term (two "
                        "terms added in one step: functionally correct, not the expert's string)")
    slip: float = Field(0.1, ge=0, le=1, description="warm-start player: probability of a wrong total (1-5 off; "
                        "its episode ends there)")
    sep: str = Field(" ", description="the environment's answer after a step that is not the last (the next turn's "
                     "context starts with it). Not empty: the loop drops an action's stop token from the context, so "
                     "with '' the prefix that ends turn t ('=3,' -> stop) is the prefix that opens turn t+1 ('=3,' "
                     "-> '17,'), and no policy ends a turn and starts the next with probability above 1/4")

    @model_validator(mode="after")
    def _terms(self) -> ChainKnobs:
        if self.min_terms > self.max_terms:
            raise ValueError(f"min_terms {self.min_terms} > max_terms {self.max_terms}")
        return self


def parse_action(action: str) -> tuple[int, str] | None:
    """``"17,"`` -> ``(17, ",")``; None when the action is not one number and one separator."""
    m = _ACTION.match(action)
    return (int(m.group(1)), m.group(2)) if m else None


def step_target(terms: tuple[int, ...] | list[int], k: int, action: str) -> int | None:
    """The prefix length ``j`` a correct action reaches from ``k`` terms summed (the functional check), else None."""
    got = parse_action(action)
    if got is None:
        return None
    value, sep = got
    total = 0
    for j, x in enumerate(terms, 1):
        total += x
        if j > k and total == value:
            return j if (sep == "|") == (j == len(terms)) else None
        if total > value:
            return None
    return None


def expert_actions(terms: list[int] | tuple[int, ...]) -> list[str]:
    """The expert's actions: every running total, ``[3, 14, 7, 25]`` -> ``["3,", "17,", "24,", "49|"]``."""
    totals = running_totals(list(terms)).split(",")
    return [t + ("|" if i == len(totals) - 1 else ",") for i, t in enumerate(totals)]


def task_terms(task: Prompt) -> list[int]:
    """A chain task's terms (from its meta, else parsed from ``sum(a,b,...)=``)."""
    if "terms" in task.meta:
        return [int(x) for x in task.meta["terms"]]
    m = re.match(r"^sum\((\d+(?:,\d+)+)\)=$", task.text)
    if m is None:
        raise ValueError(f"not a chain task: {task.text!r}")
    return [int(x) for x in m.group(1).split(",")]


class ChainSum:
    """The ``chain`` environment (module docstring); one instance plays one episode."""

    Config = ChainKnobs

    def __init__(self, min_terms: int = 2, max_terms: int = 6, max_term: int = 29, skip: float = 0.15,
                 slip: float = 0.1, sep: str = " ") -> None:
        self.min_terms, self.max_terms, self.max_term, self.skip, self.slip = min_terms, max_terms, max_term, skip, slip
        self.sep = sep
        self.terms: tuple[int, ...] = ()
        self.k, self.total, self.done = 0, 0, False

    # ------------------------------------------------------------------ tasks
    def make_terms(self, rng: random.Random) -> list[int]:
        return [rng.randint(1, self.max_term) for _ in range(rng.randint(self.min_terms, self.max_terms))]

    def task(self, uid: str, terms: list[int]) -> Prompt:
        return Prompt(uid, f"sum({','.join(map(str, terms))})=", str(sum(terms)),
                      {"terms": list(terms), "level": f"chain{len(terms)}", "max_turns": len(terms)})

    def tasks(self, split: str, size: int, seed: int) -> list[Prompt]:
        """``size`` tasks drawn with ``seed`` (``eval`` from its own stream, so it never repeats ``train``'s)."""
        rng = random.Random(f"chain:{split}:{seed}:{self.min_terms}-{self.max_terms}:{self.max_term}")
        return [self.task(f"chain-{split}-{seed}-{i}", self.make_terms(rng)) for i in range(size)]

    # ------------------------------------------------------------------ the episode
    def reset(self, task: Prompt) -> str:
        self.terms, self.k, self.total, self.done = tuple(task_terms(task)), 0, 0, False
        return task.text

    def step(self, action: str) -> StepResult:
        j = step_target(self.terms, self.k, action)
        if j is None:
            self.done = True
            return StepResult(None, 0.0, True, {"success": False, "valid": False, "k": self.k})
        self.k, self.total = j, sum(self.terms[:j])
        if j == len(self.terms):
            self.done = True
            return StepResult(None, 1.0, True, {"success": True, "valid": True, "k": j})
        return StepResult(self.sep, 0.0, False, {"valid": True, "k": j})

    # ------------------------------------------------------------------ the step-level methods' extensions
    def snapshot(self) -> ChainState:
        return (self.terms, self.k, self.total, self.done)

    def restore(self, state: ChainState) -> None:
        self.terms, self.k, self.total, self.done = state[0], state[1], state[2], state[3]

    def expert(self, task: Prompt) -> list[str]:
        return expert_actions(task_terms(task))

    def action_reward(self, state: ChainState, action: str) -> float:
        """1.0 iff ``action`` is a correct step from ``state`` (the functional check), else 0.0."""
        return float(step_target(state[0], state[1], action) is not None)

    def exact_reward(self, state: ChainState, action: str) -> float:
        """1.0 iff ``action`` is the expert's next total, as a string (spaces ignored), else 0.0."""
        terms, k = state[0], state[1]
        return float(k < len(terms) and action.strip() == expert_actions(terms)[k])

    # ------------------------------------------------------------------ the warm start
    def scripted_action(self, rng: random.Random) -> str:
        """The imperfect player's next action from the current state (skip / slip / the expert's)."""
        n, k = len(self.terms), self.k
        j = k + 2 if k + 2 < n and rng.random() < self.skip else k + 1
        value = sum(self.terms[:j])
        if rng.random() < self.slip:
            value = max(0, value + rng.choice([-1, 1]) * rng.randint(1, 5))
        return f"{value}{'|' if j == n else ','}"

    def sft_pairs(self, seed: int, max_turns: int) -> Iterator[tuple[str, str]]:
        """Endless (context text, action text) pairs of the scripted player on random tasks: the warm start."""
        rng = random.Random(f"chain-sft:{seed}")
        while True:
            task = self.task("sft", self.make_terms(rng))
            context = self.reset(task)
            for _ in range(max_turns):
                a = self.scripted_action(rng)
                yield context, a
                if self.step(a).done:
                    break
                context += a + self.sep

    def state_info(self) -> dict[str, Any]:
        return {"k": self.k, "total": self.total, "n": len(self.terms)}
