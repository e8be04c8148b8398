"""FAPO: Flawed-Aware Policy Optimization (Ding et al., arXiv:2510.22543; verl recipe ``fapo``), the reward side.

A flawed positive is a rollout whose final answer is right but whose working is wrong somewhere (a guess, a
jump, a wrong carry that happens to cancel). A judge (:mod:`rollwise.rewards.judges`) reads each correct rollout
and returns the index of its earliest wrong step, or -1. FAPO's parameter-free penalty, on its own +-1 scale:

    R = +1 if correct, -1 if not;    R <- R - lambda for a flawed positive    (lambda = ``penalty``, 1.0: R = 0)

Here rewards live on ``task.reward_range`` [low, high] (default [0, 1]), so R is expressed through the affine
map ``low + (R + 1) / 2 * (high - low)``: with [0, 1] a right answer scores 1, a wrong one 0 and a flawed
positive 0.5 at lambda = 1 (``penalty`` 2 scores it like a wrong answer). GRPO's advantages (group mean and
std) are invariant to this affine map, so they equal FAPO's on the +-1 scale; Dr.GRPO's (mean only) are halved,
a constant the learning rate absorbs. Note that with the default ``sampler.positive_threshold`` 0.5 a flawed
positive (0.5) does not count as a success in the sampler's statistics.

Choices: "correct" is the verifier's top score (the range's high) on a check without a fault; every other
rollout is left as scored and not judged. Each rollout's ``VerifyResult.info`` gets ``flawed``: True / False
for a judged correct rollout (with ``flawed_step``, and ``unshaped_score`` when penalised), None for a rollout
not judged. A judge that raises is a counted, logged skip: the reward stays as verified, ``flawed`` is None
and ``judge_error`` holds the error (one line); never a crash and never a silent change. Judges run
synchronously, one call per correct rollout (the paper's GenRM runs asynchronously in the reward stage).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rollwise.rewards.base import VerifyResult
from rollwise.rewards.judges import Judge, get_judge

__all__ = ["FapoShaper", "compute_fapo_reward"]

log = logging.getLogger(__name__)


def compute_fapo_reward(correct: bool, flawed: bool, penalty: float = 1.0,
                        reward_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """FAPO's reward ``R`` (+1 / -1, minus ``penalty`` for a flawed positive) mapped onto ``reward_range``."""
    r = (1.0 - penalty * float(flawed)) if correct else -1.0
    low, high = reward_range
    return low + (r + 1.0) / 2.0 * (high - low)


class FapoShaper:
    """Penalise flawed positives found by ``judge`` (module docstring). ``judge``: a registered name or
    ``package.module:Class`` (``judge_model`` / ``judge_max_new_tokens`` go to the ``model`` judge), or a judge
    callable."""

    def __init__(self, judge: str | Judge = "carries", penalty: float = 1.0, judge_model: str | None = None,
                 judge_max_new_tokens: int = 256, *, reward_range: tuple[float, float] = (0.0, 1.0)) -> None:
        if not 0.0 <= penalty <= 2.0:
            raise ValueError(f"fapo penalty must be in [0, 2] (2: a flawed positive scores as a wrong answer), "
                             f"got {penalty}")
        if isinstance(judge, str):
            options: dict[str, Any] = {}
            if judge == "model":
                options = {"model": judge_model, "max_new_tokens": judge_max_new_tokens}
            judge = get_judge(judge, **options)
        self.judge, self.penalty = judge, float(penalty)
        self.reward_range = (float(reward_range[0]), float(reward_range[1]))

    def _correct(self, res: VerifyResult) -> bool:
        high = self.reward_range[1]
        return "fault" not in res.info and math.isclose(float(res.score), high, rel_tol=0.0, abs_tol=1e-9)

    def shape(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str],
              results: Sequence[VerifyResult]) -> list[VerifyResult]:
        """One shaped result per rollout, in order (module docstring for the ``info`` keys it adds)."""
        out: list[VerifyResult] = []
        errors, judged, last = 0, 0, ""
        for prompt, completion, reference, res in zip(prompts, completions, references, results, strict=True):
            if not self._correct(res):
                out.append(replace(res, info={**res.info, "flawed": None}))
                continue
            judged += 1
            try:
                step = int(self.judge(prompt, completion, reference))
            except Exception as exc:  # a judge bug or an unreadable rollout: skip it, counted and logged
                errors += 1
                last = " ".join(f"{type(exc).__name__}: {str(exc)[:300]}".split())
                out.append(replace(res, info={**res.info, "flawed": None, "judge_error": last}))
                continue
            if step < 0:
                out.append(replace(res, info={**res.info, "flawed": False, "flawed_step": -1}))
                continue
            score = compute_fapo_reward(True, True, self.penalty, self.reward_range)
            out.append(VerifyResult(score, res.parsed, {**res.info, "flawed": True, "flawed_step": step,
                                                        "unshaped_score": float(res.score)}))
        if errors:
            log.warning("fapo: the judge failed on %d of %d correct rollouts (rewards left as verified); last "
                        "error: %s", errors, judged, last)
        return out
