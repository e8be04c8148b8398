"""Off-policy policy shaping for spliced tokens (SCOPE, arXiv:2602.24110, with LUFFY's shaping, arXiv:2504.14945).

A rectified rollout is the policy's own prefix followed by an off-policy suffix (``Rollout.off_policy_mask``).
On-policy tokens take the usual clipped PPO term. Off-policy tokens have no behaviour distribution the policy
could be ratio-corrected against (a deterministic reference splice), so they take LUFFY's regularised importance
sampling with pi_off = 1: the per-token loss -A f(pi_theta(t)), f(p) = p / (p + gamma), gamma = 0.1, with no
clipping and no old-policy ratio. f' = gamma / (p + gamma)^2 is large where the policy gives the token a low
probability, so rare but correct suffix tokens get the strongest push.

    compute_scope_loss(logprobs [B, T], old [B, T], advantages [B] or [B, T], mask [B, T], params,
                       behaviour [B, T] | None, *, gamma, off_policy_mask [B, T] bool | None) -> (loss [B, T], metrics)

Without an off-policy mask (no rollout rectified this step) it is exactly ``compute_ppo_loss``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rollwise.algos.losses import LossParams, compute_ppo_loss, masked_mean


def compute_shaped_term(logprobs: Tensor, advantages: Tensor, gamma: float) -> Tensor:
    """-A p / (p + gamma) per token, p = exp(logprobs): [B, T] (advantages already [B, T])."""
    p = torch.exp(logprobs)
    return -advantages * p / (p + gamma)


def compute_scope_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                       params: LossParams, behaviour_logprobs: Tensor | None = None, *, gamma: float = 0.1,
                       off_policy_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO on on-policy tokens, -A p/(p + gamma) on tokens under ``off_policy_mask`` (module docstring)."""
    loss, metrics = compute_ppo_loss(logprobs, old_logprobs, advantages, mask, params, behaviour_logprobs)
    m = mask > 0
    off = torch.zeros_like(m) if off_policy_mask is None else (off_policy_mask > 0) & m  # [B, T]
    metrics["loss/offpolicy_token_frac"] = masked_mean(off.to(logprobs.dtype), m)
    if not bool(off.any()):
        return loss, metrics
    adv = advantages.detach().to(logprobs.dtype)
    adv = (adv.unsqueeze(-1) if adv.dim() == 1 else adv).expand_as(logprobs)  # [B, T]
    shaped = compute_shaped_term(logprobs, adv, gamma)  # [B, T]
    metrics["loss/offpolicy_prob_mean"] = masked_mean(torch.exp(logprobs.detach()), off)
    return torch.where(off, shaped, loss), metrics


compute_scope_loss.needs = frozenset({"off_policy_mask"})  # type: ignore[attr-defined]
compute_scope_loss.zero_at_zero_advantage = True  # type: ignore[attr-defined]  # both terms are A times something
