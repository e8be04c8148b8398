"""Advantage shapers (ACE, the MSSR entropy term) and the pool baseline's batch normalisation, on hand-derived
values."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos import ADVANTAGES, SHAPERS, AdvantageContext, ShapingContext, needs_of


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def ace_ctx() -> ShapingContext:
    # c_i = sum_t mask (old - ref):  row 0: (-0.5 + 1) * 2 = 1.0;  row 1: 0;  row 2: -0.2 - 0.8 = -1.0
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    old = torch.tensor([[-0.5, -0.5, 0.0], [-1.0, -1.0, -1.0], [-0.2, 0.0, 0.0]])
    ref = torch.tensor([[-1.0, -1.0, 0.0], [-1.0, -1.0, -1.0], [0.8, 0.0, 0.0]])
    adv = torch.tensor([[-1.0], [-2.0], [1.5]]).expand(3, 3) * mask  # rows 0, 1 incorrect; row 2 correct
    return ShapingContext(adv, mask, old, ref)


def test_ace_scales_only_incorrect_rollouts_by_their_confidence_shift():
    out, metrics = SHAPERS.get("ace")(ace_ctx(), {"alpha": 0.5})
    s0, s1 = 1 + 0.5 * softplus(1.0), 1 + 0.5 * math.log(2)  # 1.656631, 1.346574
    expected = torch.tensor([[-s0, -s0, 0.0], [-2 * s1, -2 * s1, -2 * s1], [1.5, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    assert metrics["loss/ace_scale_mean"].item() == pytest.approx((s0 + s1) / 2)
    assert metrics["loss/ace_neg_frac"].item() == pytest.approx(2 / 3)
    assert metrics["loss/ace_conf_shift_mean"].item() == pytest.approx(0.0)  # (1 + 0 - 1) / 3


def test_ace_needs_the_reference_and_rejects_unknown_knobs():
    assert needs_of(SHAPERS.get("ace")) == {"reference"}
    ctx = ace_ctx()
    with pytest.raises(ValueError, match="alpah"):
        SHAPERS.get("ace")(ctx, {"alpah": 1.0})
    ctx.ref_logprobs = None
    with pytest.raises(ValueError, match="ref_logprobs"):
        SHAPERS.get("ace")(ctx, {"alpha": 1.0})


def test_mssr_entropy_term_with_cap_active_and_inactive():
    adv = torch.tensor([[1.0, 1.0, -0.5], [0.0, 2.0, -4.0]])
    ent = torch.tensor([[0.5, 3.0, 2.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    ctx = ShapingContext(adv, mask, torch.zeros_like(adv), entropy=ent)
    out, metrics = SHAPERS.get("mssr_entropy")(ctx, {"kappa1": 0.4, "kappa2": 2.0})
    # row 0: min(0.2, 0.5) = 0.2 (cap inactive); min(1.2, 0.5) = 0.5 (cap); min(0.8, 0.25) = 0.25 (cap, A < 0)
    # row 1: A = 0 -> min(0.4, 0) = 0; min(0.4, 1.0) = 0.4 (inactive); padding untouched
    expected = torch.tensor([[1.2, 1.5, -0.25], [0.0, 2.4, -4.0]])
    torch.testing.assert_close(out, expected)
    assert metrics["loss/mssr_entropy_term_mean"].item() == pytest.approx((0.2 + 0.5 + 0.25 + 0 + 0.4) / 5)
    assert metrics["loss/mssr_entropy_capped_frac"].item() == pytest.approx(3 / 5)  # 0.5, 0.25, and A = 0
    assert needs_of(SHAPERS.get("mssr_entropy")) == {"entropy"}


def test_pool_baseline_batch_norm_over_all_rows():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1])
    base = torch.tensor([0.5, 0.25], dtype=torch.float64)
    fn = ADVANTAGES.get("pool_baseline")
    raw = fn(rewards, groups, AdvantageContext(2, base)).advantages  # [0.5, -0.5, 0.75, 0.75]
    torch.testing.assert_close(raw, torch.tensor([0.5, -0.5, 0.75, 0.75], dtype=torch.float64))
    out = fn(rewards, groups, AdvantageContext(2, base, params={"batch_norm": True})).advantages
    # mean 0.375; deviations [0.125, -0.875, 0.375, 0.375]; Bessel var 1.0625 / 3
    std = math.sqrt(1.0625 / 3)
    expected = torch.tensor([0.125, -0.875, 0.375, 0.375], dtype=torch.float64) / (std + 1e-6)
    torch.testing.assert_close(out, expected)
    pop = fn(rewards, groups, AdvantageContext(2, base, params={"batch_norm": True, "std_unbiased": False}))
    torch.testing.assert_close(pop.advantages, expected * (std + 1e-6) / (math.sqrt(1.0625 / 4) + 1e-6))
    one = fn(rewards[:1], groups[:1], AdvantageContext(1, base[:1], params={"batch_norm": True}))
    assert one.advantages.tolist() == [0.0]


def test_unknown_need_is_refused():
    def shaper(ctx, params):
        return ctx.advantages, {}

    shaper.needs = frozenset({"value_model"})
    with pytest.raises(ValueError, match="value_model"):
        needs_of(shaper)
