"""MC-GRPO presets: G+1 rollouts per prompt; ``mc_grpo`` hands every rollout to its estimator (which drops the
median pivot from the trained rows); ``mc_grpo_control`` drops the smallest |reward| and trains GRPO."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.sampler_tables import build_pipeline, sampler_config
from rollwise.sampling import Budget, GroupObs
from rollwise.sampling.presets import required_advantage
from rollwise.sampling.uniform import DropMinAbs

REWARDS = [1.0, 0, 0, 1, 0]  # G = 4, +1


def _pipe(preset: str, **kw):
    return build_pipeline(preset=preset, pool_size=10, group_size=4, batch_prompts=3, total_steps=5, seed=0,
                          **kw)


def _pools(req, rewards=REWARDS) -> dict[int, GroupObs]:
    r = np.asarray(rewards, dtype=np.float64)
    return {int(p): GroupObs(int(p), r.copy(), np.full(r.size, 10)) for p in req.prompts}


def mc_grpo_estimator():
    """The registered ``mc_grpo`` estimator (default knobs: scale='auto') as the sampler's numpy callable,
    wired like ``rollwise.train.setup.build_estimator`` (which pulls in the model stack)."""
    torch = pytest.importorskip("torch")
    from rollwise.algos import ADVANTAGES, AdvantageContext

    fn = ADVANTAGES.get("mc_grpo")

    def estimate(pools, baselines):
        sizes = [p.n for p in pools]
        rewards = torch.tensor(np.concatenate([p.rewards for p in pools]), dtype=torch.float32)
        index = torch.repeat_interleave(torch.arange(len(pools)), torch.tensor(sizes))
        out = fn(rewards, index, AdvantageContext(len(pools), None, torch.zeros(len(rewards)), params={}))
        cuts = np.cumsum(sizes)[:-1]
        return list(zip(np.split(out.advantages.double().numpy(), cuts), np.split(out.keep.numpy(), cuts)))

    return estimate


def test_mc_grpo_preset_plans_g_plus_one():
    pipe = _pipe("mc_grpo")
    assert required_advantage(sampler_config("mc_grpo"), None) == "mc_grpo"
    assert pipe.budget() == (3 * 5, 5)
    req = pipe.begin_step(0, Budget(100))
    assert len(req) == 3 and req.counts.tolist() == [5, 5, 5]
    pools = _pools(req)
    assert pipe.next_request(pools) is None  # a single round
    groups = pipe.finalize(pools).groups
    # without an injected estimator (numpy GRPO, no exclusions) every rollout reaches the loss; the sampler
    # itself drops nothing (the pivot is the estimator's call)
    assert [g.keep.tolist() for g in groups] == [[0, 1, 2, 3, 4]] * 3
    # GRPO over the 5: mean .4, unbiased std sqrt(1.2/4)
    want = (np.array(REWARDS) - 0.4) / (np.sqrt(0.3) + 1e-6)
    for g in groups:
        np.testing.assert_allclose(g.advantages, want)


def test_mc_grpo_estimator_drops_the_pivot_from_the_trained_rows():
    pipe = _pipe("mc_grpo", estimate=mc_grpo_estimator())
    req = pipe.begin_step(0, Budget(100))
    groups = pipe.finalize(_pools(req)).groups
    # lower median of [1,0,0,1,0] = 0, pivot = the 3rd zero in stable order (row 4); binary rewards: MAD = 0
    # so scale='auto' leaves A = r - m = [1,0,0,1]; 2 nonzero of 5 rows -> x 5/2
    assert len(groups) == 3
    for g in groups:
        assert g.keep.tolist() == [0, 1, 2, 3]
        np.testing.assert_allclose(g.advantages, [2.5, 0.0, 0.0, 2.5])


def test_mc_grpo_graded_rewards_divide_by_the_mad():
    pipe = _pipe("mc_grpo", estimate=mc_grpo_estimator())
    req = pipe.begin_step(0, Budget(100))
    groups = pipe.finalize(_pools(req, [0.9, 0.1, 0.5, 0.3, 0.7])).groups
    # median 0.5 (row 2, the pivot); |r - m| = [.4,.4,0,.2,.2] -> lower median .2; A = [2,-2,(0),-1,1];
    # 4 nonzero of 5 -> x 5/4
    for g in groups:
        assert g.keep.tolist() == [0, 1, 3, 4]
        np.testing.assert_allclose(g.advantages, np.array([2.0, -2.0, -1.0, 1.0]) * 1.25, rtol=1e-6)


def test_mc_grpo_of_two_keeps_one_rollout_and_trains_nothing():
    # G = 1 (+1): the estimator drops the pivot, one rollout is left: never trained, counted
    pipe = build_pipeline(preset="mc_grpo", pool_size=10, group_size=1, batch_prompts=3, total_steps=5, seed=0,
                          estimate=mc_grpo_estimator())
    req = pipe.begin_step(0, Budget(100))
    assert req.counts.tolist() == [2, 2, 2]
    assert pipe.finalize(_pools(req, [1.0, 0.0])).groups == []
    assert pipe.metrics()["sampler/dropped_small"] == 3


def test_mc_grpo_extra_composes_with_group_size_override():
    pipe = build_pipeline(preset="mc_grpo", params={"fixed": {"n": 2}}, pool_size=10, group_size=8,
                          batch_prompts=2, total_steps=5, seed=0)
    assert pipe.begin_step(0, Budget(100)).counts.tolist() == [3, 3]  # G = 2 headline setting, +1 pivot
    assert pipe.budget() == (6, 3)


def test_drop_min_abs_by_hand(harness):
    pools = [harness.obs(0, [1, 0, 0, 1, 0]), harness.obs(1, [0.5, -0.2, 0.9, 0.2]), harness.obs(2, [1, 1, 1])]
    kept = DropMinAbs().select(pools, harness.make_ctx(3))
    # the first of the smallest |r| (row 1 of the zeros); |-0.2| = |0.2| -> the first, row 1; all equal -> row 0
    assert [k.tolist() for k in kept] == [[0, 2, 3, 4], [0, 2, 3], [1, 2]]


def test_mc_grpo_control_preset():
    pipe = _pipe("mc_grpo_control")
    assert required_advantage(sampler_config("mc_grpo_control"), None) == "grpo"
    req = pipe.begin_step(0, Budget(pipe.budget()[0]))
    assert req.counts.tolist() == [5, 5, 5]  # draws G + 1
    groups = pipe.finalize(_pools(req)).groups
    assert len(groups) == 3
    for g in groups:
        assert g.keep.tolist() == [0, 2, 3, 4]  # the first zero (smallest |r|) is dropped: G rollouts trained
        # the control is GRPO over the G kept rows (estimate_on_kept): [1,0,1,0] -> mean .5, unbiased std
        # sqrt(1/3), so +-0.5 / 0.57735 = +-0.866 (not the whole G + 1 pool's +1.10 / -0.73)
        np.testing.assert_allclose(g.advantages, np.array([0.5, -0.5, 0.5, -0.5]) / (np.sqrt(1 / 3) + 1e-6))
