"""DARS: the closed-form ET/HW schedules by hand, the two-round plan through the pipeline, the filter, the
shared positive threshold, DARS-B's breadth."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, GroupObs
from rollwise.sampling.dars import DarsAllocator, DarsFilterGate, compute_dars_extra


@pytest.mark.parametrize("acc,schedule,n_max,use_std,want", [
    # spec example, N = 8, a = 0 -> a = 1/16: ET wants N/(4a(1-a)) = 34.1 total -> capped at 32 (dN = 24);
    # HW wants N/(2a) = 64 total (dN = 56); capped at 32 -> 24
    (0.0, "et", 32, False, 24),
    (0.0, "hw", 64, False, 56),
    (0.0, "hw", 32, False, 24),
    (0.0, "et", 64, False, 27),  # ceil(26.13)
    # a = 1/4: S = 2*0.25*0.75 = 0.375; ET ceil((4 - 3)/0.375) = ceil(2.67) = 3; HW (6 - 3)/0.375 = 8
    (0.25, "et", 32, False, 3),
    (0.25, "hw", 32, False, 8),
    # with std: S = 2*sqrt(0.1875) = 0.8660, A_peak = 8; ET ceil(1.2376) = 2, HW ceil(5.856) = 6
    (0.25, "et", 32, True, 2),
    (0.25, "hw", 32, True, 6),
    (0.5, "et", 32, False, 0),  # a >= 0.5: nothing extra
    (1.0, "hw", 64, False, 0),
])
def test_schedules_by_hand(acc, schedule, n_max, use_std, want):
    assert compute_dars_extra(np.array([acc]), 8, n_max, schedule, use_std).tolist() == [want]


def test_schedule_validation():
    with pytest.raises(ValueError):
        DarsAllocator(schedule="linear")


def test_two_rounds_through_the_pipeline(harness):
    rates = np.array([0.0, 1.0] * 4)  # hopeless and solved prompts, alternating
    pipe = harness.make_pipe("dars", pool=8, group_size=8, batch=8, dars={"n_max": 32})
    log = harness.play_step(pipe, harness.RewardSim(rates), step=0, budget=10_000)
    (p1, c1), (p2, c2) = log.requests
    assert sorted(p1) == list(range(8)) and c1 == [8] * 8
    assert sorted(p2) == [0, 2, 4, 6] and c2 == [24] * 4  # only a = 0 prompts, ET capped at n_max = 32
    assert all(log.pools[p].n == 32 for p in p2)
    assert log.groups == []  # every combined group is all-0 or all-1: filtered, no refill
    assert pipe.metrics()["sampler/allocator/extra_rollouts"] == 96


def test_second_round_respects_the_budget(harness):
    pipe = harness.make_pipe("dars", pool=8, group_size=8, batch=8)
    log = harness.play_step(pipe, harness.RewardSim(np.zeros(8)), step=0, budget=100)
    assert log.budget.spent_rollouts == 100 and len(log.requests) == 2


def test_filter_gate(harness):
    pools = [harness.obs(i, r) for i, r in enumerate([[0, 0], [1, 0], [1, 1], [1, 1, 1, 0]])]
    kept = [np.arange(p.n) for p in pools]
    ctx = harness.make_ctx(4)
    assert DarsFilterGate().keep(pools, kept, ctx).tolist() == [False, True, False, True]
    assert DarsFilterGate(upper_threshold=0.7).keep(pools, kept, ctx).tolist() == [False, True, False, False]
    assert DarsFilterGate().keep(pools[:1], [np.zeros(0, dtype=int)], ctx).tolist() == [False]
    assert not DarsFilterGate.refill


def test_accuracy_uses_the_samplers_positive_threshold(harness):
    # the allocator's own positive_threshold knob is gone: it reads ctx.stats.positive_threshold
    pools = [harness.obs(0, [0.6] * 8), harness.obs(1, [0.9, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])]
    ctx = harness.make_ctx(2)
    # at 0.5 both are all-positive (a = 1): nothing extra
    assert DarsAllocator().extend(1, pools, ctx).tolist() == [0, 0]
    ctx.stats.positive_threshold = 0.7
    # at 0.7: a = 0 -> 1/16 -> ET capped at 32 - 8 = 24; a = 1/8: S = 2(1/8)(7/8) = .21875, ceil((4 - 1.75)/S)
    # = ceil(10.29) = 11
    assert DarsAllocator().extend(1, pools, ctx).tolist() == [24, 11]
    with pytest.raises(ValueError):
        DarsAllocator(positive_threshold=0.7)  # per-component thresholds were removed


def test_threshold_set_once_on_the_pipeline():
    pipe = build_pipeline(preset="dars", pool_size=4, group_size=8, batch_prompts=4, total_steps=10, seed=0,
                          positive_threshold=0.7)
    assert pipe.stats.positive_threshold == 0.7
    req = pipe.begin_step(0, Budget(pipe.budget()[0]))
    pools = {int(p): GroupObs(int(p), np.full(8, 0.6), np.full(8, 10)) for p in req.prompts}
    nxt = pipe.next_request(pools)
    assert nxt is not None and nxt.counts.tolist() == [24] * 4  # 0.6 is a failure at 0.7: a = 0


def test_dars_b_rolls_out_four_times_the_prompts(harness):
    pipe = harness.make_pipe("dars_b", pool=200, group_size=8, batch=8)
    assert pipe.batch_prompts == 32 and pipe.budget() == (32 * 32, 32 * 8 + 1)
    log = harness.play_step(pipe, harness.RewardSim(np.full(200, 0.5)), step=0)
    assert len(log.requests[0][0]) == 32 and log.requests[0][1] == [8] * 32
