"""MC-GRPO preset: G+1 rollouts per prompt, every rollout handed to the estimator (which drops the pivot)."""

from __future__ import annotations

import numpy as np

from rollwise.sampling import Budget, GroupObs
from rollwise.sampling.presets import build_pipeline


def test_mc_grpo_preset_plans_g_plus_one():
    pipe, adv = build_pipeline(preset="mc_grpo", pool_size=10, group_size=4, batch_prompts=3, total_steps=5,
                               seed=0)
    assert adv == "mc_grpo"
    req = pipe.begin_step(0, Budget(100))
    assert len(req) == 3 and req.counts.tolist() == [5, 5, 5]
    pools = {int(p): GroupObs(int(p), np.array([1.0, 0, 0, 1, 0]), np.full(5, 10)) for p in req.prompts}
    assert pipe.next_request(pools) is None  # a single round
    groups = pipe.finalize(pools)
    assert [g.keep.tolist() for g in groups] == [[0, 1, 2, 3, 4]] * 3
    assert all(g.baseline is None for g in groups)


def test_mc_grpo_extra_composes_with_group_size_override():
    pipe, _ = build_pipeline(preset="mc_grpo", params={"fixed": {"n": 2}}, pool_size=10, group_size=8,
                             batch_prompts=2, total_steps=5, seed=0)
    assert pipe.begin_step(0, Budget(100)).counts.tolist() == [3, 3]  # G = 2 headline setting, +1 pivot
