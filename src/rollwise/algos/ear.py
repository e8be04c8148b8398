"""ETTRL's entropy-based advantage reshaping, EAR (Liu et al., arXiv:2508.11356), for label-free test-time RL.

Per prompt group of trained rollouts, with H_i the mean token entropy of rollout i under pi_old and H_bar the
group's mean of H_i:

    Y_i = 1 + (H_bar - H_i) / H_bar            A_hat[i, t] = Y_i * A[i, t]

Confident (low-entropy) rollouts are amplified (Y > 1) and uncertain ones damped (Y < 1), which slows the early
reinforcement of a wrong majority pseudo-label carried by a few lucky, high-entropy rollouts. Choices (the spec's
source is the paper via notes, no code): the entropy is the full-vocabulary entropy at the training temperature
over each rollout's completion tokens; a group with H_bar = 0 (every token deterministic) keeps Y = 1; the
formula is applied as written, so Y < 0 (H_i > 2 H_bar) flips a rollout's advantage unless ``min_scale`` floors
Y (None = as written; the share is logged). Y makes a group's advantages no longer sum to zero: the mean of
sum_i A_hat_i (A_hat_i: rollout i's mean token advantage) over groups is logged, as the spec asks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rollwise.algos.catalog import EarKnobs
from rollwise.algos.losses import masked_mean
from rollwise.algos.shaping import ShapingContext, _knobs


def compute_ear_scale(entropy: Tensor, mask: Tensor, group_index: Tensor, min_scale: float | None = None) -> Tensor:
    """Y [B] from token entropies ``entropy`` [B, T] on ``mask`` [B, T] and groups ``group_index`` [B]."""
    m = mask.float()
    h = (entropy.float() * m).sum(-1) / m.sum(-1).clamp(min=1)  # [B] mean token entropy H_i
    groups, inv = torch.unique(group_index, return_inverse=True)  # inv [B]
    h_sum = torch.zeros(len(groups), dtype=h.dtype, device=h.device).index_add_(0, inv, h)  # [G]
    n = torch.zeros(len(groups), dtype=h.dtype, device=h.device).index_add_(0, inv, torch.ones_like(h))  # [G]
    h_bar = (h_sum / n)[inv]  # [B] the row's group mean
    y = torch.where(h_bar > 0, 1.0 + (h_bar - h) / h_bar.clamp(min=1e-12), torch.ones_like(h))  # [B]
    return y.clamp(min=min_scale) if min_scale is not None else y


def shape_ear(ctx: ShapingContext, params: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """EAR: every token advantage of rollout i times Y_i (module docstring)."""
    p = _knobs(params, EarKnobs, "ear")
    if ctx.entropy is None or ctx.group_index is None:
        raise ValueError("shaper 'ear' needs ctx.entropy and ctx.group_index")
    y = compute_ear_scale(ctx.entropy, ctx.mask, ctx.group_index.to(ctx.mask.device), p.min_scale)  # [B]
    out = ctx.advantages * y[:, None].to(ctx.advantages.dtype)  # [B, T]
    row_adv = (out * ctx.mask).sum(-1) / ctx.mask.sum(-1).clamp(min=1)  # [B] A_hat_i
    _, inv = torch.unique(ctx.group_index.to(ctx.mask.device), return_inverse=True)
    sums = torch.zeros(int(inv.max()) + 1 if inv.numel() else 0, dtype=row_adv.dtype,
                       device=row_adv.device).index_add_(0, inv, row_adv)  # [G] sum_i A_hat_i
    zero = ctx.mask.new_zeros(())
    return out, {"loss/ear_scale_min": y.min() if y.numel() else zero,
                 "loss/ear_scale_max": y.max() if y.numel() else zero,
                 "loss/ear_negative_share": (y < 0).float().mean() if y.numel() else zero,
                 "loss/ear_group_adv_sum_mean": sums.mean() if sums.numel() else zero,
                 "loss/ear_adv_abs_mean": masked_mean(out.abs(), ctx.mask)}


shape_ear.needs = frozenset({"entropy"})  # type: ignore[attr-defined]
