"""MSSR's sampler side: the Beta-conjugate baseline by hand, one rollout per prompt at G x the prompts (equal
rollouts), pools of one trained against v_hat, resume == uninterrupted, and the preset through the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from rollwise.config import load_config
from rollwise.sampler_tables import build_pipeline, sampler_config
from rollwise.sampling.mssr import BetaBaseline, compute_beta_update
from rollwise.sampling.presets import prompts_per_step, step_budget

ROOT = Path(__file__).resolve().parents[2]


def test_beta_update_and_v_hat_by_hand(harness):
    a, b = compute_beta_update(np.array([1.0, 2.0]), np.array([1.0, 3.0]), np.array([3.0, 0.0]),
                               np.array([1.0, 2.0]), decay=0.5)
    assert a.tolist() == [3.5, 1.0] and b.tolist() == [1.5, 3.5]
    base, ctx = BetaBaseline(prior_alpha=1.0, prior_beta=3.0), harness.make_ctx(4)
    pools = [harness.obs(0, [1.0, 1.0, 0.0]), harness.obs(2, [0.0])]
    assert base.compute(pools, ctx) == [0.25, 0.25]  # the prior mean, before any observation
    base.observe(ctx, pools, [])
    # prompt 0: Beta(1 + 2, 3 + 1) -> 3/7; prompt 2: Beta(1, 3 + 1) -> 1/5; prompt 1 unseen: still 1/4
    assert base.compute([harness.obs(0, [0.0]), harness.obs(2, [1.0]), harness.obs(1, [1.0])], ctx) == \
        pytest.approx([3 / 7, 1 / 5, 1 / 4])
    base.observe(ctx, [harness.obs(0, [0.0])], [])  # a later observation keeps accumulating
    assert base.compute([harness.obs(0, [1.0])], ctx) == pytest.approx([3 / 8])


def test_forgetting_discounts_old_counts(harness):
    base, ctx = BetaBaseline(decay=0.5), harness.make_ctx(1)
    for r in ([1.0], [1.0], [0.0]):
        base.observe(ctx, [harness.obs(0, r)], [])
    # alpha: 1 -> 1.5 -> 1.75 -> 0.875;  beta: 1 -> 0.5 -> 0.25 -> 1.125
    assert base.compute([harness.obs(0, [0.0])], ctx) == pytest.approx([0.875 / 2.0])


def test_equal_rollouts_one_per_prompt_and_pools_of_one_are_trained(harness):
    s = sampler_config("mssr", batch_prompts=4, group_size=8)
    assert s.allocator.n == 1 and s.baseline.type == "beta"
    assert prompts_per_step(s) == 32 and step_budget(s) == (32, 1)  # 4 x 8 rollouts, like uniform's
    pipe = build_pipeline(s, pool_size=100, total_steps=10, seed=0)
    assert pipe.min_group == 1
    sim = harness.RewardSim(np.where(np.arange(100) % 2 == 0, 1.0, 0.0))  # even prompts always right
    log = harness.play_step(pipe, sim, 0)
    assert log.requests[0][1] == [1] * 32 and len(log.groups) == 32
    for g in log.groups:  # A = r - v_hat with the prior mean 0.5 (the default estimator: r - baseline)
        assert g.advantages.tolist() == [log.pools[g.prompt].rewards[0] - 0.5]
    m = pipe.metrics()  # a lone rollout with r != v_hat is informative, not wasted
    assert m["sampler/mixed_share"] == 1.0 and m["sampler/wasted_rollouts"] == 0
    seen = np.array(sorted(log.pools))
    assert pipe.baseline.value(seen, 100) == pytest.approx(np.where(seen % 2 == 0, 2 / 3, 1 / 3))


def test_restored_baseline_gives_the_same_advantages(harness):
    rates = np.random.default_rng(0).random(40)
    a = harness.make_pipe("mssr", pool=40, group_size=4, batch=2)
    for step in range(3):
        harness.play_step(a, harness.RewardSim(rates), step)
    b = harness.make_pipe("mssr", pool=40, group_size=4, batch=2)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    for step in range(3, 6):
        la, lb = (harness.play_step(p, harness.RewardSim(rates), step) for p in (a, b))
        assert [g.prompt for g in la.groups] == [g.prompt for g in lb.groups]
        assert all(np.array_equal(x.advantages, y.advantages) for x, y in zip(la.groups, lb.groups))
    assert a.metrics()["sampler/baseline/v_hat_mean"] == b.metrics()["sampler/baseline/v_hat_mean"]


def test_preset_sets_the_estimator_knobs_and_the_shaper(warm_cache, tmp_path):
    cfg = load_config(ROOT / "configs" / "smoke.toml", ["--sampler.type=mssr", f"--run.out_dir={tmp_path}"])
    assert cfg.algo.advantage.type == "pool_baseline" and cfg.algo.advantage.batch_norm
    assert [s.type for s in cfg.algo.shaping] == ["mssr_entropy"]
    assert cfg.rollout_budget() == cfg.sampler.batch_prompts * cfg.sampler.group_size


def test_cli_smoke(warm_cache, tmp_path):
    from rollwise.cli import app

    with pytest.raises(SystemExit) as done:
        app(["train", str(ROOT / "configs" / "smoke.toml"), "--sampler.type=mssr", "--trainer.steps=2",
             "--run.threads=1", "--trainer.eval_every=0", f"--run.out_dir={tmp_path}", "--run.name=mssr",
             f"--warmstart.cache_dir={warm_cache}"])
    assert not done.value.code
    rows = [json.loads(r) for r in (tmp_path / "mssr" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "sampler/budget" in r]
    assert len(rows) == 2
    for r in rows:  # smoke: 6 prompts x G 4 -> 24 prompts of one rollout, every one trained
        assert r["sampler/prompts_generated"] == r["sampler/groups_trained"] == r["sampler/budget_spent"] == 24
        assert "loss/mssr_entropy_term_mean" in r
