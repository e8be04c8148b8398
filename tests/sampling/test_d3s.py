"""D3S sample level: extremes split == brute-force max variance, the pipeline's whole-pool advantages (numpy
GRPO by default, or the injected estimator), schedule, selection, and small groups never trained."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, GroupObs, PromptStats, SampleContext
from rollwise.sampling.base import estimate_grpo
from rollwise.sampling.d3s import D3sDownsampler, max_variance_subset


def compute_group_advantages(rewards: np.ndarray) -> np.ndarray:
    """One group's advantages under the default estimator (``compute_group_advantages`` left d3s.py)."""
    r = np.asarray(rewards, dtype=np.float64)
    return estimate_grpo([GroupObs(0, r, np.full(r.size, 10))], [None])[0][0]


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
    custom = D3sDownsampler(n_init=0.3, n_final=0.9, k_init=0.1, k_final=0.5)  # knobs are keyword-only now
    assert custom.schedule(_ctx(step)) == pytest.approx(
        (0.3 + 0.6 * min(step, 10) / 10, 0.1 + 0.4 * min(step, 10) / 10))


def test_intra_group_selection():
    d = D3sDownsampler(cross_group=False)
    pools = [_pool(0, [1, 0, 0, 0, 0, 0, 0, 0]), _pool(1, [0, 1, 1, 0, 1]), _pool(2, [1.0])]
    kept = d.select(pools, _ctx(0))
    # half of 8 -> 4, with the lone positive; ceil(.5*5) = 3 from a 3+/2- group: 1 top + 2 bottom or
    # 2 top + 1 bottom tie -> fewest top values; a group of one keeps its rollout (the pipeline then drops it)
    assert kept[0].tolist() == [0, 1, 2, 3]
    assert kept[1].tolist() == [0, 1, 3]
    assert kept[2].tolist() == [0]
    assert [len(k) for k in d.select(pools, _ctx(10))] == [8, 5, 1]


def _pipe(**table):
    return build_pipeline(preset="d3s", pool_size=4, group_size=4, batch_prompts=2, total_steps=10, seed=0,
                          **table)


def test_cross_group_selection_drops_flat_groups_in_pipeline():
    pipe = _pipe()  # build_pipeline returns the pipeline only now (the estimator is injected, not returned)
    req = pipe.begin_step(0, Budget(100))
    rewards = {int(req.prompts[0]): [1.0, 0, 0, 0], int(req.prompts[1]): [1.0, 1, 1, 1]}
    pools = {p: _pool(p, r) for p, r in rewards.items()}  # the flat group has A = 0: never the extremes
    assert pipe.next_request(pools) is None
    plan = pipe.finalize(pools)
    mixed = int(req.prompts[0])
    assert [(g.prompt, g.keep.tolist()) for g in plan.groups] == [(mixed, [0, 1, 2, 3])]
    # whole-pool GRPO at the kept rows (here all of them): mean .25, unbiased std .5
    np.testing.assert_allclose(plan.groups[0].advantages, np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6))
    assert plan.token_fraction == pytest.approx(0.2)  # the token fraction travels in the TrainPlan now
    m = pipe.metrics()
    assert m["sampler/downsampler/kept_share"] == 0.5
    assert m["sampler/dropped_small"] == 1  # the flat group kept no rollout: counted, never trained


def test_cross_group_picks_across_groups():
    d = D3sDownsampler(n_init=0.5)
    pools = [_pool(0, [1, 0, 0, 0]), _pool(1, [0, 1, 1, 1])]  # A: [1.5,-.5,-.5,-.5], [-1.5,.5,.5,.5]
    kept = d.select(pools, _ctx(0))
    # {-1.5, -.5, .5, 1.5} (var 1.25) beats 1 top + 3 bottom (1.1875); among equal values the bottom takes
    # the lowest index, the top the highest
    assert [k.tolist() for k in kept] == [[0, 1], [0, 3]]


