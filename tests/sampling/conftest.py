"""Sampler test harness: a synthetic reward simulator and a scripted trainer that drives one pipeline step.

Rewards depend only on (seed, step, generation call), never on the pipeline's RNG, so a resumed pipeline that
plans the same requests sees the same rewards.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, GroupObs, PromptStats, SampleContext, TrainGroup
from rollwise.sampling.pipeline import SamplingPipeline


class RewardSim:
    """Binary rewards from a true pass rate per pool prompt."""

    def __init__(self, pass_rate: np.ndarray, seed: int = 0) -> None:
        self.pass_rate, self.seed = np.asarray(pass_rate, dtype=np.float64), seed

    def generate(self, prompts: np.ndarray, counts: np.ndarray, step: int, call: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, step, call])
        u = rng.random(int(counts.sum()))
        r = (u < np.repeat(self.pass_rate[prompts], counts)).astype(np.float64)
        return np.split(r, np.cumsum(counts)[:-1])


@dataclass
class StepLog:
    requests: list[tuple[list[int], list[int]]]  # (prompts, counts) of every generation call
    pools: dict[int, GroupObs]
    groups: list[TrainGroup]
    budget: Budget
    drawn: list[int]  # prompts of the replayed groups mixed in


def play_step(pipe: SamplingPipeline, sim: RewardSim, step: int, budget: int | None = None) -> StepLog:
    """One trainer step: plan -> generate (all rounds and refills) -> finalize (with replay) -> observe.
    ``groups`` are the fresh trained groups; ``drawn`` the prompts of the replayed ones. Default budget: what
    the pipeline's composition needs."""
    bud = Budget(budget if budget is not None else pipe.budget()[0])
    req = pipe.begin_step(step, bud)
    pools: dict[int, GroupObs] = {}
    requests: list[tuple[list[int], list[int]]] = []
    call = 0
    while req is not None and len(req):
        requests.append((req.prompts.tolist(), req.counts.tolist()))
        for p, r in zip(req.prompts.tolist(), sim.generate(req.prompts, req.counts, step, call)):
            old = pools[p].rewards if p in pools else np.zeros(0)
            new = np.concatenate([old, r])
            pools[p] = GroupObs(p, new, np.full(len(new), 10, dtype=np.int64),
                                payload=[SimpleNamespace(reward=float(x)) for x in new])
        bud.charge(req.total, 10 * req.total)
        call += 1
        req = pipe.next_request(pools)
    plan = pipe.finalize(pools)
    pipe.observe(pools, plan.groups)
    fresh = [g for g in plan.groups if not g.replayed]
    return StepLog(requests, pools, fresh, bud, [g.prompt for g in plan.groups if g.replayed])


def make_pipe(preset: str, pool: int = 200, group_size: int = 8, batch: int = 16, seed: int = 0,
              levels: np.ndarray | None = None, **params: dict) -> SamplingPipeline:
    return build_pipeline(preset=preset, params=params, pool_size=pool, group_size=group_size,
                          batch_prompts=batch, total_steps=100, seed=seed, levels=levels)


def make_ctx(size: int, step: int = 0, seed: int = 0, levels: np.ndarray | None = None,
             exclude: np.ndarray | None = None, group_size: int = 8, batch: int = 4) -> SampleContext:
    """A bare context for unit-testing one component."""
    return SampleContext(step, 100, group_size, batch, PromptStats(size), np.random.default_rng(seed),
                         Budget(10**6), levels, exclude)


def obs(prompt: int, rewards: list[float]) -> GroupObs:
    r = np.asarray(rewards, dtype=np.float64)
    return GroupObs(prompt, r, np.full(len(r), 10, dtype=np.int64))


@pytest.fixture
def harness() -> SimpleNamespace:
    return SimpleNamespace(RewardSim=RewardSim, play_step=play_step, make_pipe=make_pipe, make_ctx=make_ctx,
                           obs=obs)
