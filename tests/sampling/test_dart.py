"""DART's curation components (arXiv:2509.23866): the dynamic rollout number by hand, the allocator's success
window, injection of a stored success into an all-failed group (trajectories of several turns), the store's
versions and used flags, and resume."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rollwise.sampling import Budget, GroupObs, PromptStats, SampleContext, TrainGroup
from rollwise.sampling.dart import DartAllocator, DartInjection, compute_dart_rollouts, trajectory_rewards


@pytest.mark.parametrize("s, threshold, n", [
    (1.0, 1.0, 2), (0.9, 1.0, 8),  # the code's threshold: only solved tasks are reduced
    (1.0, 0.6, 2), (0.9, 0.6, 3), (0.75, 0.6, 5), (0.6, 0.6, 8), (0.59, 0.6, 8),  # floor(9/s - 7)
    (0.0, 0.0001, 8), (None, 0.6, 8),
])
def test_rollout_count_by_hand(s, threshold, n):
    assert compute_dart_rollouts(s, 8, threshold) == n


def test_rollout_count_floor_and_cap():
    assert compute_dart_rollouts(1.0, 8, 0.5, min_n=3) == 3  # min_rollout_n
    assert compute_dart_rollouts(0.5, 4, 0.5) == 4  # floor(18 - 7) = 11, capped at G


def _ctx(step=0):
    return SampleContext(step, 10, 8, 2, PromptStats(8), np.random.default_rng(0), Budget(1000))


def _pool(p, rewards, traj=None, tag="r"):
    r = np.asarray(rewards, dtype=np.float64)
    return GroupObs(p, r, np.arange(len(r)) + 1, np.zeros(len(r)), payload=[f"{tag}{p}.{i}" for i in range(len(r))],
                    texts=[f"t{i}" for i in range(len(r))], traj=None if traj is None else np.asarray(traj))


def test_trajectory_rewards_take_each_first_row():
    ids, rs = trajectory_rewards(np.array([1.0, 1.0, 0.0, 0.5, 0.5]), np.array([2, 2, 0, 1, 1]))
    assert ids.tolist() == [2, 0, 1] and rs.tolist() == [1.0, 0.0, 0.5]


def test_allocator_reads_the_recent_trajectory_success():
    a = DartAllocator(threshold=0.6, window=4)
    # task 0: 3 trajectories (turns 2, 1, 2), all solved -> s = 1 -> 2 rollouts; task 1: 1 of 4 -> 8
    a.on_generated(_ctx(), [_pool(0, [1, 1, 1, 1, 1], [0, 0, 1, 2, 2]), _pool(1, [1, 0, 0, 0])])
    assert a.initial(np.array([0, 1, 5]), _ctx()).tolist() == [2, 8, 8]
    a.on_generated(_ctx(), [_pool(0, [0, 0])])  # window 4: [1, 1, 0, 0] -> s = 0.5 < 0.6
    assert a.initial(np.array([0]), _ctx()).tolist() == [8]
    b = DartAllocator(threshold=0.6, window=4)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    assert b.initial(np.array([0, 1]), _ctx()).tolist() == a.initial(np.array([0, 1]), _ctx()).tolist()


def test_injection_replaces_the_oldest_trajectory_of_an_all_failed_group():
    t = DartInjection(capacity=2)
    # step 0: task 3 solved once (its second trajectory, two turns); task 4 all failed, nothing stored yet
    t.on_generated(_ctx(0), [_pool(3, [0, 0, 1, 1], [0, 0, 1, 1], "a"), _pool(4, [0, 0])])
    assert t.metrics()["injected"] == 0 and t.metrics()["no_success"] == 1
    t.observe(_ctx(0), [], [TrainGroup(3, np.arange(4), np.zeros(4))])
    assert len(t.store) == 1 and t.store.newest_positive(3, 0.5).used
    # step 2: task 3 all failed (three trajectories of 1, 2, 1 turns) -> its oldest (id 0) becomes the stored one
    pool = _pool(3, [0, 0, 0, 0], [0, 1, 1, 2], "b")
    t.on_generated(_ctx(2), [pool])
    assert pool.rewards.tolist() == [1, 1, 0, 0, 0] and pool.payload == ["a3.2", "a3.3", "b3.1", "b3.2", "b3.3"]
    assert pool.traj.tolist() == [0, 0, 1, 1, 2] and pool.own_rewards.tolist() == [0, 0, 0, 0]
    assert pool.lengths.tolist() == [3, 4, 2, 3, 4]
    m = t.metrics()
    assert (m["all_failed"], m["injected"], m["injected_staleness"], m["store_versions"]) == (1, 1, 2, 1)
    t.observe(_ctx(2), [pool], [])
    u = DartInjection(capacity=2)
    u.load_state_dict(pickle.loads(pickle.dumps(t.state_dict())))
    assert len(u.store) == 1 and u.metrics()["injected_total"] == 1


def test_store_keeps_the_newest_per_task():
    t = DartInjection(capacity=2)
    for step in range(3):
        t.on_generated(_ctx(step), [_pool(0, [1, 0], tag=f"s{step}")])
        t.observe(_ctx(step), [], [])
    assert len(t.store) == 2 and t.store.newest_positive(0, 0.5).payload == ["s20.0"]
    assert t.store.versions() == [1, 2] and not t.store.newest_positive(0, 0.5).used
