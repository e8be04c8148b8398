"""ROSE's math (Zhao et al., "Reinforced Efficient Reasoning via Semantically Diverse Exploration",
arXiv:2601.05053; ZiqiZhao1/ROSE-rl @2142dc7): the branch score of the rollout (vllm_rollout_spmd.py) and the
length-aware segment advantage (``compute_grpo_iterative_branching_outcome_advantage`` in core_algos.py).

Segment advantage, per prompt group, from each rollout's tree metadata (parent rollout, branch position k: the
rollout copies its parent's first k tokens and resamples from position k):

1. K_b = {0} + the branch positions of b and its ancestors; a descendant's branch position k is added to each
   ancestor up its chain while k <= the branch position of the rollout it passes through (k lies on that path);
   then, parents first, b inherits its parent's positions below its own branch position. As in ROSE's code, the
   ancestors' positions are kept even past b's own branch point (where b no longer shares their prefix).
2. V(k) = mean final reward of the group's rollouts whose K contains k. As in ROSE's code, positions are pooled
   by value within the group: two subtrees that branch at the same k share one V(k).
3. With 0 = k_0 < ... < k_m the points of K_b up to L_b, tokens in [k_j, k_{j+1}) get V(k_{j+1}) - V(k_j) and the
   last segment R_b - V(k_m). No std normalisation; with no branching this is R_b - mean R (Dr.GRPO).
4. Length-aware penalty (lambda > 0): s = the group's shortest correct rollout (reward > 0; ROSE tests
   |R| > 1e-6, the same for 0/1 rewards); for every other correct b, k_c = the largest position of K_s and K_b up to
   min(L_s, L_b) (0 if none), f = 1 - ((L_s - k_c) / (L_b - k_c))^lambda, and A[b, k_c:L_b] -= |A| f.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rollwise.algos.catalog import RoseSegmentsKnobs
from rollwise.algos.losses import masked_mean
from rollwise.algos.shaping import ShapingContext, _knobs

BRANCH_METRICS = ("cosine-entropy", "entropy", "cosine")


def compute_branch_scores(topk_ids: Tensor, topk_logprobs: Tensor, embeddings: Tensor | None,
                          metric: str = "cosine-entropy") -> Tensor:
    """ROSE's branch score per position [C] from the top-k candidates ``topk_ids`` / ``topk_logprobs`` [C, k].

    H = -sum_j p_j log p_j over the top-k (truncated entropy); F = ||sum_j p_j e_j||^2 - sum_j p_j^2 with e_j the
    L2-normalised input-embedding rows (``embeddings`` [V, d]), i.e. sum_{i != j} p_i p_j cos(e_i, e_j). Scores:
    ``entropy`` H, ``cosine`` -F, ``cosine-entropy`` -F H. Entries with id < 0 or logprob -inf are padding.
    """
    if metric not in BRANCH_METRICS:
        raise ValueError(f"unknown branch metric {metric!r}; choose one of {BRANCH_METRICS}")
    lp = topk_logprobs.float()
    valid = (topk_ids >= 0) & torch.isfinite(lp)  # [C, k]
    p = torch.where(valid, lp.exp(), torch.zeros_like(lp))  # [C, k]
    H = -torch.where(valid, p * lp, torch.zeros_like(lp)).sum(-1)  # [C]
    if metric == "entropy":
        return H
    if embeddings is None:
        raise ValueError(f"branch metric {metric!r} needs the input-embedding matrix")
    e = F.normalize(embeddings.detach().float()[topk_ids.clamp(min=0)], dim=-1)  # [C, k, d]
    y = (p[..., None] * e).sum(-2)  # [C, d]
    sim = (y * y).sum(-1) - (p * p).sum(-1)  # [C]: sum_{i != j} p_i p_j cos_ij
    return -sim if metric == "cosine" else -sim * H


def compute_branch_points(parent: list[int], branch_pos: list[int]) -> list[set[int]]:
    """K_b of each rollout of one group (``parent`` indexes the group, -1 = root; parents come first)."""
    n = len(parent)
    K = [{0} for _ in range(n)]
    for b in range(n):  # own and ancestors' branch positions
        cur = b
        while parent[cur] >= 0:
            K[b].add(branch_pos[cur])
            cur = parent[cur]
    for b in range(n):  # a descendant's branch position lies on each ancestor's path up to where it branched
        k, cur = branch_pos[b], parent[b]
        while cur >= 0:
            K[cur].add(k)
            if parent[cur] < 0 or k > branch_pos[cur]:
                break
            cur = parent[cur]
    for b in range(n):  # then inherit the parent's positions before the own branch point
        if parent[b] >= 0:
            K[b] |= {k for k in K[parent[b]] if k < branch_pos[b]}
    return K


def compute_rose_segment_advantages(rewards: Tensor, lengths: Tensor, parent: list[int], branch_pos: list[int],
                                    width: int, length_penalty: float = 0.0) -> tuple[Tensor, list[set[int]]]:
    """Segment advantages [n, width] of one group (rewards and lengths [n]) and each rollout's K_b."""
    n = len(parent)
    K = compute_branch_points(parent, branch_pos)
    R = rewards.tolist()
    L = [int(x) for x in lengths.tolist()]
    V: dict[int, float] = {}
    for k in set().union(*K) if K else set():
        vals = [R[b] for b in range(n) if k in K[b]]
        V[k] = sum(vals) / len(vals)
    adv = torch.zeros((n, width), dtype=rewards.dtype)
    for b in range(n):
        points = sorted(k for k in K[b] if k <= L[b])
        if points[-1] != L[b]:
            points.append(L[b])
        for k0, k1 in zip(points, points[1:]):
            adv[b, k0:k1] = (R[b] if k1 == L[b] else V[k1]) - V[k0]
    if length_penalty > 0:
        correct = [b for b in range(n) if R[b] > 0 and L[b] > 0]
        if len(correct) > 1:
            s = min(correct, key=lambda b: L[b])
            for b in correct:
                if b == s:
                    continue
                common = [k for k in K[s] & K[b] if k <= min(L[b], L[s])]
                kc = max(common, default=0)
                if L[b] - kc <= 0:
                    continue
                f = 1.0 - (max(L[s] - kc, 0) / (L[b] - kc)) ** length_penalty
                if f > 0:
                    adv[b, kc : L[b]] -= adv[b, kc : L[b]].abs() * f
    return adv, K


