"""V0.5-style fusion: hand-computed baselines, predicted MSE, OSLA decisions, budget, metrics, resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from harness import drive  # tests/sampling/harness.py

from rollwise.sampler_tables import build_pipeline, sampler_config
from rollwise.sampling import Budget, GroupObs, PromptStats, SampleContext
from rollwise.sampling.presets import required_advantage
from rollwise.sampling.v05 import V05Allocator, V05Baseline, compute_v05_fusion, v05_predicted_mse


def alternating(p: int, step: int, j: int) -> float:
    return float(j % 2 == 0)


def build(pool: int = 3, batch: int = 3, positive_threshold: float = 0.5, **params):
    return build_pipeline(preset="v05", params=params, pool_size=pool, group_size=4, batch_prompts=batch,
                          total_steps=10, seed=0, positive_threshold=positive_threshold)


def test_fusion_by_hand():
    # v=0.5, 1 of 4: r=0.25, SE2 = .25*.75/4 = .046875, gap2 = .0625 -> lam = .25, b = .5 + .25*(-.25)
    b, lam = compute_v05_fusion(1, 4, 0.5)
    assert lam == pytest.approx(0.25) and b == pytest.approx(0.4375)
    # prior rejected: v=0.9, 0 of 4: r~ = .5/5 = .1, SE2 = .1*.9/4 = .0225, gap2 = .81 -> lam = 1 - .0225/.81
    b, lam = compute_v05_fusion(0, 4, 0.9)
    assert lam == pytest.approx(1 - 0.0225 / 0.81) and b == pytest.approx(0.9 * 0.0225 / 0.81)  # = 0.025
    assert b == pytest.approx(0.025)
    assert compute_v05_fusion(2, 4, 0.5) == (0.5, 0.0)  # r == v: trust the prior
    assert compute_v05_fusion(1, 4, None) == (0.25, 1.0)  # no prior: empirical mean
    assert compute_v05_fusion(2, 4, 0.45) == pytest.approx((0.45, 0.0))  # small gap: lam clipped at 0
    assert compute_v05_fusion(1, 4, 0.5, c=0.5)[1] == pytest.approx(0.625)


def test_predicted_mse_by_hand():
    # v=0.9, 0 of 4: sigma2 = .09, d2 = .81 - .0225 = .7875; MSE(m) = d2*SE2/(d2+SE2) for c = 1
    assert v05_predicted_mse(0, 4, 0.9, 4) == pytest.approx(0.7875 * 0.0225 / 0.81)  # 0.021875
    assert v05_predicted_mse(0, 4, 0.9, 6) == pytest.approx(0.7875 * 0.015 / 0.8025)  # 0.0147196
    assert v05_predicted_mse(2, 4, None, 4) == pytest.approx(0.0625)  # SE2 = .25/4
    assert v05_predicted_mse(2, 4, None, 6) == pytest.approx(0.25 / 6)
    assert v05_predicted_mse(2, 4, 0.5, 6) == 0.0  # consistent prior: nothing left to learn


def _ctx(prior: list[float], budget: int = 100) -> SampleContext:
    stats = PromptStats(len(prior))
    stats.ema_pass[:] = prior
    return SampleContext(0, 10, 4, len(prior), stats, np.random.default_rng(0), Budget(budget))


def _pool(p: int, r: list[float]) -> GroupObs:
    return GroupObs(p, np.array(r, dtype=np.float64), np.full(len(r), 10))


def test_osla_decisions():
    with pytest.raises(ValueError):
        V05Allocator(chunk=0)  # knobs are validated by the Config model
    ctx = _ctx([0.5, 0.9, np.nan])
    pools = [_pool(0, [1, 1, 0, 0]), _pool(1, [0, 0, 0, 0]), _pool(2, [1, 1, 0, 0])]
    # 0: r == v, gain 0 -> stop; 1: gain (.021875-.014720)/2 = .0036 > .002; 2: (.0625-.04167)/2 = .0104
    assert V05Allocator().extend(1, pools, ctx).tolist() == [0, 2, 2]
    assert V05Allocator(cost=0.005).extend(1, pools, ctx).tolist() == [0, 0, 2]
    assert V05Allocator(max_rollouts=4).extend(1, pools, ctx).tolist() == [0, 0, 0]
    assert V05Allocator(max_rollouts=5).extend(1, pools, ctx).tolist() == [0, 1, 1]
    # budget 2: only the largest gain per rollout is served
    assert V05Allocator().extend(1, pools, _ctx([0.5, 0.9, np.nan], budget=2)).tolist() == [0, 0, 2]


def test_osla_stops_at_twelve_without_prior():
    # p = 0.5, no prior: per-rollout gain .25/(m(m+2)) > .002 until m = 12 (.25/168 = .0015)
    pipe = build(pool=1, batch=1)
    assert required_advantage(sampler_config("v05"), None) == "pool_baseline"
    plans, pools, groups = drive(pipe, 0, Budget(100), alternating)
    assert [list(p.values()) for p in plans] == [[4], [2], [2], [2], [2]]
    # no prior: b = the empirical mean 6/12; A = r - b over the whole pool of 12 (every rollout kept)
    assert pools[0].n == 12 and groups[0].keep.tolist() == list(range(12))
    assert groups[0].advantages.tolist() == [0.5, -0.5] * 6


def test_budget_served_by_gain():
    pipe = build()
    b = Budget(20)  # round 1: 12; round 2: 3 x 2; round 3: 2 left -> the first prompt only
    plans, _, _ = drive(pipe, 0, b, alternating)
    assert b.spent_rollouts == 20
    assert [sum(p.values()) for p in plans] == [12, 6, 2]
    assert list(plans[2]) == list(plans[0])[:1]


def test_default_budget_is_max_rollouts_per_prompt():
    pipe = build()
    assert pipe.budget() == (3 * 16, 3 * 4 + 2)  # need P x max_rollouts; minimum one round + one chunk
    b = Budget(pipe.budget()[0])
    plans, pools, _ = drive(pipe, 0, b, alternating)
    assert b.spent_rollouts == 36 and all(p.n == 12 for p in pools.values())  # OSLA stops each at 12


def test_prior_from_stats_and_metrics():
    pipe = build(pool=2, batch=2)
    drive(pipe, 0, Budget(100), lambda p, s, j: float(p == 0))  # prompt 0 always passes, 1 always fails
    assert pipe.stats.ema_pass.tolist() == [1.0, 0.0]
    flipped = lambda p, s, j: float(p == 1 and j < 2)  # noqa: E731  0 now fails; 1 passes 2 of 4
    plans, pools, groups = drive(pipe, 1, Budget(100), flipped)
    by = {g.prompt: g for g in groups}
    for p in (0, 1):
        k = float((pools[p].rewards > 0.5).sum())
        expect, lam = compute_v05_fusion(k, pools[p].n, float([1.0, 0.0][p]))
        assert lam > 0.5
        np.testing.assert_allclose(by[p].advantages, pools[p].rewards[by[p].keep] - expect)
    m = pipe.metrics()
    assert m["sampler/baseline/prior_rejection_rate"] == 1.0
    assert m["sampler/baseline/no_prior"] == 0
    assert 0.5 < m["sampler/baseline/lambda_mean"] <= 1.0


def test_baseline_binarises_at_the_samplers_threshold(harness):
    ctx = harness.make_ctx(1)
    pools = [_pool(0, [0.9, 0.6, 0.6, 0.1])]
    assert V05Baseline().compute(pools, ctx) == [pytest.approx(0.75)]  # no prior: 3 of 4 above 0.5
    ctx.stats.positive_threshold = 0.7
    assert V05Baseline().compute(pools, ctx) == [pytest.approx(0.25)]  # 1 of 4 above 0.7
    pipe = build(pool=1, batch=1, positive_threshold=0.7, allocator={"max_rollouts": 4})
    _, pools, (g,) = drive(pipe, 0, Budget(100), lambda p, s, j: [0.9, 0.6, 0.6, 0.1][j])
    np.testing.assert_allclose(g.advantages, np.array([0.9, 0.6, 0.6, 0.1]) - 0.25)  # raw r - binarised b


def test_single_rollout_groups_are_never_trained():
    # first = 1 and a budget that leaves two prompts at one rollout: their groups of one are dropped
    pipe = build(allocator={"first": 1})  # "v05" would name the baseline too: use the slot
    assert pipe.budget()[1] == 3 * 1 + 2
    b = Budget(5)
    plans, pools, groups = drive(pipe, 0, b, alternating)
    assert [sum(p.values()) for p in plans] == [3, 2]
    assert sorted(p.n for p in pools.values()) == [1, 1, 3]
    assert [len(g.keep) for g in groups] == [3]
    assert pipe.metrics()["sampler/dropped_small"] == 2


def test_resume_makes_same_plans():
    rate = np.linspace(0.05, 0.95, 10)

    def reward(p: int, step: int, j: int) -> float:
        return float(np.random.default_rng([p, step, j]).random() < rate[p])

    full = build(pool=10, batch=4)
    ref = [drive(full, s, Budget(200), reward)[0] for s in range(5)]
    first = build(pool=10, batch=4)
    for s in range(3):
        drive(first, s, Budget(200), reward)
    resumed = build(pool=10, batch=4)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert [drive(resumed, s, Budget(200), reward)[0] for s in (3, 4)] == ref[3:]
    assert any(len(plan) > 1 for plan in ref[3:])  # the resumed steps did use extra rounds
