"""``guess``: guess-the-number with higher/lower feedback, the embedded multi-turn default (procedural, offline).

A task is a secret in ``1..n``. The episode opens with ``"guess 1-15\\n"``; each action is a number; the
environment answers ``" up\\n"`` (the secret is higher), ``" down\\n"`` (lower) or ``" ?\\n"`` (not a number in
range; the turn is spent) and ends when the guess is right, with reward ``turn_decay ** (t - 1)`` on turn ``t``
(0 on every other step), ``info["success"] = True``. A played transcript reads::

    guess 1-15
    8 up
    12 down
    10 down
    9

The best policy is binary search (:func:`best_guess`): at most ``ceil(log2(n + 1))`` turns, and
:func:`best_policy_stats` gives its success and mean turns over every secret under a turn limit. The warm start
plays :func:`scripted_guess`, an imperfect player (a guess a quarter of the way through the numbers still
possible with probability ``habit``, else any of them), so RL has turns to save: played greedily (its habit) it
solves 12 of the 15 secrets within 5 turns, binary search all 15.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from rollwise.envs.base import EnvKnobs, StepResult
from rollwise.types import Prompt

UP, DOWN, INVALID = " up\n", " down\n", " ?\n"


class GuessKnobs(EnvKnobs):
    """Knobs of ``guess``."""

    n: int = Field(15, ge=1, le=999, description="secrets are 1..n (binary search needs ceil(log2(n+1)) turns)")
    max_turns: int = Field(5, ge=1, description="guesses per episode; an episode still guessing after them ends "
                           "unsolved (finish 'max_turns')")
    turn_decay: float = Field(0.9, gt=0, le=1, description="reward of a solve on turn t: turn_decay ** (t - 1) "
                              "(1 = every solve scores 1)")
    habit: float = Field(0.5, ge=0, le=1, description="warm-start player: probability of its habitual guess "
                         "(else a uniform one among the numbers still possible)")
    habit_at: float = Field(0.25, ge=0, le=1, description="warm-start player: where in the range still possible "
                            "its habitual guess lies (0.5 = binary search; 0.25 solves 12 of 15 in 5 turns)")
    latency_s: float = Field(0.0, ge=0, le=1, description="seconds each step waits before it answers (benchmarks "
                             "and tests: a slow environment, e.g. a remote sandbox; the warm start never waits)")


def best_guess(lo: int, hi: int) -> int:
    """Binary search's guess when the secret is known to lie in ``lo..hi``."""
    return (lo + hi) // 2


def habit_guess(lo: int, hi: int, at: float = 0.25) -> int:
    """The warm-start player's habitual guess: the point ``at`` of the way through ``lo..hi``."""
    return lo + int(at * (hi - lo))


def scripted_guess(lo: int, hi: int, rng: random.Random, habit: float, at: float = 0.25) -> int:
    """The warm-start player: its habitual guess with probability ``habit``, else a uniform one in ``lo..hi``
    (always consistent with the feedback, never the best policy unless ``at`` is 0.5)."""
    return habit_guess(lo, hi, at) if rng.random() < habit else rng.randint(lo, hi)


def turns_to_solve(n: int, secret: int, policy: Any = best_guess, max_turns: int | None = None) -> int | None:
    """Turns ``policy(lo, hi)`` needs to find ``secret`` in ``1..n`` (None: not within ``max_turns``)."""
    lo, hi = 1, n
    for t in range(1, (max_turns or n) + 1):
        g = policy(lo, hi)
        if g == secret:
            return t
        lo, hi = (g + 1, hi) if secret > g else (lo, g - 1)
    return None


def best_policy_stats(n: int, max_turns: int) -> dict[str, float]:
    """Binary search over every secret: success share, mean turns of solved episodes, worst case."""
    turns = [turns_to_solve(n, s, max_turns=max_turns) for s in range(1, n + 1)]
    solved = [t for t in turns if t is not None]
    return {"success": len(solved) / n, "turns_mean": sum(solved) / max(len(solved), 1),
            "turns_worst": float(math.ceil(math.log2(n + 1)))}


class GuessNumber:
    """Guess-the-number with higher/lower feedback (module docstring); one instance plays one episode."""

    Config = GuessKnobs

    def __init__(self, n: int = 15, turn_decay: float = 0.9, habit: float = 0.5, habit_at: float = 0.25,
                 latency_s: float = 0.0) -> None:
        self.n, self.turn_decay, self.habit, self.habit_at = n, turn_decay, habit, habit_at
        self.latency_s = latency_s
        self.secret = 0
        self.turn = 0

    def tasks(self, split: str, size: int, seed: int) -> list[Prompt]:
        """``train``: ``size`` secrets drawn uniformly with ``seed``; ``eval``: every secret once (``size``
        unused), so held-out success is exact over the task distribution."""
        if split == "eval":
            secrets = list(range(1, self.n + 1))
        else:
            rng = random.Random(f"guess:{split}:{seed}")
            secrets = [rng.randint(1, self.n) for _ in range(size)]
        return [Prompt(f"guess-{self.n}-{split}-{i}", self.opening(), str(s), {"secret": s, "level": "guess"})
                for i, s in enumerate(secrets)]

    def opening(self) -> str:
        return f"guess 1-{self.n}\n"

    def reset(self, task: Prompt) -> str:
        self.secret = int(task.meta.get("secret", task.reference))
        self.turn = 0
        return self.opening()

    def step(self, action: str) -> StepResult:
        if self.latency_s:
            time.sleep(self.latency_s)
        return self._play(action)

    def _play(self, action: str) -> StepResult:
        self.turn += 1
        text = action.strip()
        if not re.fullmatch(r"\d{1,4}", text) or not 1 <= int(text) <= self.n:
            return StepResult(INVALID, 0.0, False, {"valid": False})
        g = int(text)
        if g == self.secret:
            return StepResult(None, self.turn_decay ** (self.turn - 1), True, {"success": True, "turns": self.turn})
        return StepResult(UP if self.secret > g else DOWN, 0.0, False, {"valid": True})

    def sft_pairs(self, seed: int, max_turns: int) -> Iterator[tuple[str, str]]:
        """Endless (context text, action text) pairs from :func:`scripted_guess` playing random secrets: the
        warm start's data, in this environment's own words."""
        rng = random.Random(f"guess-sft:{seed}")
        while True:
            secret = rng.randint(1, self.n)
            context = self.reset(Prompt("sft", self.opening(), str(secret), {"secret": secret}))
            lo, hi = 1, self.n
            for _ in range(max_turns):
                g = scripted_guess(lo, hi, rng, self.habit, self.habit_at)
                yield context, str(g)
                res = self._play(str(g))
                if res.done:
                    break
                lo, hi = (g + 1, hi) if res.observation == UP else (lo, g - 1)
                context += str(g) + str(res.observation)
