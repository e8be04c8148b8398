"""Reduce a per-token loss [B, T] to a scalar (verl ``agg_loss`` modes), micro-batch invariant.

Modes (M = mask, l = per-token loss):
- ``token-mean``: sum_{i,t} l M / num_tokens (DAPO).
- ``seq-mean-token-mean``: sum_i [sum_t l M / sum_t M] / num_seqs (GRPO, GSPO).
- ``seq-mean-token-sum``: sum_{i,t} l M / num_seqs.
- ``seq-mean-token-sum-norm``: sum_{i,t} l M / (num_seqs * norm_length) (Dr.GRPO's constant normaliser).
  verl omits the 1/num_seqs here; that only rescales the loss by a constant.

Micro-batching: pass the GLOBAL ``num_tokens`` / ``num_seqs`` (from ``count_tokens_and_seqs`` summed over
every micro-batch of the optimizer step) and a fixed ``norm_length``; then the micro-batch aggregates (and
their gradients) sum exactly to the full-batch aggregate. When a total is None, this batch's own is used.
Sequences with no unmasked token contribute nothing and are not counted in ``num_seqs``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rollwise.algos.catalog import AGGREGATIONS

Total = float | Tensor | None
AggregationFn = Callable[..., Tensor]


def count_tokens_and_seqs(mask: Tensor) -> tuple[float, float]:
    """(number of unmasked tokens, number of sequences with >= 1 token) of a [B, T] mask.

    Sum these over the micro-batches of one step to get the global totals for ``compute_aggregate``.
    """
    m = mask.to(torch.float32)
    return float(m.sum()), float((m.sum(-1) > 0).sum())


def _denominator(total: Total, own: Tensor) -> Tensor:
    """The given global total, else this batch's own; a zero total becomes 1 (the numerator is 0 then)."""
    d = own if total is None else torch.as_tensor(total, dtype=own.dtype, device=own.device)
    return torch.where(d > 0, d, torch.ones_like(d))


def _token_mean(masked: Tensor, m: Tensor, *, num_tokens: Total, num_seqs: Total,
                norm_length: Total) -> Tensor:
    """Every token weighs the same: long responses dominate."""
    return masked.sum() / _denominator(num_tokens, m.sum())


def _seq_count(m: Tensor) -> Tensor:
    return (m.sum(-1) > 0).to(m.dtype).sum()


def _seq_mean_token_mean(masked: Tensor, m: Tensor, *, num_tokens: Total, num_seqs: Total,
                         norm_length: Total) -> Tensor:
    """Every sequence weighs the same, tokens averaged within it (carries GRPO's 1/|y| length bias)."""
    per_seq = masked.sum(-1) / m.sum(-1).clamp(min=1e-8)  # [B]
    return per_seq.sum() / _denominator(num_seqs, _seq_count(m))


def _seq_mean_token_sum(masked: Tensor, m: Tensor, *, num_tokens: Total, num_seqs: Total,
                        norm_length: Total) -> Tensor:
    """Token sums per sequence, averaged over sequences."""
    return masked.sum() / _denominator(num_seqs, _seq_count(m))


def _seq_mean_token_sum_norm(masked: Tensor, m: Tensor, *, num_tokens: Total, num_seqs: Total,
                             norm_length: Total) -> Tensor:
    """Token sums over (num_seqs * a constant length): no length bias (Dr.GRPO). Default length: padded T."""
    length = _denominator(norm_length, torch.tensor(float(m.shape[-1]), dtype=m.dtype, device=m.device))
    return masked.sum() / (_denominator(num_seqs, _seq_count(m)) * length)


def compute_aggregate(loss: Tensor, mask: Tensor, mode: str, *, num_tokens: Total = None,
                      num_seqs: Total = None, norm_length: Total = None) -> Tensor:
    """Scalar loss from a per-token loss [B, T] and mask [B, T] (bool or float weights) with ``mode``."""
    if loss.dim() != 2 or mask.shape != loss.shape:
        raise ValueError(f"loss and mask must both be [B, T]; got {tuple(loss.shape)} and "
                         f"{tuple(mask.shape)}")
    fn = AGGREGATIONS.get(mode)
    m = mask.to(loss.dtype)  # [B, T]
    masked = torch.where(m > 0, loss * m, torch.zeros_like(loss))  # [B, T]; NaN in padding cannot leak
    return fn(masked, m, num_tokens=num_tokens, num_seqs=num_seqs, norm_length=norm_length)


