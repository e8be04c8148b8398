"""Per-token clipped policy-gradient losses (PPO token ratio, GSPO sequence ratio), behind one registry.

Shared signature, so the trainer never branches on the method::

    fn(logprobs [B, T], old_logprobs [B, T], advantages [B] or [B, T], mask [B, T], params: LossParams,
       behaviour_logprobs [B, T] | None = None, **knobs) -> (loss [B, T], metrics)

``knobs`` are the loss's own config knobs (``catalog``). A loss may declare ``fn.needs`` (a frozenset; today
only ``"entropy"``): the update then runs the no-grad pi_old pass with token entropies and passes
``entropy=`` [B, T]. If the loss also defines ``fn.prepare(entropy [B, T], mask [B, T], **knobs) -> (x [B, T],
feedback dict)``, the update applies it once to the whole batch's entropy (batch statistics stay exact under
micro-batching), passes ``x`` as ``entropy=``, and hands ``feedback`` to the engine (HAPO: h and its
normalisation statistics).

The returned loss is per token and zero outside the mask; reduce it with ``aggregation.compute_aggregate``.
Metrics are detached scalars, masked means over this batch, named ``loss/...``.

Clipped token term (verl / DAPO): l = -min(r*A, clip(r, 1-clip_low, 1+clip_high)*A); with ``dual_clip`` c,
tokens with A < 0 take l = min(l, -c*A) so a huge ratio on a negative sample cannot blow up the loss.

Decoupled off-policy correction (AReaL's decoupled PPO): ``old_logprobs`` are the proximal policy's
(recomputed by the trainer at the step start) and define the trust region; ``behaviour_logprobs`` come from
the engine that actually sampled the tokens. When both they and ``params.behaviour_is_cap`` are given, each
token's loss is multiplied by the detached weight w = exp(old - behaviour), truncated at the cap
(``"clamp"``) or with tokens above the cap zeroed (``"mask"``, AReaL's old default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

PPO_LOG_RATIO_CLAMP = 20.0  # verl clamps log(pi/pi_old) to +-20 before exp
GSPO_LOG_RATIO_MAX = 10.0  # verl clamps the GSPO log sequence ratio at 10
BEHAVIOUR_LOG_W_MAX = 20.0  # keeps exp() finite before the cap is applied


@dataclass
class LossParams:
    """Knobs shared by all policy losses."""

    clip_low: float = 0.2  # ratio lower bound 1 - clip_low
    clip_high: float = 0.2  # ratio upper bound 1 + clip_high (DAPO clip-higher: 0.28)
    dual_clip: float | None = None  # c > 1 (verl 3, DAPO 10): for A < 0, loss = min(loss, -c*A)
    behaviour_is_cap: float | None = None  # cap on w = exp(old - behaviour); None = no correction
    behaviour_is_mode: str = "clamp"  # "clamp": w = min(w, cap); "mask": w = 0 where w > cap

    def __post_init__(self) -> None:
        if self.clip_low < 0 or self.clip_high < 0:
            raise ValueError("clip_low and clip_high must be >= 0")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {self.dual_clip}")
        if self.behaviour_is_mode not in ("clamp", "mask"):
            raise ValueError(f"behaviour_is_mode must be 'clamp' or 'mask', got {self.behaviour_is_mode!r}")


PolicyLossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` > 0 (0 if the mask is empty)."""
    m = mask.to(x.dtype)
    return (torch.where(m > 0, x, 0) * m).sum() / m.sum().clamp(min=1e-8)


