"""PROPS's behaviour-policy objective (Corrado & Hanna, arXiv:2311.08290), on tokens.

With r = pi_phi(a|s) / pi_theta(a|s) over the (state, action) pairs already sampled, PROPS minimises

    L(phi) = mean_tokens[ max(r, clip(r, 1 - eps, 1 + eps)) ] + lambda * KL(pi_phi || pi_theta)

PPO's clipped surrogate with every advantage set to -1: it pushes down the probability of actions already in the
buffer, stops pushing once r < 1 - eps (the clipped branch is constant there) and keeps pushing above 1 + eps.
The behaviour update stops early once ``approx_kl`` = mean[(r - 1) - log r] exceeds the target, checked before
each step (the PROPS repository's ``props_update``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_props_loss(logp_phi: Tensor, logp_theta: Tensor, mask: Tensor, clip: float,
                       kl: Tensor | None = None, lam: float = 0.0) -> Tensor:
    """The objective above, a mean over the tokens in ``mask`` ([N, T] each; ``kl`` [N, T] the per-token
    full-vocabulary KL(pi_phi || pi_theta), used when ``lam`` > 0)."""
    r = torch.exp(logp_phi - logp_theta.detach())  # [N, T]
    surrogate = torch.maximum(r, r.clamp(1.0 - clip, 1.0 + clip))  # [N, T]
    n = mask.sum().clamp(min=1)
    loss = (surrogate * mask).sum() / n
    if lam > 0 and kl is not None:
        loss = loss + lam * (kl * mask).sum() / n
    return loss


def compute_approx_kl(logp_phi: Tensor, logp_theta: Tensor, mask: Tensor) -> Tensor:
    """mean[(r - 1) - log r] over the tokens in ``mask`` ([N, T]): the early-stop statistic (>= 0)."""
    log_r = (logp_phi - logp_theta).detach()
    return (((log_r.exp() - 1) - log_r) * mask).sum() / mask.sum().clamp(min=1)


def compute_first_token_tv(first_tokens: list[int], probs: Tensor) -> float:
    """Sampling error of one group at its shared state: total variation 0.5 sum_a |freq(a) - pi(a|x)| between the
    group's empirical first-token frequencies and the policy's first-token distribution ``probs`` [V]."""
    freq = torch.zeros_like(probs)
    for t in first_tokens:
        freq[t] += 1.0 / len(first_tokens)
    return float(0.5 * (freq - probs).abs().sum())
