"""HAPO, heterogeneous adaptive policy optimisation (Liu et al., arXiv:2509.16591; starriver030515/HAPO, commit
7671dde): a per-token normalised entropy score and the loss that uses it.

Normalised entropy (``compute_entropy_h``), over the masked tokens of the whole batch:

    z = (log H - q) / s,  q = the ``pivot`` quantile of log H (nearest rank, as the released code),
    s = sqrt(mean (log H - q)^2)  (the released code's "std": the RMS about the pivot, not about the mean)
    h = z / max(z+) where z > 0,  z / |min(z-)| where z <= 0,   so h in [-1, 1]

High-entropy tokens get h > 0, low-entropy tokens h < 0. The released code multiplies z <= 0 by 1/min(z), a
negative number, so its low-entropy tokens also come out positive; that looks like a sign bug and is not
reproduced here (the intended mapping of low entropy to [-1, 0] is).

Loss (``compute_hapo_loss``), the PPO clipped token ratio with, per token:
- asymmetric adaptive clipping (alpha = 1): low-entropy tokens eps_lo <- eps_lo (1 - alpha h) (h < 0 widens the
  range, allowing larger probability decreases); high-entropy tokens eps_hi <- eps_hi (1 + alpha h);
- differential advantage redistribution (beta = 1): A^e = A (1 + beta h); with the neutral zone
  Z = (1 - eps_lo / 2, 1 + eps_hi / 2) (the adapted clip ranges, as the released code), high-entropy tokens
  use A^e outside Z and A inside it, low-entropy tokens A^e inside Z and A outside.

Choices: ``h`` comes from the entropy of the no-grad pi_old pass (at the training temperature) and is normalised
once over the whole batch before the first micro-batch, so micro-batched == full batch; the released code
normalises inside each micro-batch's loss call with the current forward's entropy. The statistics (q, s, scales)
are handed to the engine after the update for HAPO's adaptive sampling temperature (``apply_entropy_norm``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from rollwise.algos.catalog import HapoLossKnobs
from rollwise.algos.losses import (
    PPO_LOG_RATIO_CLAMP,
    LossParams,
    _clipped_objective,
    _finish,
    _prepare,
    masked_mean,
)

LOG_EPS = 1e-8  # floor of H before the log and of the variance (released code)


@dataclass(frozen=True)
class EntropyNorm:
    """The statistics that map log-entropy to h: h = scale * (log H - pivot) / std (scale by the sign)."""

    pivot: float  # the pivot quantile of log H
    std: float  # RMS of log H - pivot
    scale_pos: float  # 1 / max z over z > 0
    scale_neg: float  # 1 / |min z| over z < 0 (positive: the intended sign)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def apply_entropy_norm(entropy: Tensor, norm: EntropyNorm) -> Tensor:
    """h of each entry of ``entropy`` (any shape) under fixed statistics, clamped to [-1, 1]."""
    z = (torch.log(entropy.float().clamp_min(LOG_EPS)) - norm.pivot) / norm.std
    return torch.where(z > 0, z * norm.scale_pos, z * norm.scale_neg).clamp(-1.0, 1.0)


def compute_entropy_h(entropy: Tensor, mask: Tensor, pivot: float = 0.8) -> tuple[Tensor, EntropyNorm]:
    """HAPO's normalised entropy h [B, T] (0 outside ``mask``) and the statistics that produced it."""
    if not 0.0 <= pivot <= 1.0:
        raise ValueError(f"entropy pivot must lie in [0, 1], got {pivot}")
    m = mask > 0
    log_h = torch.log(entropy.detach().float().clamp_min(LOG_EPS))  # [B, T]
    vals = log_h[m]  # [n]
    if vals.numel() == 0:
        return torch.zeros_like(log_h), EntropyNorm(0.0, 1.0, 1.0, 1.0)
    k = round(pivot * (vals.numel() - 1)) + 1  # nearest rank, as the released torch_quantile(..., "nearest")
    q = float(vals.kthvalue(k).values)
    d = vals - q
    std = float(d.pow(2).mean().clamp_min(LOG_EPS).sqrt())
    z = d / std
    pos_max = float(z.max().clamp_min(LOG_EPS))  # max over z > 0 (eps if none)
    neg_min = float(z.min().clamp_max(-LOG_EPS))  # min over z < 0 (-eps if none)
    norm = EntropyNorm(q, std, 1.0 / pos_max, 1.0 / -neg_min)
    h = apply_entropy_norm(entropy.detach(), norm)  # clamping is a no-op on the batch itself
    return torch.where(m, h, torch.zeros_like(h)), norm