def test_selection_reads_the_pipelines_advantages():
    # D3S ranks the advantages the pipeline put in ctx.advantages (the configured estimator's), not its own GRPO
    d = D3sDownsampler(n_init=0.5, cross_group=False)
    pools = [_pool(0, [1, 0, 0, 0])]
    ctx = _ctx(0)
    assert d.select(pools, ctx)[0].tolist() == [0, 1]  # GRPO fallback: 1.5 and the first -0.5
    ctx.advantages = [np.array([0.0, 3.0, -2.0, 0.0])]
    assert d.select(pools, ctx)[0].tolist() == [1, 2]


def test_injected_estimator_drives_selection_and_advantages():
    def scaled(pools, baselines):  # r - mean, times 10: distinguishable from the default GRPO numbers
        return [(10 * (p.rewards - p.rewards.mean()), np.ones(p.n, dtype=bool)) for p in pools]

    pipe = build_pipeline(preset="d3s", pool_size=2, group_size=4, batch_prompts=2, total_steps=10, seed=0,
                          estimate=scaled)
    req = pipe.begin_step(0, Budget(100))
    pools = {int(p): _pool(int(p), r) for p, r in zip(req.prompts, [[1.0, 0, 0, 0], [0.0, 1, 1, 1]])}
    groups = pipe.finalize(pools).groups
    # A = [7.5,-2.5,-2.5,-2.5], [-7.5,2.5,2.5,2.5]: the same split as GRPO's, with these values kept as they are
    by = {g.prompt: g for g in groups}
    a, b = (int(p) for p in req.prompts)
    assert by[a].keep.tolist() == [0, 1] and by[a].advantages.tolist() == [7.5, -2.5]
    assert by[b].keep.tolist() == [0, 3] and by[b].advantages.tolist() == [-7.5, 2.5]


def test_kept_rows_keep_their_whole_pool_advantages_and_singletons_are_dropped():
    # three pools of 4, keep 6 of 12 flat rows; A (over each whole pool, /(std + 1e-6) omitted below):
    # p0 [1.5,-.5,-.5,-.5], p1 [.866,.866,-.866,-.866], p2 [-.5,-.5,-.5,1.5]. Extremes split of 6:
    # 3 top + 3 bottom {1.5, 1.5, .866 | -.866, -.866, -.5}: var 7/6 - (1.634/6)^2 = 1.0925, beating 2 + 4
    # (1.0813) and 4 + 2 (1.0). Ties: the top takes the higher indices (p1 row 1), the bottom the lower (p0 row 1)
    pipe = build_pipeline(preset="d3s", pool_size=3, group_size=4, batch_prompts=3, total_steps=10, seed=0)
    req = pipe.begin_step(0, Budget(100))
    script = {0: [1.0, 0, 0, 0], 1: [1.0, 1, 0, 0], 2: [0.0, 0, 0, 1]}
    pools = {int(p): _pool(int(p), script[int(p)]) for p in sorted(req.prompts.tolist())}
    plan = pipe.finalize(pools)
    by = {g.prompt: g for g in plan.groups}
    assert sorted(by) == [0, 1]  # p2 kept one rollout (its 1.5): a group of one is never trained
    assert by[0].keep.tolist() == [0, 1] and by[1].keep.tolist() == [1, 2, 3]
    full = {p: a for p, (a, _) in zip(pools, estimate_grpo(list(pools.values()), [None] * 3))}
    for p, g in by.items():
        np.testing.assert_array_equal(g.advantages, full[p][g.keep])  # not renormalised over the kept subset
    np.testing.assert_allclose(by[1].advantages, np.array([1, -1, -1]) * 0.5 / (np.sqrt(1 / 3) + 1e-6))
    assert pipe.metrics()["sampler/dropped_small"] == 1


def test_invalid_fractions():
    with pytest.raises(ValueError):
        D3sDownsampler(n_init=0.0)
    with pytest.raises(ValueError):
        D3sDownsampler(k_final=1.5)
    with pytest.raises(ValueError):  # knobs are validated: a misspelt name is an error
        D3sDownsampler(n_inti=0.5)
