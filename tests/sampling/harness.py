"""Scripted trainer shared by the multi-round sampler tests: drives one pipeline step with given rewards."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rollwise.sampling import Budget, GroupObs

Reward = Callable[[int, int, int], float]  # (prompt, step, index in pool) -> reward


def drive(pipe, step: int, budget: Budget, reward: Reward):
    """Scripted trainer: run one step through the pipeline; return (plans, pools, trained groups)."""
    req = pipe.begin_step(step, budget)
    pools: dict[int, GroupObs] = {}
    plans: list[dict[int, int]] = []
    while req is not None:
        plans.append(dict(zip(req.prompts.tolist(), req.counts.tolist())))
        for p, c in plans[-1].items():
            have = pools[p].rewards if p in pools else np.zeros(0)
            new = np.array([reward(p, step, len(have) + j) for j in range(c)], dtype=np.float64)
            r = np.concatenate([have, new])
            pools[p] = GroupObs(p, r, np.full(len(r), 10, dtype=np.int64))
        budget.charge(req.total, 10 * req.total)
        req = pipe.next_request(pools)
    plan = pipe.finalize(pools)
    pipe.observe(pools, plan.groups)
    return plans, pools, [g for g in plan.groups if not g.replayed]
