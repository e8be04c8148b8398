"""D3S token-level down-sampling: train only the top-K share of tokens by |A| * entropy.

Spec: ``shared/methods/sampling.md`` section 11. The entropy is the full-vocabulary entropy from the training
forward pass (reuse it, do not recompute). Dropped tokens leave the loss mask, so a token-mean loss divides by
the kept tokens; the schedule of K comes from the sampler (``D3sDownsampler.token_fraction``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def compute_d3s_token_mask(advantages: Tensor, entropy: Tensor, mask: Tensor, keep_fraction: float) -> Tensor:
    """Boolean mask [B, T] keeping exactly ceil(keep_fraction * #valid) valid tokens of the whole batch, those
    with the largest |A| * H (ties: the earlier token in row-major order).

    advantages: [B] per sequence or [B, T] per token; entropy: [B, T]; mask: [B, T] valid-token mask.
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    if entropy.shape != mask.shape or entropy.dim() != 2:
        raise ValueError(f"entropy and mask must both be [B, T]; got {tuple(entropy.shape)}, "
                         f"{tuple(mask.shape)}")
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    if advantages.dim() != 2 or advantages.shape[0] != entropy.shape[0]:
        raise ValueError(f"advantages must be [B] or [B, T] with B={entropy.shape[0]}, "
                         f"got {tuple(advantages.shape)}")
    valid = mask.bool()
    n_valid = int(valid.sum())
    k = min(n_valid, math.ceil(keep_fraction * n_valid - 1e-9))
    if k >= n_valid:
        return valid.clone()
    with torch.no_grad():
        score = (advantages.abs() * entropy).float().expand_as(entropy)  # [B, T]
        score = score.masked_fill(~valid, -math.inf).flatten()  # [B*T]
        top = torch.sort(score, descending=True, stable=True).indices[:k]
        keep = torch.zeros_like(score, dtype=torch.bool)
        keep[top] = True
    return keep.view_as(valid)
