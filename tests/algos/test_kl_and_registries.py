"""KL estimators (hand values, clamps, unbiasedness) and the algos registries' names and errors."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos import ADVANTAGES, AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES
from rollwise.algos.advantages import compute_grpo_advantages


def test_kl_hand_values():
    logp = torch.tensor([[math.log(0.5), math.log(0.3)]], dtype=torch.float64)
    ref = torch.tensor([[math.log(0.25), math.log(0.3)]], dtype=torch.float64)
    # token 0: log(.5/.25) = ln2 = 0.693147;  token 1: identical -> 0 for every estimator
    ln2 = math.log(2)
    torch.testing.assert_close(KL_ESTIMATORS.get("k1")(logp, ref),
                               torch.tensor([[ln2, 0.0]], dtype=torch.float64))
    # k2 = 0.5 * ln2^2 = 0.240227
    torch.testing.assert_close(KL_ESTIMATORS.get("k2")(logp, ref),
                               torch.tensor([[0.5 * ln2**2, 0.0]], dtype=torch.float64))
    # k3: d = log(.25/.5) = -ln2; exp(d) - d - 1 = 0.5 + 0.693147 - 1 = 0.193147
    k3 = torch.tensor([[0.5 + ln2 - 1, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(KL_ESTIMATORS.get("k3")(logp, ref), k3)
    torch.testing.assert_close(KL_ESTIMATORS.get("low_var_kl")(logp, ref), k3)


def test_k3_clamps_like_verl():
    logp = torch.tensor([[-40.0, 0.0]])
    ref = torch.tensor([[0.0, -40.0]])
    # token 0: d = 40 -> 20 -> e^20 - 21, clamped to 10;  token 1: d = -40 -> -20 -> e^-20 + 19, clamped to 10
    torch.testing.assert_close(KL_ESTIMATORS.get("k3")(logp, ref), torch.tensor([[10.0, 10.0]]))


def test_k3_is_nonnegative_and_unbiased():
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    true_kl = float((p * (p / q).log()).sum())  # KL(p || q) = 0.274887
    y = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    k3 = KL_ESTIMATORS.get("k3")(p.log()[y][None], q.log()[y][None])
    assert (k3 >= 0).all()
    assert abs(k3.mean().item() - true_kl) < 5e-3
    assert abs(KL_ESTIMATORS.get("k1")(p.log()[y][None], q.log()[y][None]).mean().item() - true_kl) < 5e-3


def test_k3_gradient_vanishes_at_reference():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    KL_ESTIMATORS.get("k3")(logp, logp.detach().clone()).sum().backward()
    assert torch.count_nonzero(logp.grad).item() == 0


def test_registered_names():
    assert ADVANTAGES.names() == ["dr_grpo", "grpo", "hapo", "mc_grpo", "pool_baseline", "precomputed", "rloo",
                                  "xrpo"]
    assert POLICY_LOSSES.names() == ["gspo", "hapo", "ppo", "scope"]
    assert AGGREGATIONS.names() == ["seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm",
                                    "token-mean"]
    assert KL_ESTIMATORS.names() == ["k1", "k2", "k3", "low_var_kl"]
    assert ADVANTAGES.doc("grpo").startswith("GRPO")


def test_duplicate_name_raises():
    with pytest.raises(KeyError, match="already registered"):
        ADVANTAGES.register("grpo", compute_grpo_advantages)


@pytest.mark.parametrize("registry, options", [(ADVANTAGES, "dr_grpo, grpo"), (POLICY_LOSSES, "gspo, hapo, ppo, scope"),
                                               (KL_ESTIMATORS, "k1, k2, k3")])
def test_unknown_name_lists_options(registry, options):
    with pytest.raises(KeyError, match=options):
        registry.get("qqqq")
