"""Reinforce-Ada: exit rules, balanced first-come downsampling, pool baseline, budget, resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from harness import Reward, drive  # tests/sampling/harness.py

from rollwise.sampling import Budget
from rollwise.sampling.presets import build_pipeline
from rollwise.sampling.reinforce_ada import ada_exited, compute_balanced_keep


def scripted(scripts: dict[int, list[float]]) -> Reward:
    return lambda p, step, j: scripts[p][j] if j < len(scripts[p]) else 0.0


def build(group_size: int = 4, pool: int = 3, batch: int = 3, **params):
    pipe, adv = build_pipeline(preset="reinforce_ada", params=params, pool_size=pool, group_size=group_size,
                               batch_prompts=batch, total_steps=10, seed=0)
    return pipe, adv


def test_exit_rules_by_hand():
    assert ada_exited(2, 2, 4, "balanced") and ada_exited(5, 3, 4, "balanced")
    assert not ada_exited(1, 7, 4, "balanced") and not ada_exited(6, 1, 4, "balanced")
    assert ada_exited(2, 3, 5, "balanced") and not ada_exited(3, 2, 5, "balanced")  # floor(5/2)=2 pos, 3 neg
    assert ada_exited(1, 0, 4, "positive_focused") and not ada_exited(0, 32, 4, "positive_focused")


@pytest.mark.parametrize("positive,n,expect", [
    ([1, 1, 1, 1, 1, 0, 1, 0], 4, [0, 1, 5, 7]),  # first-come: positives 0,1 then the two negatives
    ([0, 1, 0, 0, 1, 1, 0, 1], 4, [0, 1, 2, 4]),
    ([1, 1, 1, 1, 0, 1, 1, 1], 6, [0, 1, 2, 3, 4, 5]),  # one negative: fill with positives 3 and 5
    ([0, 0, 0, 1, 0, 0, 0, 0], 4, [0, 1, 2, 3]),  # one positive: fill with negatives
    ([1, 0], 4, [0, 1]),  # pool smaller than n keeps it all
    ([0] * 8, 4, [0, 1, 2, 3]),  # unfinished all-negative: kept (as the authors' code)
])
def test_balanced_downsample_order_and_fill(positive, n, expect):
    keep = compute_balanced_keep(np.array(positive, dtype=bool), n, "balanced")
    assert keep.tolist() == expect


def test_drop_unfinished_and_positive_focused():
    allneg, allpos = np.zeros(8, dtype=bool), np.ones(32, dtype=bool)
    assert compute_balanced_keep(allneg, 4, "balanced", drop_unfinished=True).size == 0
    assert compute_balanced_keep(allpos, 4, "balanced", drop_unfinished=True).size == 0
    one_pos = np.zeros(32, dtype=bool)
    one_pos[20] = True  # unfinished for balanced (needs 2 positives) but mixed: still trained
    assert compute_balanced_keep(one_pos, 4, "balanced", drop_unfinished=True).tolist() == [0, 1, 2, 20]
    # positive_focused: unfinished => no positive; clamp(ceil(0/8*4), 1, 3) = 1 but |pos| = 0 -> 4 negatives
    assert compute_balanced_keep(allneg, 4, "positive_focused").tolist() == [0, 1, 2, 3]
    assert compute_balanced_keep(allneg, 4, "positive_focused", drop_unfinished=True).size == 0
    assert compute_balanced_keep(one_pos, 4, "positive_focused").tolist() == [0, 1, 2, 20]


def test_rounds_exit_and_pool_baseline():
    scripts = {0: [1, 1, 0, 0],  # balanced after round 1
               1: [1, 1, 1, 0, 1, 1, 1, 0],  # 3+/1- after round 1, 6+/2- after round 2
               2: [0.0] * 12}  # never exits: all 3 rounds
    pipe, adv = build(reinforce_ada={"round_size": 4, "rounds": 3})
    assert adv == "pool_baseline"
    plans, pools, groups = drive(pipe, 0, Budget(1000), scripted(scripts))
    assert plans == [{p: 4 for p in plans[0]}, {1: 4, 2: 4}, {2: 4}]
    assert sorted(plans[0]) == [0, 1, 2]
    by = {g.prompt: g for g in groups}
    assert by[0].keep.tolist() == [0, 1, 2, 3] and by[0].baseline == pytest.approx(0.5)
    assert by[1].keep.tolist() == [0, 1, 3, 7] and by[1].baseline == pytest.approx(6 / 8)
    assert by[2].keep.tolist() == [0, 1, 2, 3] and by[2].baseline == pytest.approx(0.0)
    m = pipe.metrics()
    assert [m[f"sampler/allocator/active_round{r}"] for r in (1, 2, 3)] == [3, 2, 1]
    assert m["sampler/downsampler/unfinished"] == 1


def test_drop_unfinished_through_pipeline_and_positive_focused_exit():
    scripts = {0: [1, 1, 0, 0], 1: [0, 0, 0, 1, 0, 0, 0, 0], 2: [0.0] * 12}
    pipe, _ = build(reinforce_ada={"round_size": 4, "rounds": 3, "exit": "positive_focused"},
                    balanced={"mode": "positive_focused", "drop_unfinished": True})
    plans, _, groups = drive(pipe, 0, Budget(1000), scripted(scripts))
    assert plans[1:] == [{2: 4}, {2: 4}]  # prompts 0 and 1 have a positive after round 1
    assert sorted(g.prompt for g in groups) == [0, 1]


@pytest.mark.parametrize("budget,spent", [(10, 10), (16, 16), (21, 20)])
def test_budget_whole_rounds_in_order(budget, spent):
    pipe, _ = build(reinforce_ada={"round_size": 4, "rounds": 4})
    b = Budget(budget)
    plans, pools, _ = drive(pipe, 0, b, scripted({p: [0.0] * 16 for p in range(3)}))
    assert b.spent_rollouts == spent <= budget
    first = list(plans[0])
    for plan in plans[1:]:
        assert all(c == 4 for c in plan.values())  # extensions come in whole rounds only
        assert list(plan) == first[: len(plan)]  # earlier prompts keep priority


def test_resume_makes_same_plans():
    rate = np.linspace(0.05, 0.95, 12)

    def reward(p: int, step: int, j: int) -> float:
        return float(np.random.default_rng([p, step, j]).random() < rate[p])

    def fresh():
        return build(group_size=4, pool=12, batch=4, reinforce_ada={"round_size": 4, "rounds": 3})[0]

    full = fresh()
    ref = [drive(full, s, Budget(200), reward)[0] for s in range(4)]
    first = fresh()
    for s in range(2):
        drive(first, s, Budget(200), reward)
    resumed = fresh()
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert [drive(resumed, s, Budget(200), reward)[0] for s in (2, 3)] == ref[2:]
