"""Per-token KL estimators between the policy and a frozen reference (Schulman's k1/k2/k3), by name.

Each maps ``logprobs`` [B, T] (policy, with grad) and ``ref_logprobs`` [B, T] to a per-token estimate [B, T]
of KL(pi || pi_ref) on tokens sampled from pi; mask and aggregate it like the policy loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

KLFn = Callable[[Tensor, Tensor], Tensor]


def compute_kl_k1(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k1 = log pi - log pi_ref: unbiased, high variance, can be negative per token."""
    return logprobs - ref_logprobs.detach()


def compute_kl_k2(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k2 = 0.5 (log pi - log pi_ref)^2: biased, low variance, its gradient is the true KL gradient."""
    return 0.5 * (logprobs - ref_logprobs.detach()) ** 2


def compute_kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """k3 ("low_var_kl") = exp(d) - d - 1 with d = log pi_ref - log pi: unbiased and always >= 0.

    As verl: d is clamped to +-20 before exp and the result to [-10, 10], so one outlier token cannot
    dominate.
    """
    d = (ref_logprobs.detach() - logprobs).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


