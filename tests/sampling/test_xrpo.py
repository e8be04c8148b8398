"""XRPO allocator: t quantiles, priority arithmetic, top-k allocation == the one-at-a-time greedy, budget
neutrality, revisit, resume."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest

from rollwise.sampler_tables import sampler_config
from rollwise.sampling.presets import required_advantage
from rollwise.sampling.xrpo import allocate_by_priority, compute_xrpo_priority, pool_std, t_quantile

Reward = Callable[[int, int, int], float]  # (prompt, step, index in pool) -> reward


class ScriptedSim:
    """Rewards by (prompt, step, index in the prompt's pool), for hand-derived plans (``harness.play_step``)."""

    def __init__(self, reward: Reward) -> None:
        self.reward, self._have = reward, {}

    def generate(self, prompts: np.ndarray, counts: np.ndarray, step: int, call: int) -> list[np.ndarray]:
        out = []
        for p, c in zip(prompts.tolist(), counts.tolist()):
            j0 = self._have.get((step, p), 0)
            self._have[(step, p)] = j0 + c
            out.append(np.array([self.reward(p, step, j0 + j) for j in range(c)], dtype=np.float64))
        return out


def plans(log) -> list[dict[int, int]]:
    return [dict(zip(p, c)) for p, c in log.requests]


def greedy_reference(std: np.ndarray, n: np.ndarray, budget: int, lam: float, alpha: float,
                     cap: np.ndarray | None = None) -> np.ndarray:
    """The definition: one rollout at a time to the first argmax of Pi_q(n_q + extra_q), re-scored after
    each, T = the phase-start count (fixed within the phase)."""
    n = np.asarray(n, dtype=np.int64)
    extra = np.zeros(len(n), dtype=np.int64)
    cap = np.full(len(n), np.iinfo(np.int64).max) if cap is None else np.asarray(cap, dtype=np.int64)
    total = int(n.sum())
    for _ in range(int(budget)):
        pri = compute_xrpo_priority(std, n + extra, total, lam, alpha)
        pri[extra >= cap] = -np.inf
        if not np.isfinite(pri).any():
            break
        extra[int(np.argmax(pri))] += 1
    return extra


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


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_priority_non_increasing_from_two_rollouts(alpha):
    # Pi_q(n) = s_q d(n) + phi(n) with d(n) = t_{n-1}/sqrt(n) - t_n/sqrt(n+1) >= 0; phi falls, so Pi falls for
    # every s_q >= 0 iff d does: the premise of the top-k allocation
    n = np.arange(2, 200)
    d = compute_xrpo_priority(np.ones(len(n)), n, total=0, lam=0.0, alpha=alpha)  # lam = 0: Pi = d
    assert (d > 0).all() and (np.diff(d) < 0).all()
    pri = compute_xrpo_priority(np.full(len(n), 0.5), n, total=1000, lam=1.0, alpha=alpha)
    assert (np.diff(pri) < 0).all()


def test_greedy_allocation_by_hand():
    # a mixed pair (h(2)-h(3) = 4.6) beats an all-equal one; the bonus prefers the rarely sampled prompt
    mixed = np.array([0.0, math.sqrt(0.5)])
    assert allocate_by_priority(mixed, np.array([2, 2]), 1, 1.0, 0.05).tolist() == [0, 1]
    assert allocate_by_priority(np.zeros(2), np.array([2, 4]), 1, 1.0, 0.05).tolist() == [1, 0]
    # all-equal prompts share evenly (bonus only; ties go to the earlier prompt)
    assert allocate_by_priority(np.zeros(3), np.array([2, 2, 2]), 4, 1.0, 0.05).tolist() == [2, 1, 1]
    capped = allocate_by_priority(np.zeros(2), np.array([2, 2]), 5, 1.0, 0.05, cap=np.array([1, 9]))
    assert capped.tolist() == [1, 4]
    # no bonus: the one mixed prompt takes the whole phase (past the first matrix width: widened)
    lone = allocate_by_priority(np.array([0.0, 0.5, 0.0]), np.array([4, 4, 4]), 40, 0.0, 0.05)
    assert lone.tolist() == [0, 40, 0]
    assert allocate_by_priority(np.zeros(3), np.array([2, 2, 2]), 0, 1.0, 0.05).tolist() == [0, 0, 0]


def random_case(rng: np.random.Generator) -> tuple:
    p = int(rng.integers(1, 40))
    low = 0 if rng.random() < 0.15 else 2  # below two rollouts: not monotone, the greedy path
    n = rng.choice(np.arange(low, 10), size=p)
    # few distinct values so that exact ties are common
    std = rng.choice(np.array([0.0, 0.0, math.sqrt(1 / 3), 0.5, math.sqrt(0.5), 0.25]), size=p)
    if rng.random() < 0.3:
        std = rng.random(p)
    budget = int(rng.integers(0, 8 * p + 2))
    lam = float(rng.choice([0.0, 0.05, 0.3, 1.0, 3.0]))
    alpha = float(rng.choice([0.01, 0.05, 0.1]))
    cap = rng.integers(0, 12, size=p) if rng.random() < 0.4 else None
    return std, n, budget, lam, alpha, cap


def test_top_k_allocation_equals_greedy_on_random_cases():
    rng = np.random.default_rng(12345)
    for _ in range(400):
        std, n, budget, lam, alpha, cap = random_case(rng)
        fast = allocate_by_priority(std, n, budget, lam, alpha, cap)
        ref = greedy_reference(std, n, budget, lam, alpha, cap)
        assert fast.tolist() == ref.tolist(), (std, n, budget, lam, alpha, cap)


def test_top_k_allocation_equals_greedy_at_training_sizes():
    rng = np.random.default_rng(7)
    for p, g in [(64, 8), (256, 8), (128, 16)]:
        n0 = g // 2
        wins = rng.binomial(n0, rng.beta(0.6, 0.6, p))  # binary rewards: std of n0 draws with `wins` ones
        std = np.sqrt(wins * (n0 - wins) / (n0 * (n0 - 1)))
        budget = p * (g - n0) // 2
        for lam in (0.0, 0.1, 1.0):
            fast = allocate_by_priority(std, np.full(p, n0), budget, lam, 0.05)
            assert fast.sum() == budget
            assert fast.tolist() == greedy_reference(std, np.full(p, n0), budget, lam, 0.05).tolist()


def test_pool_std_matches_numpy(harness):
    pools = [harness.obs(0, [1, 0, 1, 0]), harness.obs(1, [0.3]), harness.obs(2, [0.5, 0.5, 0.5]),
             harness.obs(3, [0.1, 0.7, 0.2])]
    expect = [np.std([1, 0, 1, 0], ddof=1), 0.0, 0.0, np.std([0.1, 0.7, 0.2], ddof=1)]
    assert pool_std(pools) == pytest.approx(expect, abs=1e-12)


def test_xrpo_preset_needs_its_estimator():
    assert required_advantage(sampler_config(preset="xrpo"), None) == "xrpo"


@pytest.mark.parametrize("group_size,n0", [(4, 2), (8, 4), (2, 2)])
def test_budget_neutral(harness, group_size, n0):
    pipe = harness.make_pipe("xrpo", pool=20, group_size=group_size, batch=5)
    log = harness.play_step(pipe, harness.RewardSim(np.linspace(0.0, 1.0, 20)), step=0, budget=10_000)
    assert set(plans(log)[0].values()) == {n0}
    assert len(log.requests) <= 3
    assert log.budget.spent_rollouts == sum(p.n for p in log.pools.values()) == 5 * group_size
    assert len(log.groups) == 5 and all(len(g.keep) == log.pools[g.prompt].n for g in log.groups)


def test_phase_three_revisits_prompts_skipped_in_phase_two(harness):
    # prompt 0 alternates 1,0 (large CI shrinkage); 1 and 2 always fail (bonus only). Hand-derived with T
    # fixed per phase: phase 2 (3 rollouts, T=6): 0, 0, then the earlier of {1, 2}; phase 3 (3, T=9): the
    # other (n=2), then 0 (0.960 > 0.876), then the first (ties with the other at n=3: the earlier prompt).
    pipe = harness.make_pipe("xrpo", pool=3, group_size=4, batch=3)
    log = harness.play_step(pipe, ScriptedSim(lambda p, s, j: float(p == 0 and j % 2 == 0)), step=0, budget=100)
    steps = plans(log)
    first, second = [p for p in steps[0] if p != 0]
    assert steps[1] == {0: 2, first: 1}
    assert steps[2] == {0: 1, first: 1, second: 1}
    assert sum(p.n for p in log.pools.values()) == 12


def test_respects_step_budget(harness):
    pipe = harness.make_pipe("xrpo", pool=20, group_size=4, batch=5)
    # P*G = 20 planned; phase 1 takes 10, phase 2 may use the 5 left
    log = harness.play_step(pipe, harness.RewardSim(np.full(20, 0.5)), step=0, budget=15)
    assert log.budget.spent_rollouts == 15 and len(log.requests) == 2


def test_resume_makes_same_plans(harness):
    sim = harness.RewardSim(np.linspace(0.0, 1.0, 20), seed=3)

    def build():
        return harness.make_pipe("xrpo", pool=20, group_size=4, batch=5)

    full = build()
    ref = [harness.play_step(full, sim, s, budget=100).requests for s in range(4)]
    first = build()
    for s in range(2):
        harness.play_step(first, sim, s, budget=100)
    resumed = build()
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert [harness.play_step(resumed, sim, s, budget=100).requests for s in (2, 3)] == ref[2:]
