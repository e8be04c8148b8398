"""Reinforce-Ada: exit rules, balanced first-come downsampling, pool baseline (advantages r - pool mean),
the shared positive threshold, budget, resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from harness import Reward, drive  # tests/sampling/harness.py

from rollwise.sampler_tables import build_pipeline, sampler_config
from rollwise.sampling import Budget
from rollwise.sampling.presets import required_advantage
from rollwise.sampling.reinforce_ada import ReinforceAdaAllocator, ada_exited, compute_balanced_keep


def scripted(scripts: dict[int, list[float]]) -> Reward:
    return lambda p, step, j: scripts[p][j] if j < len(scripts[p]) else 0.0


def build(group_size: int = 4, pool: int = 3, batch: int = 3, positive_threshold: float = 0.5, **params):
    return build_pipeline(preset="reinforce_ada", params=params, pool_size=pool, group_size=group_size,
                          batch_prompts=batch, total_steps=10, seed=0, positive_threshold=positive_threshold)


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
    pipe = build(reinforce_ada={"round_size": 4, "rounds": 3})
    assert required_advantage(sampler_config("reinforce_ada"), None) == "pool_baseline"
    plans, pools, groups = drive(pipe, 0, Budget(1000), scripted(scripts))
    assert plans == [{p: 4 for p in plans[0]}, {1: 4, 2: 4}, {2: 4}]
    assert sorted(plans[0]) == [0, 1, 2]
    by = {g.prompt: g for g in groups}
    # A = r - mean over the WHOLE pool (all rounds), restricted to the kept rows (TrainGroup has no .baseline
    # any more: the baseline is folded into the advantages)
    assert by[0].keep.tolist() == [0, 1, 2, 3] and by[0].advantages.tolist() == [0.5, 0.5, -0.5, -0.5]
    # pool mean 6/8; kept rewards [1, 1, 0, 0] (not re-centred to +-0.5)
    assert by[1].keep.tolist() == [0, 1, 3, 7] and by[1].advantages.tolist() == [0.25, 0.25, -0.75, -0.75]
    assert by[2].keep.tolist() == [0, 1, 2, 3] and by[2].advantages.tolist() == [0.0] * 4  # trained, no signal
    assert all(g.weight == 1.0 and not g.replayed and g.step == 0 for g in groups)
    m = pipe.metrics()
    assert [m[f"sampler/allocator/active_round{r}"] for r in (1, 2, 3)] == [3, 2, 1]
    assert m["sampler/downsampler/unfinished"] == 1
    assert m["sampler/rounds"] == 3 and m["sampler/rollouts_per_prompt_max"] == 12


def test_positive_threshold_is_the_samplers():
    # one threshold for the exit rule, the down-sampler and the pool baseline, set on the pipeline (the
    # components' own positive_threshold knobs were removed)
    scripts = {0: [0.9, 0.6, 0.1, 0.6, 0.9, 0.1, 0.1, 0.1]}
    pipe = build(pool=1, batch=1, positive_threshold=0.7, reinforce_ada={"round_size": 4, "rounds": 2})
    plans, pools, groups = drive(pipe, 0, Budget(100), scripted(scripts))
    # at 0.7 round 1 has one positive (0.9): not balanced, a second round; 2+/6- then
    assert [list(p.values()) for p in plans] == [[4], [4]]
    (g,) = groups
    # balanced keep: positives 0, 4 and the first negatives 1, 2; baseline 2/8 (binarised), A = raw r - .25
    assert g.keep.tolist() == [0, 1, 2, 4]
    np.testing.assert_allclose(g.advantages, [0.65, 0.35, -0.15, 0.65])
    pipe = build(pool=1, batch=1, reinforce_ada={"round_size": 4, "rounds": 2})  # at 0.5: 3+/1- ... 4+/4-
    plans, _, (g,) = drive(pipe, 0, Budget(100), scripted(scripts))
    assert len(plans) == 2 and g.keep.tolist() == [0, 1, 2, 5]
    np.testing.assert_allclose(g.advantages, np.array([0.9, 0.6, 0.1, 0.1]) - 0.5)
    with pytest.raises(ValueError):
        ReinforceAdaAllocator(positive_threshold=0.7)


def test_drop_unfinished_through_pipeline_and_positive_focused_exit():
    scripts = {0: [1, 1, 0, 0], 1: [0, 0, 0, 1, 0, 0, 0, 0], 2: [0.0] * 12}
    pipe = build(reinforce_ada={"round_size": 4, "rounds": 3, "exit": "positive_focused"},
                 balanced={"mode": "positive_focused", "drop_unfinished": True})
    plans, _, groups = drive(pipe, 0, Budget(1000), scripted(scripts))
    assert plans[1:] == [{2: 4}, {2: 4}]  # prompts 0 and 1 have a positive after round 1
    assert sorted(g.prompt for g in groups) == [0, 1]
    m = pipe.metrics()
    assert m["sampler/downsampler/dropped"] == 1.0 and m["sampler/dropped_small"] == 1  # empty keep: dropped


@pytest.mark.parametrize("budget,spent", [(10, 10), (16, 16), (21, 20), (9, 8)])
def test_budget_whole_rounds_in_order(budget, spent):
    pipe = build(reinforce_ada={"round_size": 4, "rounds": 4})
    b = Budget(budget)
    plans, pools, groups = drive(pipe, 0, b, scripted({p: [0.0] * 16 for p in range(3)}))
    assert b.spent_rollouts == spent <= budget
    # budget 9: round 1 would be [4, 4, 1]; a prompt cut below 2 rollouts is dropped (not sampled once)
    assert all(c >= 2 for c in plans[0].values()) and all(len(g.keep) >= 2 for g in groups)
    first = list(plans[0])
    for plan in plans[1:]:
        assert all(c == 4 for c in plan.values())  # extensions come in whole rounds only
        assert list(plan) == first[: len(plan)]  # earlier prompts keep priority


def test_default_budget_is_every_round_for_every_prompt():
    pipe = build(reinforce_ada={"round_size": 4, "rounds": 3})
    assert pipe.budget() == (3 * 4 * 3, 4 * 4)  # need P*M*N; minimum one first round + one more round
    b = Budget(pipe.budget()[0])
    plans, pools, _ = drive(pipe, 0, b, scripted({p: [0.0] * 12 for p in range(3)}))  # nobody ever exits
    assert b.spent_rollouts == 36 and [sum(p.values()) for p in plans] == [12, 12, 12]


def test_resume_makes_same_plans():
    rate = np.linspace(0.05, 0.95, 12)

    def reward(p: int, step: int, j: int) -> float:
        return float(np.random.default_rng([p, step, j]).random() < rate[p])

    def fresh():
        return build(group_size=4, pool=12, batch=4, reinforce_ada={"round_size": 4, "rounds": 3})

    full = fresh()
    ref = [drive(full, s, Budget(200), reward)[0] for s in range(4)]
    first = fresh()
    for s in range(2):
        drive(first, s, Budget(200), reward)
    resumed = fresh()
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert [drive(resumed, s, Budget(200), reward)[0] for s in (2, 3)] == ref[2:]
    assert any(len(plan) > 1 for plan in ref[2:])  # the resumed steps did use extra rounds