def prepare_hapo_entropy(entropy: Tensor, mask: Tensor, **knobs: Any) -> tuple[Tensor, dict[str, Any]]:
    """Whole-batch step of the HAPO loss: pi_old entropy [B, T] -> h [B, T] and the engine's feedback."""
    p = HapoLossKnobs(**knobs)
    h, norm = compute_entropy_h(entropy, mask, p.entropy_pivot)
    return h, {"entropy_norm": norm}


def compute_hapo_clip_ranges(h: Tensor, clip_low: float, clip_high: float,
                             alpha: float) -> tuple[Tensor, Tensor]:
    """Asymmetric adaptive clipping: per-token (eps_lo, eps_hi) [B, T]."""
    lo = torch.where(h <= 0, clip_low * (1.0 - alpha * h), torch.full_like(h, clip_low))
    hi = torch.where(h > 0, clip_high * (1.0 + alpha * h), torch.full_like(h, clip_high))
    return lo, hi


def compute_hapo_advantages_redistributed(adv: Tensor, h: Tensor, ratio: Tensor, clip_low: Tensor,
                                          clip_high: Tensor, beta: float) -> Tensor:
    """Differential advantage redistribution: per-token advantages [B, T]."""
    boosted = adv * (1.0 + beta * h)
    r = ratio.detach()
    inside = (r > 1.0 - clip_low / 2) & (r < 1.0 + clip_high / 2)  # the neutral zone Z
    return torch.where(h > 0, torch.where(inside, adv, boosted), torch.where(inside, boosted, adv))


def compute_hapo_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                      params: LossParams, behaviour_logprobs: Tensor | None = None, *,
                      entropy: Tensor | None = None, **knobs: Any) -> tuple[Tensor, dict[str, Tensor]]:
    """HAPO clipped token loss [B, T]; ``entropy`` is h [B, T] from ``prepare`` (the update passes it)."""
    if entropy is None:
        raise ValueError("policy loss 'hapo' needs entropy=h [B, T], the normalised pi_old entropy")
    p = HapoLossKnobs(**knobs)
    old, adv, m = _prepare(logprobs, old_logprobs, advantages, mask)
    h = entropy.detach().to(logprobs.dtype)
    log_ratio = (logprobs - old).clamp(-PPO_LOG_RATIO_CLAMP, PPO_LOG_RATIO_CLAMP)  # [B, T]
    ratio = torch.exp(log_ratio)
    lo = torch.full_like(h, params.clip_low)
    hi = torch.full_like(h, params.clip_high)
    if p.adaptive_clip:
        lo, hi = compute_hapo_clip_ranges(h, params.clip_low, params.clip_high, p.alpha)
    base = adv
    if p.adaptive_advantage:
        adv = compute_hapo_advantages_redistributed(adv, h, ratio, lo, hi, p.beta)
    loss, metrics = _clipped_objective(ratio, adv, m, params, clip_low=lo, clip_high=hi)
    f = ratio.dtype
    metrics |= {"loss/hapo_h_mean": masked_mean(h, m), "loss/hapo_clip_low_mean": masked_mean(lo, m),
                "loss/hapo_clip_high_mean": masked_mean(hi, m),
                "loss/hapo_redistributed_frac": masked_mean((adv != base).to(f).detach(), m)}
    return _finish(loss, ratio, log_ratio, m, old, behaviour_logprobs, params, metrics)


compute_hapo_loss.needs = frozenset({"entropy"})  # type: ignore[attr-defined]
compute_hapo_loss.zero_at_zero_advantage = True  # type: ignore[attr-defined]  # A^e = A (1 + beta h): 0 at A = 0
compute_hapo_loss.prepare = prepare_hapo_entropy  # type: ignore[attr-defined]
