"""SCOPE's loss (arXiv:2602.24110): PPO on the policy's tokens, -A p/(p + gamma) on spliced off-policy tokens.
Hand-computed values."""

from __future__ import annotations

import math

import torch

from rollwise.algos import POLICY_LOSSES, LossParams
from rollwise.algos.losses import compute_ppo_loss
from rollwise.algos.policy_shaping import compute_scope_loss, compute_shaped_term


def test_shaped_term_by_hand():
    # p = 0.5, gamma = 0.1: f = 0.5 / 0.6 = 0.8333; A = 2 -> loss -1.6667; df/dp = 0.1 / 0.36
    lp = torch.tensor([[math.log(0.5)]], requires_grad=True)
    loss = compute_shaped_term(lp, torch.tensor([[2.0]]), 0.1)
    assert math.isclose(loss.item(), -2.0 * 0.5 / 0.6, rel_tol=1e-6)
    loss.sum().backward()
    # d/d(logp) of -A p/(p+g) = -A * g p / (p+g)^2 = -2 * 0.1 * 0.5 / 0.36
    assert math.isclose(lp.grad.item(), -2.0 * 0.1 * 0.5 / 0.36, rel_tol=1e-5)


def test_mask_picks_the_term_per_token():
    # row 0: tokens 0-1 the policy's, tokens 2-3 spliced; row 1: all policy; padding at row 1 token 3
    lp = torch.log(torch.tensor([[0.9, 0.8, 0.2, 0.5], [0.6, 0.7, 0.4, 0.3]]))
    old = lp.clone()  # on-policy: ratio 1
    adv = torch.tensor([1.0, -0.5])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]])
    off = torch.tensor([[False, False, True, True], [False, False, False, False]])
    loss, m = compute_scope_loss(lp, old, adv, mask, LossParams(), off_policy_mask=off)
    # policy tokens: -A * 1; spliced: -A p/(p+0.1)
    want = torch.tensor([[-1.0, -1.0, -0.2 / 0.3, -0.5 / 0.6], [0.5, 0.5, 0.5, 0.0]])
    assert torch.allclose(loss, want, atol=1e-6)
    assert math.isclose(float(m["loss/offpolicy_token_frac"]), 2 / 7, rel_tol=1e-6)
    assert math.isclose(float(m["loss/offpolicy_prob_mean"]), 0.35, rel_tol=1e-6)


def test_no_mask_is_ppo():
    torch.manual_seed(0)
    lp, old = torch.randn(3, 5) - 1, torch.randn(3, 5) - 1
    adv, mask = torch.randn(3), torch.ones(3, 5)
    a, _ = compute_scope_loss(lp, old, adv, mask, LossParams())
    b, _ = compute_ppo_loss(lp, old, adv, mask, LossParams())
    assert torch.equal(a, b)
    c, _ = compute_scope_loss(lp, old, adv, mask, LossParams(), off_policy_mask=torch.zeros(3, 5, dtype=torch.bool))
    assert torch.equal(a, c)


def test_registered_with_its_need():
    fn = POLICY_LOSSES.get("scope")
    assert fn is compute_scope_loss and fn.needs == frozenset({"off_policy_mask"})
