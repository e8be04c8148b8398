"""Group gates: drop groups after generation (and optionally refill the batch with fresh prompts)."""

from __future__ import annotations

import numpy as np

from rollwise.sampling.base import FilterGate, GroupObs


class DynamicSamplingGate(FilterGate):
    """DAPO dynamic sampling: keep a group iff its kept rewards are not all equal (or it has one rollout);
    refill with fresh prompts until ``batch_prompts`` groups pass, at most ``max_refills`` extra calls."""

    refill = True

    def __init__(self, max_refills: int = 10, refill: bool = True) -> None:
        self.max_refills, self.refill = max_refills, refill

    def passes(self, pools: list[GroupObs], kept: list[np.ndarray]) -> np.ndarray:
        return np.array([len(k) == 1 or p.is_mixed(k) for p, k in zip(pools, kept)], dtype=bool)
