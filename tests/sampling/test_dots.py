"""DOTS: nearest-to-target selection at tau -> 0, the level predictor by hand, mu-step plans, Gumbel-top-k."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.sampling.dots import PREDICTORS, DotsSelector, gumbel_top_k, predict_level


def _seen(ctx, rates: np.ndarray, attempts: int = 10**6, step: int = 0) -> None:
    st = ctx.stats
    st.ema_pass[:] = rates
    st.attempts[:] = attempts
    st.last_step[:] = step


def test_picks_prompts_nearest_half_as_tau_goes_to_zero(harness):
    rng = np.random.default_rng(0)
    rates = rng.random(1000)
    ctx = harness.make_ctx(1000, step=1)
    _seen(ctx, rates)
    out = DotsSelector(tau=1e-6, mu=1).select(20, ctx)
    want = np.argsort(np.abs(rates - 0.5), kind="stable")[:20]
    assert sorted(out.tolist()) == sorted(want.tolist())
    out = DotsSelector(alpha=0.2, tau=1e-6, mu=1).select(5, ctx)
    assert sorted(out.tolist()) == sorted(np.argsort(np.abs(rates - 0.2))[:5].tolist())


def test_level_predictor_by_hand(harness):
    levels = np.array([0, 0, 1, 1, 2, 2])
    ctx = harness.make_ctx(6, step=5, levels=levels)
    st = ctx.stats
    st.ema_pass[:] = [0.2, 0.4, 0.9, np.nan, np.nan, np.nan]
    st.attempts[:] = [8, 24, 8, 0, 0, 0]
    st.last_step[:] = [5, 4, 1, -1, -1, -1]  # window 2 (steps 3..5): prompts 0 and 1 are the reference
    p = predict_level(ctx, window=2, bandwidth=1e-3, prior=0.5, prior_rollouts=8)
    lv0 = (0.2 + 0.4 + 0.5) / 3  # level 0: two references + one pseudo-count at the prior
    # prompt 0: (8*0.2 + 8*lv0)/16; prompt 1: (24*0.4 + 8*lv0)/32; prompt 2 is seen but not a reference:
    # its level has no reference, so level mean = prior 0.5 -> (8*0.9 + 8*0.5)/16; unseen prompts -> prior
    np.testing.assert_allclose(p, [(1.6 + 8 * lv0) / 16, (9.6 + 8 * lv0) / 32, 0.7, 0.5, 0.5, 0.5])
    ctx.levels = None  # one global mean over the references
    np.testing.assert_allclose(predict_level(ctx, 2)[3:], [lv0] * 3)


def test_kernel_borrows_from_neighbouring_levels(harness):
    ctx = harness.make_ctx(3, step=0, levels=np.array([0, 1, 2]))
    ctx.stats.ema_pass[0], ctx.stats.attempts[0], ctx.stats.last_step[0] = 0.0, 8, 0
    p = predict_level(ctx, window=1, bandwidth=1.0)
    assert p[1] < p[2] < 0.5  # level 1 borrows more from level 0's all-wrong reference than level 2


def test_plan_serves_mu_consecutive_batches(harness):
    sel = DotsSelector(mu=3)
    ctx = harness.make_ctx(100)
    first = sel.select(10, ctx)
    plan_rest = sel.state_dict()["queue"]
    assert len(first) == 10 and len(plan_rest) == 20
    ctx.step = 1
    assert sel.select(10, ctx).tolist() == plan_rest[:10].tolist()
    ctx.step = 2
    assert sel.select(10, ctx).tolist() == plan_rest[10:].tolist()
    ctx.step = 3
    sel.select(10, ctx)
    assert sel.replans == 2
    all_three = np.concatenate([first, plan_rest])
    assert len(set(all_three.tolist())) == 30  # one plan is drawn without replacement


def test_refill_excludes_and_leaves_the_plan(harness):
    sel = DotsSelector(mu=2)
    ctx = harness.make_ctx(30)
    sel.select(10, ctx)
    queue = sel.state_dict()["queue"].copy()
    ctx.exclude = np.arange(25)
    assert sorted(sel.select(10, ctx).tolist()) == [25, 26, 27, 28, 29]
    np.testing.assert_array_equal(sel.state_dict()["queue"], queue)


def test_gumbel_top_k_samples_the_softmax():
    rng = np.random.default_rng(0)
    scores = np.log(np.array([0.5, 0.3, 0.2]))
    hits = np.bincount([gumbel_top_k(scores, 1, rng, tau=1.0)[0] for _ in range(20000)], minlength=3)
    np.testing.assert_allclose(hits / hits.sum(), [0.5, 0.3, 0.2], atol=0.015)
    assert sorted(gumbel_top_k(scores, 5, rng, 1.0, exclude=np.array([1])).tolist()) == [0, 2]


def test_pluggable_predictor(harness, monkeypatch):
    monkeypatch.setitem(PREDICTORS, "const", lambda ctx, window, **kw: np.linspace(0, 1, ctx.stats.size))
    out = DotsSelector(predictor="const", tau=1e-6, mu=1).select(1, harness.make_ctx(11))
    assert out.tolist() == [5]  # the prompt predicted at exactly 0.5
    with pytest.raises(ValueError):
        DotsSelector(predictor="nope")


def test_knobs_are_validated():
    for bad in ({"mu": 0}, {"tau": 0.0}, {"prior_rollouts": 0.0}, {"alpha": 1.5}, {"windw": 2}):
        with pytest.raises(ValueError):
            DotsSelector(**bad)
    sel = DotsSelector(mu=3)
    assert sel.window == 3 and DotsSelector(mu=3, window=5).window == 5  # window defaults to mu