def _prepare(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor,
             mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes; return detached old logprobs, advantages broadcast to [B, T], and a bool mask."""
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(f"logprobs, old_logprobs and mask must all be [B, T]; got {tuple(logprobs.shape)}, "
                         f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}")
    adv = advantages.detach().to(logprobs.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1)  # [B, 1] broadcasts over tokens
    if adv.shape[0] != logprobs.shape[0] or adv.dim() != 2:
        raise ValueError(f"advantages must be [B] or [B, T] with B={logprobs.shape[0]}, got "
                         f"{tuple(advantages.shape)}")
    return old_logprobs.detach(), adv.expand_as(logprobs), mask > 0


def _clipped_objective(ratio: Tensor, adv: Tensor, mask: Tensor, params: LossParams,
                       clip_low: Tensor | None = None,
                       clip_high: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token -min(rA, clip(r)A), then the dual clip for A < 0; returns loss [B, T] and clip metrics.

    ``clip_low`` / ``clip_high`` ([B, T]) replace the params' scalar clip ranges per token (HAPO)."""
    lo = 1.0 - (params.clip_low if clip_low is None else clip_low)
    hi = 1.0 + (params.clip_high if clip_high is None else clip_high)
    loss_unclipped = -adv * ratio  # [B, T]
    loss_clipped = -adv * (ratio.clamp(lo, hi) if clip_low is None and clip_high is None
                           else torch.clamp(ratio, min=torch.as_tensor(lo, dtype=ratio.dtype),
                                            max=torch.as_tensor(hi, dtype=ratio.dtype)))  # [B, T]
    loss = torch.maximum(loss_unclipped, loss_clipped)
    clipped = (loss_clipped > loss_unclipped).detach()  # a clip bound is active: the token has no gradient
    dual = torch.zeros_like(clipped)
    if params.dual_clip is not None:
        dual_bound = -adv * params.dual_clip
        dual = ((adv < 0) & (loss > dual_bound)).detach()
        loss = torch.where(adv < 0, torch.minimum(loss, dual_bound), loss)
    f = ratio.dtype
    metrics = {
        "loss/clipfrac": masked_mean(clipped.to(f), mask),
        "loss/clipfrac_high": masked_mean((clipped & (adv > 0)).to(f), mask),  # r > 1 + clip_high, A > 0
        "loss/clipfrac_low": masked_mean((clipped & (adv < 0)).to(f), mask),  # r < 1 - clip_low, A < 0
        "loss/dualclip_frac": masked_mean(dual.to(f), mask),
    }
    return loss, metrics


def _behaviour_weight(old_logprobs: Tensor, behaviour_logprobs: Tensor | None, mask: Tensor,
                      params: LossParams) -> tuple[Tensor | None, dict[str, Tensor]]:
    """Detached decoupled-PPO weight w = exp(old - behaviour) [B, T], capped; None when not requested."""
    if behaviour_logprobs is None or params.behaviour_is_cap is None:
        return None, {}
    if behaviour_logprobs.shape != old_logprobs.shape:
        raise ValueError(f"behaviour_logprobs must be {tuple(old_logprobs.shape)}, got "
                         f"{tuple(behaviour_logprobs.shape)}")
    w = torch.exp((old_logprobs - behaviour_logprobs.detach()).clamp(max=BEHAVIOUR_LOG_W_MAX))  # [B, T]
    over = w > params.behaviour_is_cap
    metrics = {"loss/behaviour_is_mean": masked_mean(w, mask),
               "loss/behaviour_is_capped_frac": masked_mean(over.to(w.dtype), mask)}
    if params.behaviour_is_mode == "clamp":
        w = w.clamp(max=params.behaviour_is_cap)
    else:
        w = w.masked_fill(over, 0.0)
    return w, metrics


def _finish(loss: Tensor, ratio: Tensor, log_ratio: Tensor, mask: Tensor, old_logprobs: Tensor,
            behaviour_logprobs: Tensor | None, params: LossParams,
            metrics: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Apply the behaviour weight, zero padding, and add ratio/KL metrics."""
    w, w_metrics = _behaviour_weight(old_logprobs, behaviour_logprobs, mask, params)
    if w is not None:
        loss = loss * w
    metrics.update(w_metrics)
    metrics["loss/ratio_mean"] = masked_mean(ratio.detach(), mask)
    metrics["loss/approx_kl"] = masked_mean(-log_ratio.detach(), mask)  # k1 estimate of KL(old || new)
    return torch.where(mask, loss, torch.zeros_like(loss)), metrics


def compute_ppo_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                     params: LossParams, behaviour_logprobs: Tensor | None = None,
                     ) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO/GRPO clipped surrogate with the token ratio r_t = exp(logp_t - old_t); returns loss [B, T]."""
    old, adv, m = _prepare(logprobs, old_logprobs, advantages, mask)
    log_ratio = (logprobs - old).clamp(-PPO_LOG_RATIO_CLAMP, PPO_LOG_RATIO_CLAMP)  # [B, T]
    ratio = torch.exp(log_ratio)
    loss, metrics = _clipped_objective(ratio, adv, m, params)
    return _finish(loss, ratio, log_ratio, m, old, behaviour_logprobs, params, metrics)


def compute_gspo_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                      params: LossParams, behaviour_logprobs: Tensor | None = None,
                      ) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO: clip the sequence ratio s_i = exp(mean_t(logp - old)) instead of each token's ratio.

    verl's per-token form log s_it = logp_t - sg(logp_t) + sg(log s_i), clamped at 10: every token's value
    is s_i, while each token keeps its own gradient path, so with ``seq-mean-token-mean`` aggregation the
    gradient equals that of -min(s_i A_i, clip(s_i) A_i). Use GSPO-sized clips (verl: 3e-4 / 4e-4).
    """
    old, adv, m = _prepare(logprobs, old_logprobs, advantages, mask)
    token_log_ratio = torch.where(m, logprobs - old, torch.zeros_like(logprobs))  # [B, T]
    seq_log_ratio = token_log_ratio.sum(-1) / m.sum(-1).clamp(min=1)  # [B] log s_i
    log_ratio = logprobs - logprobs.detach() + seq_log_ratio.detach().unsqueeze(-1)  # [B, T], value log s_i
    log_ratio = log_ratio.clamp(max=GSPO_LOG_RATIO_MAX)
    ratio = torch.exp(log_ratio)
    loss, metrics = _clipped_objective(ratio, adv, m, params)
    return _finish(loss, ratio, token_log_ratio, m, old, behaviour_logprobs, params, metrics)


# A loss that is exactly 0, with a 0 gradient, on a token whose advantage is 0 (every clipped term is r * A)
# declares it: the update may then skip rows with zero advantage everywhere (``algo.skip_zero_rows``).
compute_ppo_loss.zero_at_zero_advantage = True  # type: ignore[attr-defined]
compute_gspo_loss.zero_at_zero_advantage = True  # type: ignore[attr-defined]


