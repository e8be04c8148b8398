"""HAPO on hand-derived values: the entropy normalisation (and its sign), the token-level group average with its
GRPO fallback, and the loss's adaptive clip ranges and advantage redistribution."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos import ADVANTAGES, POLICY_LOSSES, AdvantageContext, LossParams, needs_of
from rollwise.algos.hapo import EntropyNorm, apply_entropy_norm, compute_entropy_h, compute_hapo_clip_ranges

EPS = 1e-6


def test_entropy_h_hand_values_and_sign():
    # log H = [-2, -1, 0, 1, 3] on the mask, plus a masked-out huge entropy that must not count
    log_h = torch.tensor([[-2.0, -1.0, 0.0], [1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    h, norm = compute_entropy_h(log_h.exp(), mask, pivot=0.8)
    # pivot: nearest rank round(0.8 * 4) + 1 = 4th smallest = 1; d = [-3, -2, -1, 0, 2]
    # std = sqrt(mean d^2) = sqrt(18 / 5); z = d / std; max z+ = 2 / std, min z- = -3 / std
    std = math.sqrt(3.6)
    assert norm.as_dict() == pytest.approx(EntropyNorm(1.0, std, std / 2, std / 3).as_dict())
    # the lowest entropy maps to -1 (the released code's 1/min(z) would give +1 there), the highest to +1
    expected = torch.tensor([[-1.0, -2 / 3, -1 / 3], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(h, expected)


def test_entropy_norm_applied_to_new_tokens_clamps():
    norm = EntropyNorm(1.0, math.sqrt(3.6), math.sqrt(3.6) / 2, math.sqrt(3.6) / 3)
    got = apply_entropy_norm(torch.tensor([5.0, -5.0, 0.0, 3.0]).exp(), norm)
    # d = [4, -6, -1, 2] -> [2, -2, -1/3, 1] -> clamped to [-1, 1]
    torch.testing.assert_close(got, torch.tensor([1.0, -1.0, -1 / 3, 1.0]))


def test_entropy_h_empty_mask():
    h, norm = compute_entropy_h(torch.ones(2, 3), torch.zeros(2, 3))
    assert h.abs().sum() == 0 and norm == EntropyNorm(0.0, 1.0, 1.0, 1.0)


def test_hapo_advantage_token_average_and_grpo_fallback():
    # g0 rows 0-2: r = [1, 0, 0], L = [2, 4, 4]: mu = 2/10 = 0.2, var = (2 * 0.64 + 8 * 0.04)/10 = 0.16 -> 0.4
    #   A = [0.8, -0.2, -0.2] / 0.4 = [2, -0.5, -0.5] (max 2 < 5: kept)
    # g1 rows 3-6: r = [1, 0, 0, 0], L = [1, 30, 30, 30]: mu = 1/91, sigma = sqrt(90)/91 -> A_3 = sqrt(90) = 9.49
    #   >= 5: GRPO instead, mean 0.25, Bessel std 0.5 -> [1.5, -0.5, -0.5, -0.5]
    # g2 row 7: size 1 -> mu = r -> 0;  g3 rows 8-9: equal rewards -> 0
    r = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1, 1, 1], dtype=torch.float64)
    gi = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 3, 3])
    lengths = torch.tensor([2, 4, 4, 1, 30, 30, 30, 3, 5, 7])
    out = ADVANTAGES.get("hapo")(r, gi, AdvantageContext(4, lengths=lengths)).advantages
    expected = [0.8 / (0.4 + EPS), -0.2 / (0.4 + EPS), -0.2 / (0.4 + EPS),
                0.75 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS), 0.0, 0.0, 0.0]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    # a higher threshold keeps g1's token-level advantage
    kept = ADVANTAGES.get("hapo")(r, gi, AdvantageContext(4, lengths=lengths, params={"fallback_abs": 10.0}))
    assert kept.advantages[3].item() == pytest.approx(math.sqrt(90), rel=1e-5)
    with pytest.raises(ValueError, match="lengths"):
        ADVANTAGES.get("hapo")(r, gi, AdvantageContext(4))


def test_hapo_clip_ranges():
    lo, hi = compute_hapo_clip_ranges(torch.tensor([0.5, -0.5, 1.0, -1.0, 0.0]), 0.2, 0.2, alpha=1.0)
    torch.testing.assert_close(lo, torch.tensor([0.2, 0.3, 0.2, 0.4, 0.2]))  # low entropy widens the lower side
    torch.testing.assert_close(hi, torch.tensor([0.3, 0.2, 0.4, 0.2, 0.2]))  # high entropy widens the upper side


def test_hapo_loss_redistribution_and_clipping_hand_values():
    ratio = torch.tensor([[1.05, 0.9, 1.5, 0.7, 1.5]], dtype=torch.float64)
    h = torch.tensor([[0.5, -0.5, 1.0, -1.0, 1.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0]], dtype=torch.float64)
    old = torch.zeros_like(ratio)
    mask = torch.ones_like(ratio)
    params = LossParams(clip_low=0.2, clip_high=0.2)
    loss, metrics = POLICY_LOSSES.get("hapo")(ratio.log(), old, adv, mask, params, entropy=h)
    # t0 high, Z = (0.9, 1.15), r inside -> A = 1, eps_hi 0.3: -min(1.05, 1.05) = -1.05
    # t1 low, eps_lo 0.3, Z = (0.85, 1.1), r inside -> A^e = 1 (1 - 0.5) = 0.5: -0.9 * 0.5 = -0.45
    # t2 high, eps_hi 0.4, Z = (0.9, 1.2), r outside -> A^e = -2: max(3.0, 2.8) = 3.0
    # t3 low, eps_lo 0.4, Z = (0.8, 1.1), r outside -> A = -1; clip at 0.6 (not 0.8): max(0.7, 0.7) = 0.7
    # t4 high, outside -> A^e = 2, clipped at 1.4: -min(3.0, 2.8) = -2.8
    torch.testing.assert_close(loss, torch.tensor([[-1.05, -0.45, 3.0, 0.7, -2.8]], dtype=torch.float64))
    assert metrics["loss/hapo_redistributed_frac"].item() == pytest.approx(3 / 5)
    assert metrics["loss/clipfrac"].item() == pytest.approx(1 / 5)


def test_hapo_loss_without_its_parts_is_ppo():
    g = torch.Generator().manual_seed(0)
    logp, old = -torch.rand(3, 4, generator=g), -torch.rand(3, 4, generator=g)
    adv, h = torch.randn(3, generator=g), torch.rand(3, 4, generator=g) * 2 - 1
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    params = LossParams(clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    plain, _ = POLICY_LOSSES.get("hapo")(logp, old, adv, mask, params, entropy=h, adaptive_clip=False,
                                         adaptive_advantage=False)
    ppo, _ = POLICY_LOSSES.get("ppo")(logp, old, adv, mask, params)
    torch.testing.assert_close(plain, ppo)
    zero, _ = POLICY_LOSSES.get("hapo")(logp, old, adv, mask, params, entropy=torch.zeros_like(h))
    torch.testing.assert_close(zero, ppo)  # h = 0 everywhere: nothing to adapt


def test_hapo_loss_declares_entropy_and_refuses_without_it():
    fn = POLICY_LOSSES.get("hapo")
    assert needs_of(fn) == {"entropy"} and callable(fn.prepare)
    with pytest.raises(ValueError, match="entropy"):
        fn(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2), LossParams())


def test_entropy_stats_losses_declare_a_prepare_step():
    from rollwise.algos.catalog import ENTROPY_STATS_LOSSES

    for name in ENTROPY_STATS_LOSSES:
        fn = POLICY_LOSSES.get(name)
        assert "entropy" in needs_of(fn) and callable(fn.prepare)
