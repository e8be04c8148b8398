"""D3S sample level: extremes split == brute-force max variance, GRPO advantages, schedule, selection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rollwise.sampling import Budget, GroupObs, PromptStats, SampleContext
from rollwise.sampling.d3s import D3sDownsampler, compute_group_advantages, max_variance_subset
from rollwise.sampling.presets import build_pipeline


def _ctx(step: int = 0, total: int = 10) -> SampleContext:
    return SampleContext(step, total, 4, 2, PromptStats(4), np.random.default_rng(0), Budget(100))


def _pool(p: int, r: list[float]) -> GroupObs:
    return GroupObs(p, np.array(r, dtype=np.float64), np.full(len(r), 10))


def test_extremes_split_equals_brute_force():
    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(2, 9))
        if case % 3 == 0:  # binary rewards -> tied advantages, as in practice
            values = compute_group_advantages(rng.integers(0, 2, n).astype(np.float64))
        elif case % 3 == 1:
            values = rng.integers(-3, 4, n).astype(np.float64)
        else:
            values = rng.normal(size=n)
        for size in range(1, n + 1):
            chosen = max_variance_subset(values, size)
            assert len(chosen) == size == len(set(chosen.tolist()))
            best = max(np.var(values[list(c)]) for c in itertools.combinations(range(n), size))
            assert np.var(values[chosen]) == pytest.approx(best, abs=1e-12)


def test_extremes_split_tie_breaks():
    a = compute_group_advantages(np.array([1, 0, 0, 0, 0, 0, 0, 0.0]))
    # {0,1,2,3} and {0,1,2,7} tie; fewest top values, then the lowest indices
    assert max_variance_subset(a, 4).tolist() == [0, 1, 2, 3]
    assert max_variance_subset(np.array([5.0, 1.0, 3.0, 9.0]), 2).tolist() == [1, 3]
    assert max_variance_subset(np.arange(3.0), 0).size == 0


def test_group_advantages_by_hand():
    # mean .25, unbiased std sqrt(.75/3) = .5
    assert compute_group_advantages(np.array([1, 0, 0, 0.0])) == pytest.approx(
        np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6))
    assert compute_group_advantages(np.array([1.0])).tolist() == [0.0]
    assert compute_group_advantages(np.ones(3)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("step,expect", [(0, (0.5, 0.2)), (5, (0.75, 0.6)), (10, (1.0, 1.0)),
                                         (12, (1.0, 1.0))])
def test_schedule_endpoints(step, expect):
    d = D3sDownsampler()
    assert d.schedule(_ctx(step)) == pytest.approx(expect)
    assert d.token_fraction(_ctx(step)) == pytest.approx(expect[1])
    assert D3sDownsampler(0.3, 0.9, 0.1, 0.5).schedule(_ctx(step)) == pytest.approx(
        (0.3 + 0.6 * min(step, 10) / 10, 0.1 + 0.4 * min(step, 10) / 10))


def test_intra_group_selection():
    d = D3sDownsampler(cross_group=False)
    pools = [_pool(0, [1, 0, 0, 0, 0, 0, 0, 0]), _pool(1, [0, 1, 1, 0, 1]), _pool(2, [1.0])]
    kept = d.select(pools, _ctx(0))
    # half of 8 -> 4, with the lone positive; ceil(.5*5) = 3 from a 3+/2- group: 1 top + 2 bottom or
    # 2 top + 1 bottom tie -> fewest top values; a group of one keeps its rollout
    assert kept[0].tolist() == [0, 1, 2, 3]
    assert kept[1].tolist() == [0, 1, 3]
    assert kept[2].tolist() == [0]
    assert [len(k) for k in d.select(pools, _ctx(10))] == [8, 5, 1]


def test_cross_group_selection_drops_flat_groups_in_pipeline():
    pipe, adv = build_pipeline(preset="d3s", pool_size=2, group_size=4, batch_prompts=2, total_steps=10,
                               seed=0)
    assert adv is None
    req = pipe.begin_step(0, Budget(100))
    rewards = {0: [1.0, 0, 0, 0], 1: [1.0, 1, 1, 1]}  # the flat group has A = 0: never the extremes
    pools = {int(p): _pool(int(p), rewards[int(p)]) for p in req.prompts}
    assert pipe.next_request(pools) is None
    groups = pipe.finalize(pools)
    assert [(g.prompt, g.keep.tolist()) for g in groups] == [(0, [0, 1, 2, 3])]
    assert pipe.token_fraction() == pytest.approx(0.2)
    assert pipe.metrics()["sampler/downsampler/kept_share"] == 0.5


def test_cross_group_picks_across_groups():
    d = D3sDownsampler(n_init=0.5)
    pools = [_pool(0, [1, 0, 0, 0]), _pool(1, [0, 1, 1, 1])]  # A: [1.5,-.5,-.5,-.5], [-1.5,.5,.5,.5]
    kept = d.select(pools, _ctx(0))
    # {-1.5, -.5, .5, 1.5} (var 1.25) beats 1 top + 3 bottom (1.1875); among equal values the bottom takes
    # the lowest index, the top the highest
    assert [k.tolist() for k in kept] == [[0, 1], [0, 3]]


def test_invalid_fractions():
    with pytest.raises(ValueError):
        D3sDownsampler(n_init=0.0)
    with pytest.raises(ValueError):
        D3sDownsampler(k_final=1.5)
