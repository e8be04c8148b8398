"""Test environments and scripted players shared by the environment tests."""

from __future__ import annotations

import re
import threading
from typing import Any

from rollwise.envs.base import StepResult
from rollwise.envs.guess import best_guess
from rollwise.generation.scripted import ScriptedEngine
from rollwise.types import Prompt

RELEASE = threading.Event()  # hung environments wait on it; tests set it when done


class Password:
    """Say the task's word: obs "no\\n" until right (reward 1, success); a task "bad:<kind>:<turn>" faults at that
    turn (1-based) in the way named: error, reset_error, timeout, malformed, not_a_number, none, nan, inf,
    neg_inf, out_of_range."""

    def __init__(self) -> None:
        self.word, self.turn, self.bad, self.at = "", 0, "", 0

    def reset(self, task: Prompt) -> str:
        self.word, self.turn = task.reference, 0
        if task.reference.startswith("bad:"):
            _, self.bad, at = task.reference.split(":")
            self.at = int(at)
            if self.bad == "reset_error":
                raise RuntimeError("reset failed")
        return f"say {task.text}:"

    def step(self, action: str) -> Any:
        self.turn += 1
        if self.bad and self.turn == self.at:
            return self._fault()
        if action.strip() == self.word:
            return StepResult(None, 1.0, True, {"success": True})
        return StepResult("no\n", 0.0, False, {})

    def _fault(self) -> Any:
        kind = self.bad
        if kind == "error":
            raise ValueError("step failed")
        if kind == "timeout":
            RELEASE.wait(30)
            return StepResult("no\n", 0.0, False, {})
        if kind == "malformed":
            return {"reward": 1.0}
        rewards = {"not_a_number": "1.0", "none": None, "nan": float("nan"), "inf": float("inf"),
                   "neg_inf": float("-inf"), "out_of_range": 2.0}
        return StepResult("no\n", rewards[kind], False, {})


def password_pool(words: list[str]) -> list[Prompt]:
    return [Prompt(f"t{i}", f"w{i}", w) for i, w in enumerate(words)]


def scripted_sayer(tokenizer: Any, wrong_first: int = 0, logprob: float = -0.5) -> ScriptedEngine:
    """Says ``x`` for the first ``wrong_first`` turns of an episode, then ``ok``: the word every Password task
    but a bad one wants is ``ok``. Turn count = the number of ``no`` observations in the context."""
    eos = tokenizer.eos_token_id

    def script(ids: list[int], j: int, call: int) -> tuple[list[int], list[float], str]:
        turn = tokenizer.decode(ids).count("no\n")
        text = "x" if turn < wrong_first else "ok"
        toks = tokenizer.encode(text, add_special_tokens=False) + [eos]
        return toks, [logprob] * len(toks), "stop"

    return ScriptedEngine(script, tokenizer=tokenizer)


def binary_search_engine(tokenizer: Any, n: int) -> ScriptedEngine:
    """Plays binary search by reading the guess-the-number transcript in its context."""
    eos = tokenizer.eos_token_id

    def script(ids: list[int], j: int, call: int) -> tuple[list[int], list[float], str]:
        lo, hi = 1, n
        for g, word in re.findall(r"(\d+) (up|down)\n", tokenizer.decode(ids)):
            lo, hi = (int(g) + 1, hi) if word == "up" else (lo, int(g) - 1)
        toks = tokenizer.encode(str(best_guess(lo, hi)), add_special_tokens=False) + [eos]
        return toks, [-0.25] * len(toks), "stop"

    return ScriptedEngine(script, tokenizer=tokenizer)
