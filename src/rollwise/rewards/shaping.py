"""Reward shaping applied after verification (torch-free registry, so the config can validate names at load).

FAPO (flawed-positive penalty) is the first entry: a judge reads each correct rollout and a flawed positive
(right final answer reached by a wrong step) loses ``penalty``. Implementations are imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rollwise.registry import Registry

REWARD_SHAPERS: Registry = Registry("reward shaping", knobs_from_entry=False)


@dataclass(frozen=True)
class FapoKnobs:
    judge: str = field(default="carries", metadata={"doc": "judge of correct rollouts: carries (rule-based, "
                                                           "arith scratchpads) or package.module:Class"})
    penalty: float = field(default=1.0, metadata={"doc": "FAPO lambda on the +-1 reward scale (1.0: a flawed "
                                                         "positive scores like... see rewards/fapo.py)"})


REWARD_SHAPERS.register("fapo", "rollwise.rewards.fapo:FapoShaper", config=FapoKnobs,
                        doc="FAPO: penalise right answers reached by wrong steps (arXiv:2510.22543)")
