"""Rollout replay: a buffered group is replayed with the advantages it had when it was generated (its own
pool's baseline, never re-centred over the replayed rows), a step may train replayed groups only, D3S's kept
rows keep their whole-pool advantages fresh and replayed, and the buffer survives a checkpoint."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, GroupObs, TrainGroup
from rollwise.sampling.base import estimate_grpo
from rollwise.sampling.replay import Replay


def run_step(pipe, step: int, script, budget: int = 10**6):
    """One trainer step. ``script(position, prompt, step, call)`` gives the rewards of a request's entry; the
    pools carry payload rollouts that remember where they came from. Returns (requests, pools, plan)."""
    bud = Budget(budget)
    req = pipe.begin_step(step, bud)
    pools: dict[int, GroupObs] = {}
    requests = []
    call = 0
    while req is not None and len(req):
        requests.append(dict(zip(req.prompts.tolist(), req.counts.tolist())))
        for pos, (p, c) in enumerate(requests[-1].items()):
            new = np.asarray(script(pos, p, step, call), dtype=np.float64)
            assert new.size == c
            have = pools[p].rewards if p in pools else np.zeros(0)
            payload = pools[p].payload if p in pools else []
            r = np.concatenate([have, new])
            payload = payload + [SimpleNamespace(prompt=p, step=step, index=len(have) + j, reward=float(x))
                                 for j, x in enumerate(new)]
            pools[p] = GroupObs(p, r, np.full(r.size, 10, dtype=np.int64), payload=payload)
        bud.charge(req.total, 10 * req.total)
        call += 1
        req = pipe.next_request(pools)
    plan = pipe.finalize(pools)
    pipe.observe(pools, plan.groups)
    return requests, pools, plan


# ---------------------------------------------------------------------------------------------- Reinforce-Ada
A_ROUNDS = [[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]  # 0, 1, then 2 positives: exits after round 3


def _ada_script(first_prompt: list[int]):
    def script(pos: int, p: int, step: int, call: int) -> list[float]:
        if step == 0:
            if pos == 0 and call == 0:
                first_prompt.append(p)
            if p == first_prompt[0]:
                return A_ROUNDS[call]
            return [1.0] * 4  # all positive, never balanced: 12 ones, pool mean 1, A = 0 (not buffered)
        return [1.0, 1.0, 0.0, 0.0]  # later steps: balanced after one round
    return script


def _ada_pipe(**replay):
    return build_pipeline(preset="reinforce_ada", params={"reinforce_ada": {"round_size": 4, "rounds": 3}},
                          replay={"fresh_fraction": 0.5, **replay}, pool_size=2, group_size=4, batch_prompts=2,
                          total_steps=10, seed=0)


def test_replayed_group_keeps_the_advantages_it_was_trained_with():
    pipe = _ada_pipe()
    first: list[int] = []
    script = _ada_script(first)
    reqs, pools, plan = run_step(pipe, 0, script)
    a = first[0]
    assert [list(r.values()) for r in reqs] == [[4, 4], [4, 4], [4, 4]]  # neither exits before round 3
    assert pools[a].rewards.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0]
    by = {g.prompt: g for g in plan.groups}
    fresh = by[a]
    # balanced keep: positives 7, 9 and the first negatives 0, 1 -> rewards [0, 0, 1, 1]; the baseline is the
    # WHOLE pool's mean 2/12, so A = r - 1/6 (a group-only centre would give -+0.5)
    assert fresh.keep.tolist() == [0, 1, 7, 9] and not fresh.replayed and fresh.step == 0
    np.testing.assert_allclose(fresh.advantages, [-1 / 6, -1 / 6, 5 / 6, 5 / 6])
    assert [r.index for r in fresh.rollouts] == [0, 1, 7, 9]
    other = next(p for p in pools if p != a)
    assert by[other].advantages.tolist() == [0.0] * 4  # trained (authors keep unfinished groups), not buffered
    assert list(pipe.replay._buf) == [a]

    reqs, pools, plan = run_step(pipe, 1, script)
    assert len(reqs[0]) == 1  # half the batch is fresh once the buffer has a group
    fresh1 = [g for g in plan.groups if not g.replayed]
    (replayed,) = [g for g in plan.groups if g.replayed]
    assert plan.groups == fresh1 + [replayed]
    assert replayed.prompt == a and replayed.step == 0 and replayed.weight == 1.0
    assert replayed.keep.tolist() == [0, 1, 7, 9]
    np.testing.assert_array_equal(replayed.advantages, fresh.advantages)  # identical, not re-centred
    assert replayed.rollouts == fresh.rollouts and all(r.step == 0 for r in replayed.rollouts)
    # this step's fresh group (balanced [1, 1, 0, 0], pool mean 1/2) has its own baseline
    (g1,) = fresh1
    assert g1.keep.tolist() == [0, 1, 2, 3] and g1.advantages.tolist() == [0.5, 0.5, -0.5, -0.5]
    assert [r.step for r in g1.rollouts] == [1] * 4


def test_a_step_of_replayed_groups_only():
    # a small fresh share (1 of 4 prompts); DAPO's gate without refill drops the one fresh all-equal group, so
    # the step trains the replayed rest of the batch only
    pipe = build_pipeline(preset="dapo", params={"dynamic": {"refill": False}},
                          replay={"fresh_fraction": 0.25, "capacity": 8}, pool_size=20, group_size=4,
                          batch_prompts=4, total_steps=10, seed=0)
    scripts = [[1.0, 0, 0, 0], [1.0, 1, 0, 0], [0.0, 1, 1, 1], [0.0, 0, 1, 0]]

    def script(pos, p, step, call):
        return scripts[pos] if step == 0 else [1.0] * 4

    _, pools0, plan0 = run_step(pipe, 0, script)
    assert len(plan0.groups) == 4 and len(pipe.replay) == 4
    stored = {g.prompt: g.advantages.copy() for g in plan0.groups}
    full = dict(zip(pools0, (a for a, _ in estimate_grpo(list(pools0.values()), [None] * 4))))
    for p, adv in stored.items():
        np.testing.assert_array_equal(adv, full[p])  # GRPO over each pool of 4 (all kept)

    reqs, pools1, plan1 = run_step(pipe, 1, script)
    assert [len(r) for r in reqs] == [1]  # round(4 x 0.25) = 1 fresh prompt, no refill
    assert plan1.groups and all(g.replayed for g in plan1.groups)  # the all-equal fresh group was gated out
    drawn = [g.prompt for g in plan1.groups]
    assert len(drawn) == 3 == len(set(drawn)) and set(drawn) <= set(stored)  # the other 3 of the batch
    for g in plan1.groups:
        assert g.step == 0
        np.testing.assert_array_equal(g.advantages, stored[g.prompt])
    m = pipe.metrics()
    assert m["sampler/groups_trained"] == 0 and m["sampler/replay/drawn"] == 3
    assert sorted(pipe.replay._buf) == sorted(stored)  # replayed groups are not pushed again
    assert all(g.step == 0 for g in pipe.replay._buf.values())
    p1 = next(iter(pools1))
    assert pipe.stats.attempts[p1] >= 4  # the stats store still saw the fresh pool


# ---------------------------------------------------------------------------------------------- D3S
def test_d3s_kept_rows_keep_whole_pool_advantages_fresh_and_replayed():
    pipe = build_pipeline(preset="d3s", replay={"fresh_fraction": 0.5}, pool_size=6, group_size=4,
                          batch_prompts=2, total_steps=10, seed=0)
    scripts = {0: [[1.0, 0, 0, 0], [0.0, 1, 1, 1]], 1: [[1.0, 1, 0, 0]]}

    def script(pos, p, step, call):
        return scripts[step][pos]

    _, pools0, plan0 = run_step(pipe, 0, script)
    a, b = list(pools0)
    by = {g.prompt: g for g in plan0.groups}
    # A = (r - mean) / (unbiased std .5 + 1e-6): [1.5, -.5, -.5, -.5] and [-1.5, .5, .5, .5]; step 0 keeps half
    # of the 8 rows across both groups, {1.5, -.5 | -1.5, .5}
    assert by[a].keep.tolist() == [0, 1] and by[b].keep.tolist() == [0, 3]
    s = 0.5 + 1e-6
    # the whole pool's values (GRPO renormalised over the two kept rows would give +-0.707)
    np.testing.assert_allclose(by[a].advantages, np.array([0.75, -0.25]) / s)
    np.testing.assert_allclose(by[b].advantages, np.array([-0.75, 0.25]) / s)
    assert plan0.token_fraction == 0.2

    _, pools1, plan1 = run_step(pipe, 1, script)
    fresh = [g for g in plan1.groups if not g.replayed]
    (replayed,) = [g for g in plan1.groups if g.replayed]
    assert replayed.prompt in (a, b) and replayed.step == 0
    np.testing.assert_array_equal(replayed.advantages, by[replayed.prompt].advantages)
    assert replayed.keep.tolist() == by[replayed.prompt].keep.tolist()
    # step 1 (progress .1): one fresh pool [1, 1, 0, 0], keep ceil(.55 x 4) = 3 rows, A = whole-pool GRPO
    (g,) = fresh
    full = estimate_grpo([pools1[g.prompt]], [None])[0][0]
    assert len(g.keep) == 3
    np.testing.assert_array_equal(g.advantages, full[g.keep])
    np.testing.assert_allclose(np.abs(g.advantages), 0.5 / (np.sqrt(1 / 3) + 1e-6))
    assert plan1.token_fraction == pytest.approx(0.2 * 0.9 + 0.1)


# ---------------------------------------------------------------------------------------------- checkpoints
def _group(prompt: int, rewards: list[float], step: int) -> TrainGroup:
    r = np.asarray(rewards, dtype=np.float64)
    adv = estimate_grpo([GroupObs(prompt, r, np.full(r.size, 10))], [None])[0][0]
    return TrainGroup(prompt, np.arange(r.size), adv, [SimpleNamespace(reward=x) for x in rewards],
                      weight=1.5, step=step)


def test_buffer_state_round_trip(harness):
    rp = Replay(capacity=3)
    rp.push([_group(4, [0, 1], 0), _group(5, [1, 0, 0], 0), _group(3, [0, 1], 1), _group(6, [1, 0, 1], 1)])
    state = pickle.loads(pickle.dumps(rp.state_dict()))
    back = Replay(capacity=3)
    back.load_state_dict(state)
    assert list(back._buf) == list(rp._buf) == [5, 3, 6]
    for p, g in rp._buf.items():
        h = back._buf[p]
        assert (h.prompt, h.step, h.weight, h.replayed) == (g.prompt, g.step, g.weight, g.replayed)
        np.testing.assert_array_equal(h.keep, g.keep)
        np.testing.assert_array_equal(h.advantages, g.advantages)
        assert h.rollouts == g.rollouts
    draw = lambda r: [(g.prompt, g.advantages.tolist()) for g in r.draw(2, harness.make_ctx(10, seed=3))]  # noqa: E731
    assert draw(back) == draw(rp)
    back.push([_group(7, [1, 0], 2)])  # FIFO order survives the round trip
    assert list(back._buf) == [3, 6, 7]
    empty = Replay()
    empty.load_state_dict({})
    assert len(empty) == 0


def test_pipeline_resume_replays_the_same_groups():
    def script(pos, p, step, call):
        return np.random.default_rng([p, step, call]).integers(0, 2, 4).astype(float)

    def build():
        return build_pipeline(preset="uniform", replay={"fresh_fraction": 0.5, "capacity": 4}, pool_size=30,
                              group_size=4, batch_prompts=4, total_steps=10, seed=1)

    def plans(pipe, steps):
        out = []
        for s in steps:
            reqs, _, plan = run_step(pipe, s, script)
            out.append((reqs, [(g.prompt, g.step, g.replayed, g.keep.tolist(), g.advantages.tolist())
                               for g in plan.groups]))
        return out

    a = build()
    plans(a, range(3))
    saved = pickle.dumps(a.state_dict())
    want = plans(a, range(3, 5))
    assert any(g[2] for _, groups in want for g in groups)  # the resumed steps do replay
    b = build()
    b.load_state_dict(pickle.loads(saved))
    assert len(b.replay) == len(pickle.loads(saved)["components"]["replay"][1]["buffer"]) > 0
    assert plans(b, range(3, 5)) == want


def test_policy_reset_empties_the_buffer_and_stops_replay():
    """ReMix's reincarnation (the update reports ``policy_reset``): the buffer is cleared, later steps train
    fresh groups only and buffer nothing, and a checkpoint keeps it so."""
    def script(pos, p, step, call):
        return np.random.default_rng([p, step, call]).integers(0, 2, 4).astype(float)

    pipe = build_pipeline(preset="uniform", replay={"fresh_fraction": 0.5, "capacity": 8}, pool_size=30,
                          group_size=4, batch_prompts=4, total_steps=10, seed=1)
    for s in range(3):
        run_step(pipe, s, script)
    assert len(pipe.replay) > 0
    pipe.observe_update(set())  # no event: nothing changes
    assert len(pipe.replay) > 0
    pipe.observe_update({"policy_reset"})
    assert len(pipe.replay) == 0
    back = build_pipeline(preset="uniform", replay={"fresh_fraction": 0.5, "capacity": 8}, pool_size=30,
                          group_size=4, batch_prompts=4, total_steps=10, seed=1)
    back.load_state_dict(pickle.loads(pickle.dumps(pipe.state_dict())))
    for p in (pipe, back):
        for s in range(3, 6):
            reqs, _, plan = run_step(p, s, script)
            assert sum(reqs[0].values()) == 16 and not any(g.replayed for g in plan.groups)  # 4 fresh prompts
            assert len(p.replay) == 0


def test_max_age_replays_only_the_last_k_policies():
    """ReMix's buffer of the last K policies' rollouts: after step t, a group generated at step s is kept for the
    next step's draw only if (t + 1) - s <= K (K = 2: steps t and t - 1)."""
    from rollwise.sampling.base import SampleContext

    rp = Replay(capacity=10, max_age=2)
    ctx = lambda step: SampleContext(step=step, total_steps=9, group_size=2, batch_prompts=4,  # noqa: E731
                                     stats=None, rng=np.random.default_rng(0), budget=Budget(10))
    for step in range(4):  # one mixed group per step, from prompt 10 + step
        rp.observe(ctx(step), [], [])
        rp.push([_group(10 + step, [1, 0], step)])
    # after step 3's observe (evicting steps 0 and 1) and push: steps 2 and 3 remain
    assert sorted(g.prompt for g in rp.draw(10, ctx(4))) == [12, 13]
    rp.observe(ctx(4), [], [])  # end of step 4: step 2's group is 3 steps old for step 5
    assert sorted(g.prompt for g in rp.draw(10, ctx(5))) == [13]
    assert Replay(capacity=10).max_age is None  # DOTS: by capacity only
