"""Group gates: drop groups after generation (and optionally refill the batch with fresh prompts)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rollwise.sampling.base import Gate, GroupObs, SampleContext


class DynamicSamplingGate(Gate):
    """DAPO dynamic sampling: keep a group iff its kept rewards are not all equal (or it has one rollout);
    refill with fresh prompts until ``batch_prompts`` groups pass, at most ``max_refills`` extra calls."""

    refill = True

    def __init__(self, max_refills: int = 10, refill: bool = True) -> None:
        self.max_refills, self.refill = max_refills, refill
        self._dropped = 0

    def keep(self, pools: list[GroupObs], kept: list[np.ndarray], ctx: SampleContext) -> np.ndarray:
        mask = np.array([len(k) == 1 or p.is_mixed(k) for p, k in zip(pools, kept)], dtype=bool)
        self._dropped = int((~mask).sum())
        return mask

    def metrics(self) -> dict[str, float]:
        return {"dropped": self._dropped}

    def state_dict(self) -> dict[str, Any]:
        return {}
