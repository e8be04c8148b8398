"""PivotRL's pivot filter and UI-S1's returns, advantages and group filter on hand-computed cases
(algos/step_methods.py)."""

from __future__ import annotations

import pytest
import torch

from rollwise.algos.step_methods import (
    compute_precomputed_advantages,
    pivot_keep,
    pivot_stats,
    step_returns,
    uis1_advantages,
    uis1_keep_tasks,
)


def test_pivot_variance_filter_by_hand() -> None:
    r = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    mu, var = pivot_stats(r)
    assert mu.tolist() == [1.0, 0.0, 0.25, 0.75, 0.5]
    assert var.tolist() == [0.0, 0.0, 0.1875, 0.1875, 0.25]  # population variance mu (1 - mu)
    # all-correct and all-wrong dropped; 0.75 is not below lambda_diff 0.75
    assert pivot_keep(r, 0.75).tolist() == [False, False, True, False, True]
    assert pivot_keep(r, 0.8).tolist() == [False, False, True, True, True]


def test_returns_break_at_a_mismatch() -> None:
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    m = torch.tensor([True, True, False, True, True])
    # backwards: 1; 1 + .5 * 1 = 1.5; mismatch -> 0 and the chain restarts; 1 + .5 * 0 = 1; 1 + .5 * 1 = 1.5
    assert step_returns(r, m, 0.5).tolist() == [1.5, 1.0, 0.0, 1.5, 1.0]
    # without the break step 1 would have seen 1 + .5 * (0 + .5 * 1.5) = 1.375
    assert step_returns(r, torch.ones(5, dtype=torch.bool), 0.5).tolist() == [1.6875, 1.375, 0.75, 1.5, 1.0]


def _constructed() -> dict[str, torch.Tensor]:
    """Task 0: rollout A r = [1, 1, 0] (third step mismatched), rollout B r = [1, 0, 1] (second mismatched);
    task 1: one rollout of one step, r = [1]. gamma 0.5: G_A = [1.5, 1, 0], G_B = [1, 0, 1], G_C = [1]."""
    ra, rb = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0])
    ga = step_returns(ra, ra > 0, 0.5)
    gb = step_returns(rb, rb > 0, 0.5)
    assert ga.tolist() == [1.5, 1.0, 0.0] and gb.tolist() == [1.0, 0.0, 1.0]
    return {"returns": torch.cat([ga, gb, torch.tensor([1.0])]), "step_rewards": torch.cat([ra, rb, torch.ones(1)]),
            "rollout_index": torch.tensor([0, 0, 0, 1, 1, 1, 2]), "task_index": torch.tensor([0, 0, 0, 0, 0, 0, 1]),
            "step_index": torch.tensor([0, 1, 2, 0, 1, 2, 0])}


def test_uis1_advantages_by_hand() -> None:
    x = _constructed()
    # A_step (mean_norm): step 0 [1.5, 1] -> +-.25; step 1 [1, 0] -> +-.5; step 2 [0, 1] -> -+.5; task 1's lone step 0
    # A_ep immediate (mean_norm): task 0's six scores, mean 4/6: 1 -> 1/3, 0 -> -2/3; task 1 alone keeps its raw 1
    got = uis1_advantages(**x, episode="immediate", mode="mean_norm")
    want = [0.25 + 1 / 3, 0.5 + 1 / 3, -0.5 - 2 / 3, -0.25 + 1 / 3, -0.5 - 2 / 3, 0.5 + 1 / 3, 1.0]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # the 'return' reading: both task-0 rollouts return 2 -> A_ep 0; task 1's lone rollout keeps its raw return 1
    got = uis1_advantages(**x, episode="return", mode="mean_norm")
    assert got.tolist() == pytest.approx([0.25, 0.5, -0.5, -0.25, -0.5, 0.5, 1.0], abs=1e-6)
    # mean_std_norm: every task-0 step group is two values -> +-1; the immediate scores' std is sqrt(2)/3
    got = uis1_advantages(**x, episode="immediate", mode="mean_std_norm", w_ep=0.0)
    assert got.tolist() == pytest.approx([1, 1, -1, -1, -1, 1, 0], abs=1e-4)
    got = uis1_advantages(**x, episode="immediate", mode="mean_std_norm", w_step=0.0)
    s = (2 ** 0.5) / 3
    assert got.tolist() == pytest.approx([1 / 3 / s, 1 / 3 / s, -2 / 3 / s, 1 / 3 / s, -2 / 3 / s, 1 / 3 / s, 1.0],
                                         abs=1e-4)
    with pytest.raises(ValueError, match="episode reading"):
        uis1_advantages(**x, episode="sum")


def test_uis1_group_filter_by_hand() -> None:
    g0 = torch.tensor([1.5, 1.0, 2.0, 0.0, 1.0, 0.7])
    task = torch.tensor([0, 0, 1, 1, 2, 3])
    # task 0: std .25 <= .3 dropped; task 1: std 1 kept; task 2 and 3: one rollout each, kept
    assert uis1_keep_tasks(g0, task, 0.3).tolist() == [False, False, True, True, True, True]


def test_precomputed_advantages_pass_rewards_through() -> None:
    r = torch.tensor([0.5, -1.0, 2.0])
    assert compute_precomputed_advantages(r, torch.tensor([0, 0, 1]), None).advantages.tolist() == [0.5, -1.0, 2.0]
