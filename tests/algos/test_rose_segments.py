"""ROSE's segment advantage (algos/rose.py, shaper ``rose_segments``): a hand-built tree of 4 responses with its
values computed by hand, the length-aware penalty, the reduction to R - mean R without branching, a rollout whose
parent was filtered out, and the branch score on a constructed top-k + embedding case."""

from __future__ import annotations

import math

import pytest
import torch

from rollwise.algos import SHAPERS
from rollwise.algos.rose import compute_branch_points, compute_branch_scores, shape_rose_segments
from rollwise.algos.shaping import ShapingContext

# r0 root (L 10, R 1); r1 branches from r0 at 4 (L 8, R 0); r2 from r1 at 6 (L 9, R 1); r3 a root restart (L 5, R 0)
TREE = [dict(tree=7, node=0, parent=-1, branch_pos=0), dict(tree=7, node=1, parent=0, branch_pos=4),
        dict(tree=7, node=2, parent=1, branch_pos=6), dict(tree=7, node=3, parent=-1, branch_pos=0)]
LENGTHS, REWARDS = [10, 8, 9, 5], [1.0, 0.0, 1.0, 0.0]


def ctx_for(lengths, rewards, groups, meta, T=10):
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).float()
    return ShapingContext(torch.zeros(len(lengths), T), mask, torch.zeros(len(lengths), T),
                          rewards=torch.tensor(rewards), group_index=torch.tensor(groups), meta=meta)


def expected_tree() -> torch.Tensor:
    """K: r0 {0, 4} (r1's branch point lies on its path), r1 {0, 4, 6}, r2 {0, 4, 6}, r3 {0}.
    V(0) = mean(1, 0, 1, 0) = 1/2, V(4) = mean over r0..r2 = 2/3, V(6) = mean(r1, r2) = 1/2."""
    v0, v4, v6 = 0.5, 2 / 3, 0.5
    A = torch.zeros(4, 10)
    A[0, :4], A[0, 4:10] = v4 - v0, 1 - v4
    A[1, :4], A[1, 4:6], A[1, 6:8] = v4 - v0, v6 - v4, 0 - v6
    A[2, :4], A[2, 4:6], A[2, 6:9] = v4 - v0, v6 - v4, 1 - v6
    A[3, :5] = 0 - v0
    return A


def test_branch_points_by_hand():
    assert compute_branch_points([-1, 0, 1, -1], [0, 4, 6, 0]) == [{0, 4}, {0, 4, 6}, {0, 4, 6}, {0}]
    # a grandchild branching (at 3) before its parent's branch point (6) lies on the grandparent's path too; as in
    # ROSE's code it also keeps its ancestors' positions past its own branch point (6 for r2)
    assert compute_branch_points([-1, 0, 1], [0, 6, 3]) == [{0, 3, 6}, {0, 3, 6}, {0, 3, 6}]


def test_segment_advantages_on_a_hand_built_tree():
    order = [2, 0, 3, 1]  # rows shuffled: the shaper links them through the meta, not the row order
    ctx = ctx_for([LENGTHS[i] for i in order], [REWARDS[i] for i in order], [0] * 4, [TREE[i] for i in order])
    adv, metrics = shape_rose_segments(ctx, {})
    torch.testing.assert_close(adv, expected_tree()[order])
    assert metrics["loss/rose_branch_points_mean"] == pytest.approx((1 + 2 + 2 + 0) / 4)


def test_length_penalty_by_hand():
    """lambda = 1: the shortest correct response is r2 (L 9); r0 (L 10) shares K = {0, 4} with it, so k_c = 4 and
    f = 1 - (9 - 4) / (10 - 4) = 1/6: r0's tokens 4..9 keep 5/6 of their advantage."""
    ctx = ctx_for(LENGTHS, REWARDS, [0] * 4, TREE)
    adv, _ = shape_rose_segments(ctx, {"length_penalty": 1.0})
    want = expected_tree()
    want[0, 4:10] *= 5 / 6
    torch.testing.assert_close(adv, want)
    with pytest.raises(ValueError, match="unknown params"):
        shape_rose_segments(ctx, {"lam": 1.0})


def test_no_branching_reduces_to_dr_grpo_and_groups_stay_apart():
    """Plain rollouts (no meta) and root restarts only: A = R - mean R of the group, on every real token."""
    lengths, rewards, groups = [3, 5, 2, 4, 6], [1.0, 0.0, 0.0, 0.5, 1.0], [0, 0, 0, 1, 1]
    meta = [{}, {}, {}, dict(tree=1, node=0, parent=-1, branch_pos=0), dict(tree=1, node=1, parent=-1, branch_pos=0)]
    ctx = ctx_for(lengths, rewards, groups, meta, T=6)
    adv, _ = shape_rose_segments(ctx, {})
    mean = {0: 1 / 3, 1: 0.75}
    want = torch.stack([(r - mean[g]) * ctx.mask[i] for i, (r, g) in enumerate(zip(rewards, groups))])
    torch.testing.assert_close(adv, want)


def test_missing_parent_is_a_root():
    """r1's parent (node 0) was filtered out of the batch: r1 and r2 form the tree, r1 as its root."""
    meta = [TREE[1], TREE[2]]
    adv, _ = shape_rose_segments(ctx_for([8, 9], [0.0, 1.0], [0, 0], meta), {})
    v0, v6 = 0.5, 0.5  # K: r1 {0, 6}, r2 {0, 6}
    want = torch.zeros(2, 10)
    want[0, :6], want[0, 6:8] = v6 - v0, 0 - v6
    want[1, :6], want[1, 6:9] = v6 - v0, 1 - v6
    torch.testing.assert_close(adv, want)


def test_registered():
    assert SHAPERS.get("rose_segments") is shape_rose_segments
    assert SHAPERS.config("rose_segments")().length_penalty == 0.0


def test_branch_scores_by_hand():
    """p = (0.5, 0.3, 0.2) on rows e0 = (2, 0), e1 = (1, 0), e2 = (0, 3) (normalised: cos 1, 0, 0), plus a padding
    entry: F = 2 (0.5 * 0.3) = 0.3 (= ||(0.8, 0.2)||^2 - 0.38), H = -sum p log p."""
    emb = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    ids = torch.tensor([[0, 1, 2, -1]])
    lps = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2), float("-inf")]])
    H = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert compute_branch_scores(ids, lps, None, "entropy").item() == pytest.approx(H)
    assert compute_branch_scores(ids, lps, emb, "cosine").item() == pytest.approx(-0.3)
    assert compute_branch_scores(ids, lps, emb, "cosine-entropy").item() == pytest.approx(-0.3 * H)
    with pytest.raises(ValueError, match="embedding"):
        compute_branch_scores(ids, lps, None, "cosine")
