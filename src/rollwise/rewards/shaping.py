"""Reward shaping applied after verification (torch-free registry, so the config can validate names at load).

A shaper is built as ``cls(reward_range=task.reward_range, **knobs)`` and called once per generation round in
the rollout collector, after verification::

    shaper.shape(prompts, completions, references, results) -> list[VerifyResult]

(``prompts``: the pool prompts' texts; ``completions``: the texts the verifier scored; one result per rollout, in
order). Evaluation never sees it: held-out pass@1 is the verifier's. User shapers plug in as
``package.module:Class``.

FAPO (flawed-positive penalty, arXiv:2510.22543) is the first entry: a judge reads each correct rollout and a
flawed positive (right final answer reached by a wrong step) loses ``penalty`` on FAPO's +-1 scale; see
:mod:`rollwise.rewards.fapo`. Implementations are imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from rollwise.components import Knobs
from rollwise.registry import Registry, import_object
from rollwise.rewards.judges import JUDGES

REWARD_SHAPERS: Registry = Registry("reward shaping", knobs_from_entry=False)


class FapoKnobs(Knobs):
    judge: str = Field("carries", description="judge of correct rollouts: carries (rule-based, worked arith "
                       "answers), model (generative reward model) or package.module:Class")
    penalty: float = Field(1.0, ge=0, le=2, description="FAPO lambda on its +-1 reward scale: a flawed positive "
                           "scores 1 - lambda there, (2 - lambda) / 2 on [0, 1] (1.0 -> 0.5; 2 = a wrong answer)")
    judge_model: str | None = Field(None, description="judge 'model': a local HF checkpoint directory or a "
                                    "package.module:function (prompt text -> reply with \\boxed{step})")
    judge_max_new_tokens: int = Field(256, ge=1, description="judge 'model' from a checkpoint: tokens per reply")

    @model_validator(mode="after")
    def _check_judge(self) -> FapoKnobs:
        if self.judge not in JUDGES and ":" not in self.judge:
            raise ValueError(f"unknown judge {self.judge!r}; {JUDGES.suggest(self.judge)} or package.module:Class")
        if self.judge not in JUDGES:  # user code: imported at load, not after the warm start
            try:
                import_object(self.judge)
            except (ImportError, ValueError) as exc:
                raise ValueError(f"judge: {exc}") from None
        if self.judge == "model" and not self.judge_model:
            raise ValueError("judge 'model' needs judge_model: a local HF checkpoint directory or a "
                             "package.module:function")
        if self.judge == "model" and ":" in self.judge_model:
            try:
                import_object(self.judge_model)
            except (ImportError, ValueError) as exc:
                raise ValueError(f"judge_model: {exc}") from None
        elif self.judge == "model" and not Path(self.judge_model).is_dir():
            raise ValueError(f"judge_model: {self.judge_model!r} is not a directory (a local HF checkpoint) nor a "
                             "package.module:function")
        return self


REWARD_SHAPERS.register("fapo", "rollwise.rewards.fapo:FapoShaper", config=FapoKnobs,
                        doc="FAPO: penalise right answers reached by wrong steps (arXiv:2510.22543)")


def check_reward_shaping(task: Any) -> None:
    """Refuse a shaping the task cannot feed (call it where the whole task config is known): FAPO's ``carries``
    judge reads worked arith answers, so it needs ``task.suite = 'arith'`` with a scratchpad."""
    spec = task.reward_shaping
    if spec is None or getattr(spec, "type", None) != "fapo" or spec.judge != "carries":
        return
    if task.suite != "arith" or task.scratchpad == "none":
        raise ValueError(f"task.reward_shaping: fapo's 'carries' judge reads worked arith answers "
                         f"('<carries>|<answer>'), but task.suite = {task.suite!r} and task.scratchpad = "
                         f"{task.scratchpad!r} give answers without working, so no rollout could be flawed; "
                         "use task.scratchpad = 'mixed' or 'carries', or another judge")
