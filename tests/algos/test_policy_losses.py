"""Policy losses: PPO clipping on constructed ratios, GSPO's sequence ratio and gradient, IS correction."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos import POLICY_LOSSES, LossParams, compute_aggregate

# One row of constructed (A, r) pairs; old logprobs are arbitrary, logp = old + log r.
#   token  A    r     expected loss with clip [0.8, 1.28]              clipped?
#   0     +1   1.1   -1.1   (inside)                                  no
#   1     +1   1.5   -1.28  (r > 1.28, A > 0: capped gain)            high
#   2     +1   0.5   -0.5   (min picks the unclipped, pessimistic)    no
#   3     -1   0.5   +0.8   (r < 0.8, A < 0: capped)                  low
#   4     -1   1.5   +1.5   (pessimistic unclipped)                   no
#   5     -1   5.0   +5.0   (3.0 with dual clip c=3: min(5, 3*1))     no (dual)
#   6     -2   0.9   +1.8   (inside)                                  no
A = torch.tensor([[1.0, 1, 1, -1, -1, -1, -2]], dtype=torch.float64)
R = torch.tensor([[1.1, 1.5, 0.5, 0.5, 1.5, 5.0, 0.9]], dtype=torch.float64)
OLD = torch.tensor([[-0.3, -1.0, -2.0, -0.7, -1.5, -3.0, -0.2]], dtype=torch.float64)
MASK = torch.ones_like(A, dtype=torch.bool)


def ppo(params: LossParams, r=R, adv=A, mask=MASK, behaviour=None):
    old = OLD if r.shape == OLD.shape else torch.full_like(r, -0.4)
    logp = (old + r.log()).requires_grad_(True)
    loss, metrics = POLICY_LOSSES.get("ppo")(logp, old, adv, mask, params, behaviour)
    return logp, loss, metrics


def test_ppo_clip_cases_and_gradient():
    logp, loss, m = ppo(LossParams(clip_low=0.2, clip_high=0.28))
    expected = torch.tensor([[-1.1, -1.28, -0.5, 0.8, 1.5, 5.0, 1.8]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected)
    # d(-A r)/d logp = -A r where unclipped; 0 where a clip bound is active (tokens 1, 3)
    loss.sum().backward()
    grad = torch.tensor([[-1.1, 0.0, -0.5, 0.0, 1.5, 5.0, 1.8]], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, grad)
    torch.testing.assert_close(m["loss/clipfrac"], torch.tensor(2 / 7, dtype=torch.float64))
    torch.testing.assert_close(m["loss/clipfrac_high"], torch.tensor(1 / 7, dtype=torch.float64))
    torch.testing.assert_close(m["loss/clipfrac_low"], torch.tensor(1 / 7, dtype=torch.float64))
    assert m["loss/dualclip_frac"].item() == 0.0
    # ratio mean = (1.1 + 1.5 + .5 + .5 + 1.5 + 5 + .9)/7 = 11/7
    torch.testing.assert_close(m["loss/ratio_mean"], torch.tensor(11 / 7, dtype=torch.float64))
    torch.testing.assert_close(m["loss/approx_kl"], -R.log().mean())


def test_ppo_dual_clip():
    logp, loss, m = ppo(LossParams(clip_low=0.2, clip_high=0.28, dual_clip=3.0))
    # only token 5 (A=-1, r=5) exceeds -c*A = 3; its gradient is cut too
    expected = torch.tensor([[-1.1, -1.28, -0.5, 0.8, 1.5, 3.0, 1.8]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    assert logp.grad[0, 5].item() == 0.0
    torch.testing.assert_close(m["loss/dualclip_frac"], torch.tensor(1 / 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="dual_clip"):
        LossParams(dual_clip=1.0)


def test_ppo_clip_higher_is_asymmetric():
    r = torch.tensor([[1.25, 0.75]], dtype=torch.float64)
    adv = torch.tensor([1.0], dtype=torch.float64)  # [B] advantage broadcast over tokens
    mask = torch.ones_like(r, dtype=torch.bool)
    # symmetric 0.2: 1.25 -> 1.2 capped; 0.75 (A>0) stays unclipped -> -0.75
    _, loss, _ = ppo(LossParams(), r=r, adv=adv, mask=mask)
    torch.testing.assert_close(loss, torch.tensor([[-1.2, -0.75]], dtype=torch.float64))
    # clip-higher 0.28: 1.25 is inside now
    _, loss, _ = ppo(LossParams(clip_high=0.28), r=r, adv=adv, mask=mask)
    torch.testing.assert_close(loss, torch.tensor([[-1.25, -0.75]], dtype=torch.float64))


def test_masked_tokens_are_zero_with_no_gradient():
    mask = MASK.clone()
    mask[0, 1] = False
    logp, loss, m = ppo(LossParams(clip_high=0.28), mask=mask)
    assert loss[0, 1].item() == 0.0
    loss.sum().backward()
    assert logp.grad[0, 1].item() == 0.0
    # the clip fraction is over the 6 unmasked tokens: only token 3 is clipped now
    torch.testing.assert_close(m["loss/clipfrac"], torch.tensor(1 / 6, dtype=torch.float64))


def test_behaviour_importance_weight_clamp_and_mask():
    r = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    adv = torch.tensor([1.0], dtype=torch.float64)
    mask = torch.ones_like(r, dtype=torch.bool)
    # w = exp(old - behaviour): old - behaviour = [log 2, log .5, 0] -> w = [2, .5, 1]
    behaviour = OLD[:, :3] - torch.tensor([[math.log(2), math.log(0.5), 0.0]], dtype=torch.float64)

    def run(params):
        logp = (OLD[:, :3] + r.log()).requires_grad_(True)
        return POLICY_LOSSES.get("ppo")(logp, OLD[:, :3], adv, mask, params, behaviour)

    # unweighted loss is -1 per token; clamp at 1.5 -> w = [1.5, .5, 1]
    loss, m = run(LossParams(behaviour_is_cap=1.5))
    torch.testing.assert_close(loss, torch.tensor([[-1.5, -0.5, -1.0]], dtype=torch.float64))
    torch.testing.assert_close(m["loss/behaviour_is_mean"], torch.tensor(3.5 / 3, dtype=torch.float64))
    torch.testing.assert_close(m["loss/behaviour_is_capped_frac"], torch.tensor(1 / 3, dtype=torch.float64))
    # mask mode drops the token above the cap -> w = [0, .5, 1]
    loss, _ = run(LossParams(behaviour_is_cap=1.5, behaviour_is_mode="mask"))
    torch.testing.assert_close(loss, torch.tensor([[0.0, -0.5, -1.0]], dtype=torch.float64))
    # no cap -> no correction even though behaviour logprobs are given
    loss, m = run(LossParams())
    torch.testing.assert_close(loss, -torch.ones_like(r))
    assert "loss/behaviour_is_mean" not in m


# ---------------------------------------------------------------- GSPO

# row 0: logp - old = [.1, .2, .3] -> log s = .2 -> s = exp(.2) = 1.221403
# row 1: logp - old = [0, -.1, pad] -> log s = -.05 -> s = exp(-.05) = 0.951229
DELTA = torch.tensor([[0.1, 0.2, 0.3], [0.0, -0.1, 0.0]], dtype=torch.float64)
G_OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.9, -7.0]], dtype=torch.float64)
G_MASK = torch.tensor([[True, True, True], [True, True, False]])
G_ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)


def gspo(params: LossParams):
    logp = (G_OLD + DELTA).requires_grad_(True)
    loss, metrics = POLICY_LOSSES.get("gspo")(logp, G_OLD, G_ADV, G_MASK, params)
    return logp, loss, metrics


def test_gspo_value_is_sequence_ratio():
    _, loss, m = gspo(LossParams(clip_low=0.2, clip_high=0.28))  # both s inside [0.8, 1.28]
    s0, s1 = math.exp(0.2), math.exp(-0.05)
    expected = torch.tensor([[-s0, -s0, -s0], [s1, s1, 0.0]], dtype=torch.float64)  # -A s on each token
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(m["loss/ratio_mean"], torch.tensor((3 * s0 + 2 * s1) / 5, dtype=torch.float64))


def test_gspo_gradient_equals_sequence_objective():
    logp, loss, _ = gspo(LossParams(clip_low=0.2, clip_high=0.28))
    compute_aggregate(loss, G_MASK, "seq-mean-token-mean").backward()
    # direct objective: mean_i -A_i * exp(mean_t (logp - old)) over unmasked tokens
    x = (G_OLD + DELTA).requires_grad_(True)
    m = G_MASK.double()
    s = torch.exp(((x - G_OLD) * m).sum(-1) / m.sum(-1))
    (-(G_ADV * s)).mean().backward()
    torch.testing.assert_close(logp.grad, x.grad)
    assert logp.grad[1, 2].item() == 0.0


def test_gspo_clips_the_sequence_ratio():
    # verl defaults 3e-4/4e-4: s0 = 1.2214 > 1.0004 with A > 0 -> loss -1.0004, no gradient for row 0;
    # s1 = .9512 < .9997 with A < 0 -> loss +.9997, no gradient for row 1
    logp, loss, m = gspo(LossParams(clip_low=3e-4, clip_high=4e-4))
    expected = torch.tensor([[-1.0004] * 3, [0.9997, 0.9997, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    assert torch.count_nonzero(logp.grad).item() == 0
    assert m["loss/clipfrac"].item() == 1.0


def test_gspo_equals_ppo_for_single_token_sequences():
    logp = torch.tensor([[-0.5], [-2.0]], dtype=torch.float64)
    old = torch.tensor([[-0.7], [-1.0]], dtype=torch.float64)
    mask = torch.ones_like(logp, dtype=torch.bool)
    params = LossParams(dual_clip=3.0)
    ppo_loss, _ = POLICY_LOSSES.get("ppo")(logp, old, G_ADV, mask, params)
    gspo_loss, _ = POLICY_LOSSES.get("gspo")(logp, old, G_ADV, mask, params)
    torch.testing.assert_close(ppo_loss, gspo_loss)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        POLICY_LOSSES.get("ppo")(R[0], OLD[0], A[0], MASK[0], LossParams())
    with pytest.raises(ValueError, match="advantages"):
        POLICY_LOSSES.get("ppo")(R, OLD, torch.ones(3), MASK, LossParams())
