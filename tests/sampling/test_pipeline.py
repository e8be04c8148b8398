"""The pipeline with its components: budget compliance for every preset, fit_to_budget, the default
estimator, selector weights, hooks, uniform epochs, DAPO refill and trim, rollout replay (TrainPlan: fresh
groups first, then replayed ones), and resume == uninterrupted for the stateful selectors."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from rollwise.sampling import Budget, GroupObs, SamplingPipeline, TrainGroup
from rollwise.sampling.base import estimate_grpo
from rollwise.sampling.pipeline import MIN_GROUP, fit_to_budget
from rollwise.sampling.presets import PRESETS
from rollwise.sampling.uniform import FixedAllocator, KeepAll, NoBaseline, NoTransform, UniformSelector


def _buildable(name: str, harness) -> bool:
    try:
        harness.make_pipe(name, pool=8)
    except (ImportError, KeyError):  # a component not registered or not importable in this checkout
        return False
    return True


@pytest.mark.parametrize("name", PRESETS.names())
@pytest.mark.parametrize("budget", [None, 128, 61])  # None: the harness default, what the preset needs
def test_every_preset_stays_within_budget(harness, name, budget):
    if not _buildable(name, harness):
        pytest.skip(f"preset {name!r} has a component that is not available")
    rates = np.random.default_rng(1).choice([0.0, 0.1, 0.5, 0.9, 1.0], size=300)
    pipe = harness.make_pipe(name, pool=300, levels=np.arange(300) % 5)
    limit = pipe.budget()[0] if budget is None else budget
    assert pipe.min_group == (1 if pipe.baseline.single_rollout else MIN_GROUP)
    sim = harness.RewardSim(rates)
    for step in range(4):
        log = harness.play_step(pipe, sim, step, budget=budget)
        assert log.budget.rollouts == limit and log.budget.spent_rollouts <= limit
        assert sum(sum(c) for _, c in log.requests) == log.budget.spent_rollouts
        assert all(min(c) >= 1 for _, c in log.requests)
        first = log.requests[0] if log.requests else ([], [])
        assert len(set(first[0])) == len(first[0])
        # a first round never samples a prompt once (unless an external baseline contrasts one rollout: MSSR)
        assert all(c >= pipe.min_group for c in first[1])
        for g in log.groups:
            # never a group of fewer than 2 rollouts (was: > 0); one advantage per trained rollout
            assert pipe.min_group <= len(g.keep) <= log.pools[g.prompt].n and np.isfinite(g.weight)
            assert g.advantages.shape == g.keep.shape and np.all(np.isfinite(g.advantages))
            assert len(g.rollouts) == len(g.keep) and not g.replayed and g.step == step
        assert isinstance(pipe.metrics()["sampler/dropped_small"], int)
    assert all(np.isfinite(v) for v in pipe.metrics().values() if isinstance(v, float))


def test_fit_to_budget_trims_the_tail():
    req = fit_to_budget(np.array([3, 1, 2]), np.array([8, 8, 8]), 12)
    assert req.prompts.tolist() == [3, 1] and req.counts.tolist() == [8, 4]
    assert len(fit_to_budget(np.array([3]), np.array([8]), 0)) == 0
    req = fit_to_budget(np.array([3, 1, 2]), np.array([8, 8, 8]), 100)  # fits: unchanged
    assert req.prompts.tolist() == [3, 1, 2] and req.counts.tolist() == [8, 8, 8]


def test_fit_to_budget_drops_a_prompt_cut_below_min_count():
    req = fit_to_budget(np.array([3, 1, 2]), np.array([8, 8, 8]), 17)
    assert req.counts.tolist() == [8, 8, 1]  # min_count 1 (extension rounds): a partial tail is kept
    req = fit_to_budget(np.array([3, 1, 2]), np.array([8, 8, 8]), 17, min_count=2)
    assert req.prompts.tolist() == [3, 1] and req.counts.tolist() == [8, 8]  # never [8, 8, 1]
    req = fit_to_budget(np.array([3, 1, 2]), np.array([8, 8, 8]), 18, min_count=2)
    assert req.counts.tolist() == [8, 8, 2]
    req = fit_to_budget(np.array([3, 1]), np.array([1, 8]), 5, min_count=2)
    assert req.prompts.tolist() == [3, 1] and req.counts.tolist() == [1, 4]  # only the cut ones are judged


def test_estimate_grpo_by_hand():
    pools = [GroupObs(0, np.array([1.0, 0, 0, 0]), np.full(4, 10)), GroupObs(1, np.array([1.0]), np.full(1, 10)),
             GroupObs(2, np.ones(3), np.full(3, 10))]
    out = estimate_grpo(pools, [None, None, None])
    # mean .25, unbiased std sqrt(.75/3) = .5
    np.testing.assert_allclose(out[0][0], np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6))
    assert out[1][0].tolist() == [0.0] and out[2][0].tolist() == [0.0] * 3
    assert all(k.all() for _, k in out)  # GRPO excludes no row
    # an external baseline replaces the mean, and there is no std division: A = r - b (even for one rollout)
    out = estimate_grpo(pools, [0.5, 0.25, None])
    assert out[0][0].tolist() == [0.5, -0.5, -0.5, -0.5] and out[1][0].tolist() == [0.75]


def _plain_pipe(selector, pool: int = 4, batch: int = 2, group_size: int = 4) -> SamplingPipeline:
    return SamplingPipeline(selector=selector, allocator=FixedAllocator(), gates=[], downsampler=KeepAll(),
                            baseline=NoBaseline(), transform=NoTransform(), replay=None, pool_size=pool,
                            group_size=group_size, batch_prompts=batch, total_steps=10, seed=0)


def test_selector_weights_multiply_the_advantages():
    class Weighted(UniformSelector):
        def weights(self, pools, kept, ctx):
            return np.array([2.0 if p.prompt % 2 == 0 else 0.5 for p in pools])

    pipe = _plain_pipe(Weighted())
    req = pipe.begin_step(0, Budget(8))
    pools = {int(p): GroupObs(int(p), np.array([1.0, 0, 0, 0]), np.full(4, 10)) for p in req.prompts}
    base = np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6)
    for g in pipe.finalize(pools).groups:
        w = 2.0 if g.prompt % 2 == 0 else 0.5
        assert g.weight == w
        np.testing.assert_allclose(g.advantages, w * base)


def test_hooks_see_the_pools_the_trained_groups_and_the_losses():
    pipe = _plain_pipe(UniformSelector())
    calls = []
    pipe.baseline.on_generated = lambda ctx, pools: calls.append(("generated", sorted(p.prompt for p in pools)))
    pipe.baseline.observe = lambda ctx, pools, trained, losses=None: calls.append(
        ("observe", sorted(p.prompt for p in pools), [g.prompt for g in trained], losses))
    req = pipe.begin_step(0, Budget(8))
    pools = {int(p): GroupObs(int(p), np.array([1.0, 0, 1, 0]), np.full(4, 10)) for p in req.prompts}
    plan = pipe.finalize(pools)
    assert calls == [("generated", sorted(pools))]
    losses = np.array([0.1, 0.2])
    pipe.observe(pools, plan.groups, losses)
    assert calls[1][:3] == ("observe", sorted(pools), [g.prompt for g in plan.groups])
    assert calls[1][3] is losses
    assert pipe.stats.attempts[sorted(pools)].tolist() == [4, 4]


def test_token_budget_stops_generation():
    b = Budget(100, max_tokens=50)
    assert b.left() == 100
    b.charge(3, 50)
    assert b.left() == 0 and b.spent_rollouts == 3


def test_uniform_walks_epochs_without_repeats(harness):
    sel, ctx = UniformSelector(), harness.make_ctx(64)
    epoch = np.concatenate([sel.select(16, ctx) for _ in range(4)])
    assert sorted(epoch.tolist()) == list(range(64)) and sel.epoch == 0
    nxt = sel.select(16, ctx)
    assert sel.epoch == 1 and len(set(nxt.tolist())) == 16
    ctx.exclude = np.arange(60)
    assert sorted(sel.select(16, ctx).tolist()) == [60, 61, 62, 63]  # pool exhausted: fewer than k


def test_dapo_refills_until_the_batch_is_full_then_trims(harness):
    rates = np.where(np.arange(200) % 2 == 0, 0.5, 1.0)  # odd prompts are always all-correct
    pipe = harness.make_pipe("dapo", pool=200)
    log = harness.play_step(pipe, harness.RewardSim(rates), step=0, budget=10_000)
    assert len(log.requests) >= 2  # at least one refill
    used = [p for prompts, _ in log.requests for p in prompts]
    assert len(used) == len(set(used))  # refills never repeat a prompt of the step
    assert len(log.groups) == 16  # trimmed to exactly the train batch
    assert all(log.pools[g.prompt].is_mixed(g.keep) for g in log.groups)
    assert pipe.metrics()["sampler/refills"] == len(log.requests) - 1


def test_dapo_stops_at_the_budget_and_the_refill_cap(harness):
    rates = np.ones(200)  # nothing ever passes the gate
    pipe = harness.make_pipe("dapo", pool=200, dynamic={"max_refills": 2})
    log = harness.play_step(pipe, harness.RewardSim(rates), step=0, budget=10_000)
    assert len(log.requests) == 3 and log.groups == []
    pipe = harness.make_pipe("dapo", pool=200)
    log = harness.play_step(pipe, harness.RewardSim(rates), step=0, budget=300)
    assert log.budget.spent_rollouts == 300


def _group(prompt: int, rewards: list[float], step: int = 0) -> TrainGroup:
    """A fresh trained group as the pipeline makes it: all rollouts kept, whole-pool GRPO advantages."""
    r = np.asarray(rewards, dtype=np.float64)
    adv = estimate_grpo([GroupObs(prompt, r, np.full(r.size, 10))], [None])[0][0]
    return TrainGroup(prompt, np.arange(r.size), adv, [SimpleNamespace(reward=x) for x in rewards], step=step)


def test_replay_skips_zero_variance_groups_and_mixes_fresh_prompts(harness):
    pipe = harness.make_pipe("uniform", pool=100)
    assert pipe.replay is None and "replay" not in pipe.components
    pipe = harness.make_pipe("dots", pool=100, replay={"capacity": 3, "fresh_fraction": 0.5})
    rp = pipe.replay
    old = _group(7, [1, 0])
    rp.push([_group(0, [1, 1]), _group(1, [0, 0]), _group(2, [1]), _group(3, [1, 0]),
             TrainGroup(7, np.arange(2), old.advantages, old.rollouts, replayed=True)])
    assert list(rp._buf) == [3]  # all-equal (zero advantages), single-rollout and replayed groups: never buffered
    rp.push([_group(4, [0, 1]), _group(5, [0, 1]), _group(3, [0, 1], step=1), _group(6, [1, 0])])
    assert list(rp._buf) == [5, 3, 6]  # deduplicated (latest), FIFO capacity 3
    assert rp._buf[3].step == 1
    req = pipe.begin_step(2, Budget(10**6))
    assert len(req) == 8  # half of the 16-prompt batch is fresh once the buffer has groups
    pools = {int(p): GroupObs(int(p), np.array([1.0, 0, 1, 0, 1, 0, 1, 0]), np.full(8, 10)) for p in req.prompts}
    plan = pipe.finalize(pools)
    fresh = [g for g in plan.groups if not g.replayed]
    drawn = [g for g in plan.groups if g.replayed]
    assert plan.groups == fresh + drawn  # fresh groups first, then the replayed ones
    assert [g.prompt for g in fresh] == req.prompts.tolist() and all(g.step == 2 for g in fresh)
    # the other 8 wanted, 3 available, no repeats; buffer order; stored advantages and rollouts as they were
    assert [g.prompt for g in drawn] == [5, 3, 6] and [g.step for g in drawn] == [0, 1, 0]
    for g in drawn:
        np.testing.assert_array_equal(g.advantages, rp._buf[g.prompt].advantages)
        assert g.rollouts == rp._buf[g.prompt].rollouts
    assert not any(g.replayed for g in rp._buf.values())  # the buffer keeps the fresh originals
    assert pipe.metrics()["sampler/replay/drawn"] == 3 and pipe.metrics()["sampler/replay/size"] == 3


def test_replay_in_a_run_buffers_only_mixed_groups(harness):
    rates = np.random.default_rng(42).choice([0.0, 0.5, 1.0], size=100)  # not the pipeline seed
    pipe = harness.make_pipe("dots", pool=100)
    sim = harness.RewardSim(rates)
    logs = [harness.play_step(pipe, sim, s) for s in range(3)]
    assert logs[0].drawn == [] and len(logs[1].drawn) > 0
    assert all(0 < rates[p] < 1 for p in pipe.replay._buf)
    assert all(np.any(g.advantages) and len(g.rollouts) >= 2 for g in pipe.replay._buf.values())
    assert len(logs[2].requests[0][0]) == 8


RESUMABLE = ["vade", "gdro", "gdro_rollout", "dots", "uniform", "dapo", "dars", "reinforce_ada", "v05", "d3s"]


@pytest.mark.parametrize("name", RESUMABLE)
def test_resume_makes_the_same_next_plans(harness, name):
    rates = np.random.default_rng(3).random(150)
    sim = harness.RewardSim(rates, seed=5)
    kw = dict(pool=150, levels=np.arange(150) % 4, seed=11)

    def plans(pipe, steps):
        out = []
        for s in steps:
            log = harness.play_step(pipe, sim, s)
            groups = [(g.prompt, g.keep.tolist(), g.advantages.tolist(), g.weight) for g in log.groups]
            out.append((log.requests, groups, log.drawn))
        return out

    a = harness.make_pipe(name, **kw)
    plans(a, range(3))
    saved = pickle.dumps(a.state_dict())
    want = plans(a, range(3, 5))
    b = harness.make_pipe(name, **kw)
    b.load_state_dict(pickle.loads(saved))
    assert plans(b, range(3, 5)) == want
    c = harness.make_pipe(name, **dict(kw, seed=12))  # a different seed really plans differently
    c.load_state_dict(pickle.loads(saved))
    assert plans(c, range(3, 5)) == want  # ... unless restored: the RNG state travels in the checkpoint


def test_selector_metrics_are_namespaced(harness):
    pipe = harness.make_pipe("vade", pool=50)
    harness.play_step(pipe, harness.RewardSim(np.full(50, 0.5)), 0)
    m = pipe.metrics()
    assert "sampler/selector/posterior_mean" in m and "sampler/selector/info_gain" in m
    pipe = harness.make_pipe("gdro", pool=50)  # Prompt-GDRO: the selector only (the allocator is fixed now)
    harness.play_step(pipe, harness.RewardSim(np.full(50, 0.5)), 0)
    m = pipe.metrics()
    assert "sampler/selector/bin0_q" in m and not any(k.startswith("sampler/allocator/") for k in m)
    pipe = harness.make_pipe("gdro_rollout", pool=50)  # Rollout-GDRO: the arms game lives in the allocator
    harness.play_step(pipe, harness.RewardSim(np.full(50, 0.5)), 0)
    m = pipe.metrics()
    assert "sampler/allocator/mu" in m and "sampler/allocator/bin0_arm" in m
