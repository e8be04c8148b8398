"""Group gates: drop groups after generation (and optionally refill the batch with fresh prompts)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.sampling.base import FilterGate, GroupObs


class DynamicSamplingGate(FilterGate):
    """DAPO dynamic sampling: keep a group iff its kept rewards are not all equal; refill with fresh prompts
    until ``batch_prompts`` groups pass, at most ``max_refills`` extra generation calls of at most
    ``refill_scale`` x batch_prompts prompts each (DAPO: gen_bsz = 3 x train_bsz, 10 calls). DAPO's rule also
    keeps a group of one rollout; rollwise never trains a group of fewer than 2 (the pipeline drops it)."""

    class Config(Knobs):
        max_refills: int = Field(10, ge=0, le=1000, description="most refill generation calls per step (DAPO: 10)")
        refill: bool = Field(True, description="replace dropped groups with fresh prompts")
        refill_scale: float = Field(3.0, gt=0, le=100, description="a refill asks for at most this many x "
                                    "batch_prompts")

    def passes(self, pools: list[GroupObs], kept: list[np.ndarray]) -> np.ndarray:
        return np.array([p.is_mixed(k) for p, k in zip(pools, kept)], dtype=bool)
