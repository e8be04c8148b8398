"""Budgets follow the method: each composition's (need, minimum) rollouts per step by hand, the load-time
refusal of a budget below the minimum, the default (need) budget letting every multi-round / refilling method
act on simulated pools, and groups of fewer than 2 rollouts never trained."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.config import ConfigError, load_config
from rollwise.sampler_tables import build_pipeline, sampler_config
from rollwise.sampling import Budget, GroupObs
from rollwise.sampling.dars import compute_dars_extra
from rollwise.sampling.gates import DynamicSamplingGate
from rollwise.sampling.pipeline import MIN_GROUP, fit_to_budget
from rollwise.sampling.presets import step_budget

P, G = 32, 8


@pytest.mark.parametrize("preset,need,minimum", [
    ("uniform", 256, 8),  # P x G; one group
    ("reinforce_ada", 1024, 264),  # P x round_size 8 x 4 rounds; a first round for P + 1 prompts (one more round)
    ("dars", 1024, 257),  # P x n_max 32; stage 1 (P x G) + one extra rollout
    ("mc_grpo", 288, 9),  # P x (G + 1); one group of G + 1
    ("mc_grpo_control", 288, 9),
    ("dapo", 256 + 10 * 96 * 8, 264),  # P x G + 10 refills x 3P prompts x G; a first round + one refill prompt
    ("dars_b", 4096, 1025),  # breadth 4: 128 prompts x 32; 128 x 8 + 1
    ("brorl", 2048, 64),  # P x 64; one group of 64
    ("v05", 512, 130),  # P x max_rollouts 16; P x first 4 + one chunk of 2
])
def test_need_and_minimum_by_hand(preset, need, minimum):
    pipe = build_pipeline(preset=preset, pool_size=1000, group_size=G, batch_prompts=P, total_steps=10, seed=0)
    assert pipe.budget() == (need, minimum)
    assert step_budget(sampler_config(preset, group_size=G, batch_prompts=P)) == (need, minimum)


def test_budget_follows_the_knobs():
    pipe = build_pipeline(preset="reinforce_ada", params={"reinforce_ada": {"round_size": 4, "rounds": 2}},
                          pool_size=100, group_size=G, batch_prompts=P, total_steps=10, seed=0)
    assert pipe.budget() == (P * 4 * 2, (P + 1) * 4)
    pipe = build_pipeline(preset="dapo", params={"dynamic": {"max_refills": 2, "refill_scale": 1.0}},
                          pool_size=100, group_size=G, batch_prompts=P, total_steps=10, seed=0)
    assert pipe.budget() == (P * G + 2 * P * G, (P + 1) * G)


def test_a_budget_below_the_minimum_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["--sampler.type=reinforce_ada", "--sampler.rollout_budget=256"])
    msg = str(err.value)
    assert "sampler.rollout_budget" in msg and "'reinforce_ada'" in msg and "264" in msg and "1024" in msg
    cfg = load_config(None, ["--sampler.type=reinforce_ada", "--sampler.rollout_budget=264"])  # the minimum is ok
    assert cfg.rollout_budget() == 264
    assert load_config(None, ["--sampler.type=reinforce_ada"]).rollout_budget() == 1024  # unset: the need
    assert load_config(None, []).rollout_budget() == 256


def test_fit_to_budget_never_leaves_a_single_rollout():
    req = fit_to_budget(np.arange(P), np.full(P, G), 249, min_count=MIN_GROUP)  # 31 x 8 + 1
    assert len(req) == 31 and req.total == 248 and set(req.counts.tolist()) == {8}
    req = fit_to_budget(np.array([0, 1, 2]), np.array([8, 8, 8]), 17, min_count=MIN_GROUP)
    assert req.counts.tolist() == [8, 8]  # never [8, 8, 1]
    req = fit_to_budget(np.array([0, 1, 2]), np.array([8, 8, 8]), 249, min_count=MIN_GROUP)
    assert req.counts.tolist() == [8, 8, 8]  # a budget above the request trims nothing


def _pipe(preset: str, batch: int = 16, pool: int = 400, **params):
    return build_pipeline(preset=preset, params=params, pool_size=pool, group_size=G, batch_prompts=batch,
                          total_steps=100, seed=0)


def _rates(pool: int = 400, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).choice([0.0, 0.05, 0.2, 0.5, 0.8, 1.0], size=pool)


def test_reinforce_ada_acts_with_the_default_budget(harness):
    pipe = _pipe("reinforce_ada")
    log = harness.play_step(pipe, harness.RewardSim(_rates()), 0)
    assert log.budget.rollouts == 16 * 8 * 4
    sizes = [p.n for p in log.pools.values()]
    assert max(sizes) > 8 and len(set(sizes)) > 1  # extra rounds for unexited prompts: pools of unequal size
    assert all(n % 8 == 0 and n <= 32 for n in sizes)  # whole rounds, at most 4
    assert pipe.metrics()["sampler/rounds"] > 1 and len(log.requests) > 1
    assert all(len(g.keep) <= 8 for g in log.groups)  # balanced down to G
    # the old default (P x G) leaves no room for a second round: Reinforce-Ada degenerates to GRPO
    old = harness.play_step(_pipe("reinforce_ada"), harness.RewardSim(_rates()), 0, budget=16 * 8)
    assert len(old.requests) == 1 and {p.n for p in old.pools.values()} == {8}


def test_dars_runs_stage_two_with_the_default_budget(harness):
    pipe = _pipe("dars")
    log = harness.play_step(pipe, harness.RewardSim(_rates()), 0)
    assert log.budget.rollouts == 16 * 32 and len(log.requests) == 2
    (p1, c1), (p2, c2) = log.requests
    assert c1 == [8] * 16 and set(p2) <= set(p1) and len(p2) > 0
    first = {p: log.pools[p].rewards[:8] for p in p1}
    acc = np.array([float((first[p] > 0.5).mean()) for p in p2])
    assert c2 == compute_dars_extra(acc, 8, 32).tolist()  # the closed form, untrimmed by the budget
    assert {log.pools[p].n for p in p2} == {8 + c for c in c2} and max(log.pools[p].n for p in p2) > 8
    old = harness.play_step(_pipe("dars"), harness.RewardSim(_rates()), 0, budget=16 * 8)
    assert len(old.requests) == 1  # P x G is spent by stage 1


def test_dapo_refills_when_the_mixed_share_is_low(harness):
    rates = np.where(np.arange(400) % 5 == 0, 0.5, 1.0)  # 1 prompt in 5 can be mixed
    pipe = _pipe("dapo")
    log = harness.play_step(pipe, harness.RewardSim(rates), 0)
    assert log.budget.rollouts == 16 * 8 + 10 * 48 * 8
    assert len(log.requests) > 1 and pipe.metrics()["sampler/refills"] == len(log.requests) - 1
    assert len(log.groups) == 16 and all(log.pools[g.prompt].is_mixed(g.keep) for g in log.groups)
    assert log.budget.spent_rollouts <= log.budget.rollouts
    old = harness.play_step(_pipe("dapo"), harness.RewardSim(rates), 0, budget=16 * 8)
    assert len(old.requests) == 1 and len(old.groups) < 16  # no room to refill


def test_brorl_trains_every_prompt_with_64_rollouts(harness):
    pipe = _pipe("brorl")
    log = harness.play_step(pipe, harness.RewardSim(np.full(400, 0.5)), 0)
    assert log.budget.rollouts == 16 * 64
    assert log.requests == [(log.requests[0][0], [64] * 16)]
    assert len(log.groups) == 16 and all(len(g.keep) == 64 for g in log.groups)


def test_mc_grpo_trains_every_prompt_with_g_plus_one_generated(harness):
    pipe = _pipe("mc_grpo")
    log = harness.play_step(pipe, harness.RewardSim(np.full(400, 0.5)), 0)
    assert log.budget.rollouts == 16 * 9 and log.budget.spent_rollouts == 16 * 9
    assert log.requests[0][1] == [9] * 16
    assert len(log.groups) == 16 and all(log.pools[g.prompt].n == 9 for g in log.groups)
    old = harness.play_step(_pipe("mc_grpo"), harness.RewardSim(np.full(400, 0.5)), 0, budget=16 * 8)
    assert len(old.requests[0][0]) == 15 and old.requests[0][1][-1] == 2  # 14 x 9 + 2: a short last group


def test_a_downsampler_keeping_one_rollout_is_never_trained(harness):
    # mc_grpo_control at budget 128: 14 x 9 + 2 rollouts; the last prompt's 2 lose their smallest |r| -> 1
    pipe = _pipe("mc_grpo_control")
    log = harness.play_step(pipe, harness.RewardSim(np.full(400, 0.5)), 0, budget=128)
    prompts, counts = log.requests[0]
    assert counts == [9] * 14 + [2]
    assert sorted(g.prompt for g in log.groups) == sorted(prompts[:14])  # the short one is not trained
    assert all(len(g.keep) == 8 for g in log.groups)
    m = pipe.metrics()
    assert m["sampler/dropped_small"] == 1 and m["sampler/groups_trained"] == 14


def test_an_extension_budget_leaving_one_rollout_is_never_trained():
    # V0.5 with a first round of 1 rollout: budget 5 for 3 prompts leaves 2 of them at one rollout after the
    # (single, gain-ordered) extension of 2
    pipe = build_pipeline(preset="v05", params={"allocator": {"first": 1}}, pool_size=3, group_size=4,
                          batch_prompts=3, total_steps=10, seed=0)
    budget = Budget(5)
    req = pipe.begin_step(0, budget)
    assert req.counts.tolist() == [1, 1, 1]
    pools = {int(p): GroupObs(int(p), np.array([1.0]), np.full(1, 10)) for p in req.prompts}
    budget.charge(3, 30)
    ext = pipe.next_request(pools)
    assert ext is not None and ext.counts.tolist() == [2]
    p = int(ext.prompts[0])
    pools[p] = GroupObs(p, np.array([1.0, 0.0, 1.0]), np.full(3, 10))
    budget.charge(2, 20)
    assert pipe.next_request(pools) is None  # budget spent
    groups = pipe.finalize(pools).groups
    assert [(g.prompt, len(g.keep)) for g in groups] == [(p, 3)]
    assert pipe.metrics()["sampler/dropped_small"] == 2


def test_dapo_gate_drops_single_rollout_groups(harness):
    # DAPO's published rule keeps a group of one; rollwise never trains fewer than 2 (the gate's is_mixed is
    # False for one rollout, and the pipeline drops any group with < 2 kept rollouts anyway)
    pools = [harness.obs(0, [1.0]), harness.obs(1, [1.0, 0.0]), harness.obs(2, [0.0, 0.0])]
    kept = [np.arange(p.n) for p in pools]
    gate = DynamicSamplingGate()
    assert gate.keep(pools, kept, harness.make_ctx(3)).tolist() == [False, True, False]
    assert gate.metrics() == {"dropped": 2}
