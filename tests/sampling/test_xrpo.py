"""XRPO allocator: t quantiles, priority arithmetic, greedy allocation, budget neutrality, revisit, resume."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from harness import Reward, drive  # tests/sampling/harness.py

from rollwise.sampling import Budget
from rollwise.sampling.presets import build_pipeline
from rollwise.sampling.xrpo import allocate_by_priority, compute_xrpo_priority, t_quantile


def bernoulli(rate: np.ndarray) -> Reward:
    return lambda p, step, j: float(np.random.default_rng([p, step, j]).random() < rate[p])


def build(group_size: int = 4, pool: int = 20, batch: int = 5, **params):
    return build_pipeline(preset="xrpo", params=params, pool_size=pool, group_size=group_size,
                          batch_prompts=batch, total_steps=10, seed=0)


# two-sided 95% / 90% / 99% critical values from the standard t table
TABLE = [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 4, 2.7764),
         (0.975, 5, 2.5706), (0.975, 10, 2.2281), (0.975, 30, 2.0423), (0.975, 120, 1.9799),
         (0.95, 1, 6.3138), (0.95, 4, 2.1318), (0.9, 1, 3.0777), (0.995, 9, 3.2498), (0.995, 2, 9.9248)]


@pytest.mark.parametrize("q,df,t", TABLE)
def test_t_quantile_matches_table(q, df, t):
    assert t_quantile(q, df) == pytest.approx(t, abs=1e-4)


def test_t_quantile_matches_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    for q in (0.9, 0.95, 0.975, 0.995):
        for df in (*range(1, 41), 64, 257):
            assert t_quantile(q, df) == pytest.approx(float(stats.t.ppf(q, df)), rel=1e-9)


def test_priority_by_hand():
    # rewards [1,0,1,0]: s = sqrt(1/3); h(n) = t_{.975,n-1} s / sqrt(n); T = 8 rollouts so far, lam = 1
    s = math.sqrt(1 / 3)
    delta = 3.182446 * s / 2 - 2.776445 * s / math.sqrt(5)
    phi = math.sqrt(math.log(9) / 4)
    pri = compute_xrpo_priority(np.array([s, 0.0]), np.array([4, 4]), total=8, lam=1.0, alpha=0.05)
    assert pri[0] == pytest.approx(delta + phi, abs=1e-5)  # 0.20182 + 0.74116
    assert pri[1] == pytest.approx(phi)  # s = 0: only the exploration bonus
    assert compute_xrpo_priority(np.array([s]), np.array([4]), 8, lam=0.0, alpha=0.05)[0] == pytest.approx(
        delta, abs=1e-5)


def test_greedy_allocation_by_hand():
    # a mixed pair (h(2)-h(3) = 4.6) beats an all-equal one; the bonus prefers the rarely sampled prompt
    mixed = np.array([0.0, math.sqrt(0.5)])
    assert allocate_by_priority(mixed, np.array([2, 2]), 1, 1.0, 0.05).tolist() == [0, 1]
    assert allocate_by_priority(np.zeros(2), np.array([2, 4]), 1, 1.0, 0.05).tolist() == [1, 0]
    # all-equal prompts share evenly (bonus only; ties go to the earlier prompt)
    assert allocate_by_priority(np.zeros(3), np.array([2, 2, 2]), 4, 1.0, 0.05).tolist() == [2, 1, 1]
    capped = allocate_by_priority(np.zeros(2), np.array([2, 2]), 5, 1.0, 0.05, cap=np.array([1, 9]))
    assert capped.tolist() == [1, 4]


@pytest.mark.parametrize("group_size,n0", [(4, 2), (8, 4), (2, 2)])
def test_budget_neutral(group_size, n0):
    pipe, adv = build(group_size=group_size)
    assert adv == "xrpo"
    b = Budget(10_000)
    plans, pools, groups = drive(pipe, 0, b, bernoulli(np.linspace(0.0, 1.0, 20)))
    assert set(plans[0].values()) == {n0}
    assert len(plans) <= 3
    assert b.spent_rollouts == sum(p.n for p in pools.values()) == 5 * group_size
    assert len(groups) == 5 and all(len(g.keep) == pools[g.prompt].n for g in groups)


def test_phase_three_revisits_prompts_skipped_in_phase_two():
    # prompt 0 alternates 1,0 (large CI shrinkage); 1 and 2 always fail (bonus only). Hand-derived:
    # phase 2 (3 rollouts, T=6): 0, 0, then the earlier of {1, 2}; phase 3 (3, T=9): the other, 0, the first.
    pipe, _ = build(pool=3, batch=3)
    plans, pools, _ = drive(pipe, 0, Budget(100), lambda p, s, j: float(p == 0 and j % 2 == 0))
    first, second = [p for p in plans[0] if p != 0]
    assert plans[1] == {0: 2, first: 1}
    assert plans[2] == {0: 1, first: 1, second: 1}
    assert sum(p.n for p in pools.values()) == 12


def test_respects_step_budget():
    pipe, _ = build()
    b = Budget(15)  # P*G = 20 planned; phase 1 takes 10, phase 2 may use the 5 left
    plans, _, _ = drive(pipe, 0, b, bernoulli(np.full(20, 0.5)))
    assert b.spent_rollouts == 15 and len(plans) == 2


def test_resume_makes_same_plans():
    reward = bernoulli(np.linspace(0.0, 1.0, 20))
    full = build()[0]
    ref = [drive(full, s, Budget(100), reward)[0] for s in range(4)]
    first = build()[0]
    for s in range(2):
        drive(first, s, Budget(100), reward)
    resumed = build()[0]
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert [drive(resumed, s, Budget(100), reward)[0] for s in (2, 3)] == ref[2:]