def _tree_links(meta: list[dict[str, Any]], rows: list[int]) -> tuple[list[int], list[int]]:
    """Parent (index into ``rows``, -1 = root) and branch position of each row from its tree meta; a rollout whose
    parent is not in the group (filtered out) is treated as a root."""
    where = {(meta[r].get("tree"), meta[r].get("node")): j for j, r in enumerate(rows) if "node" in meta[r]}
    parent, pos = [], []
    for r in rows:
        m = meta[r]
        p = where.get((m.get("tree"), m.get("parent", -1)), -1) if m.get("parent", -1) >= 0 else -1
        parent.append(p)
        pos.append(int(m.get("branch_pos", 0)) if p >= 0 else 0)
    return parent, pos


def shape_rose_segments(ctx: ShapingContext, params: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """ROSE's length-aware segment advantage (arXiv:2601.05053): replaces every row's per-token advantages with
    its group tree's segment values (rows without tree meta are roots, so a group of plain rollouts gets
    R - mean R)."""
    p = _knobs(params, RoseSegmentsKnobs, "rose_segments")
    if ctx.rewards is None or ctx.group_index is None or ctx.meta is None:
        raise ValueError("shaper 'rose_segments' needs ctx.rewards, ctx.group_index and ctx.meta")
    B, T = ctx.mask.shape
    lengths = ctx.mask.sum(-1).long().cpu()  # [B]
    rewards = ctx.rewards.detach().float().cpu()  # [B]
    out = torch.zeros((B, T), dtype=torch.float32)
    points = torch.zeros(B)
    gidx = ctx.group_index.cpu()
    for g in gidx.unique().tolist():
        rows = (gidx == g).nonzero().squeeze(-1).tolist()
        rows.sort(key=lambda r: (str(ctx.meta[r].get("tree", "")), ctx.meta[r].get("node", 0)))  # parents first
        parent, pos = _tree_links(ctx.meta, rows)
        adv, K = compute_rose_segment_advantages(rewards[rows], lengths[rows], parent, pos, T, p.length_penalty)
        out[rows] = adv
        points[rows] = torch.tensor([float(len(k) - 1) for k in K])
    out = out.to(ctx.advantages.device, ctx.advantages.dtype) * ctx.mask
    return out, {"loss/rose_branch_points_mean": points.mean() if B else points.new_zeros(()),
                 "loss/rose_adv_abs_mean": masked_mean(out.abs(), ctx.mask)}
