"""Off-policy corrections that reshape the policy-gradient step itself: VCPO's ESS step scale, truncated
sequence IS and optimal baseline, MinPRO's minimum-prefix-ratio weight, ReMix's behaviour anchor and KL-convex
penalty. The interface and the other corrections are in ``corrections.py``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rollwise.algos.advantages import compute_group_mean_std
from rollwise.algos.catalog import MinproKnobs, RemixKnobs, VcpoKnobs
from rollwise.algos.corrections import (
    LOG_W_MAX,
    Correction,
    CorrectionBatch,
    Prepared,
    TokenInputs,
    TokenTerms,
)
from rollwise.algos.kl import compute_kl_k3
from rollwise.algos.losses import masked_mean


# ------------------------------------------------------------------ VCPO
def compute_ess(log_w: Tensor) -> Tensor:
    """Effective sample size (sum w)^2 / sum w^2 of weights given by their logs [N]; scale-free, so computed
    from w / max w (exact, no overflow)."""
    if log_w.numel() == 0:
        return log_w.new_zeros(())
    w = torch.exp((log_w - log_w.max()).double())
    return (w.sum() ** 2 / (w**2).sum()).to(log_w.dtype)


def compute_vcpo_lr_scale(ess_ratio: float, rho_base: float, rule: str) -> float:
    """VCPO's step scale: sqrt(min(1, rho / rho_base)) under "sqrt", min(1, rho / rho_base) under "linear"."""
    s = min(1.0, ess_ratio / rho_base)
    return math.sqrt(s) if rule == "sqrt" else s


def compute_opob_advantages(rewards: Tensor, group_index: Tensor, w: Tensor, grad_sq: Tensor, num_groups: int,
                            norm_by_std: bool = True, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """VCPO's off-policy optimal baseline per group: b* = sum_i w_i^2 |g_i|^2 R_i / sum_i w_i^2 |g_i|^2 over
    the group's rollouts (w_i the sequence IS weight the loss applies, |g_i|^2 the squared norm of the rollout's
    score gradient), and advantages A_i = (R_i - b*) / (std_g + eps) (``norm_by_std``, Bessel std as GRPO) or
    R_i - b*. A group whose weights x norms are all 0 falls back to its reward mean. Returns the advantages [N],
    b* [G] and the groups' reward means [G] (the plain baseline b* replaces)."""
    dev = rewards.device
    r, q = rewards.double(), (w.to(dev).double() ** 2) * grad_sq.to(dev).double()  # [N]
    num = torch.zeros(num_groups, dtype=torch.float64, device=dev).index_add_(0, group_index, q * r)
    den = torch.zeros(num_groups, dtype=torch.float64, device=dev).index_add_(0, group_index, q)
    mean, std = compute_group_mean_std(r, group_index, num_groups)
    base = torch.where(den > 0, num / den.clamp(min=1e-300), mean)  # [G]
    adv = r - base[group_index]
    if norm_by_std:
        adv = adv / (std[group_index] + eps)
    return adv.to(rewards.dtype), base.to(rewards.dtype), mean.to(rewards.dtype)


class Vcpo(Correction):
    """VCPO, variance-controlled off-policy RL (arXiv:2602.17616; spec section 7). Sequence IS weight
    w_i = exp(sum_t (log pi_old - log mu)) over the step's whole batch; ESS = (sum w)^2 / sum w^2 and
    rho = ESS / B (B = rows with tokens) scale the lr of this step's optimiser steps by
    sqrt(min(1, rho / rho_base)), restored afterwards; each rollout's loss is multiplied by min(w_i, cap)
    (VCPO's truncated sequence-level rollout IS at 8). ESS is over the whole step's batch (VCPO: the global
    mini-batch; the same with ``algo.mini_batches`` = 1).

    The off-policy optimal baseline (``baseline = "opob"``, VCPO's default) replaces the estimator's
    advantages by (R_i - b*) / std_g with b* weighted by w_i^2 |g_i|^2 (``compute_opob_advantages``); the
    update computes |g_i|^2, the squared norm of the gradient of rollout i's log-likelihood aggregated as the
    loss aggregates it (one gradient per rollout, the method's stated cost). VCPO folds the baseline into
    buffered gradients; since sum_i (R_i - b*) g_i is the policy gradient with advantage R_i - b*, this is the
    same direction. Only VCPO's mean aggregation of b* is built (not its median / winsorised variants)."""

    prox = "always"

    def __init__(self, **knobs: Any) -> None:
        self.p = VcpoKnobs(**knobs)
        self.replaces_advantages = self.p.baseline == "opob"
        self.needs = frozenset({"grad_norms"}) if self.replaces_advantages else frozenset()

    def prepare(self, batch: CorrectionBatch) -> Prepared:
        if batch.old is None:
            raise ValueError("vcpo needs the pi_old (proximal) logprobs")
        m = batch.mask
        rows = m.sum(-1) > 0  # [B]
        log_w = ((batch.old - batch.behaviour) * m).sum(-1)[rows]  # [n] log w_i
        capped = torch.exp(log_w.clamp(-LOG_W_MAX, LOG_W_MAX))
        if self.p.cap is not None:
            capped = capped.clamp(max=self.p.cap)
        ess = compute_ess(torch.log(capped) if self.p.use_clipped else log_w)
        n = max(int(rows.sum()), 1)
        scale = compute_vcpo_lr_scale(float(ess) / n, self.p.rho_base, self.p.rule)
        metrics = {"offpolicy/ess": float(ess), "offpolicy/ess_frac": float(ess) / n, "offpolicy/lr_scale": scale}
        if log_w.numel():
            raw = torch.exp(log_w.clamp(-LOG_W_MAX, LOG_W_MAX))
            metrics |= {"offpolicy/is_mean": float(raw.mean()), "offpolicy/is_max": float(raw.max()),
                        "offpolicy/is_min": float(raw.min())}
            if self.p.cap is not None:
                metrics["offpolicy/is_clip_frac"] = float((raw > self.p.cap).float().mean())
        weight, advantages = None, None
        full = torch.zeros(m.shape[0], dtype=m.dtype, device=m.device)  # [B] the weight each rollout's loss gets
        full[rows] = capped.to(m.dtype) if self.p.cap is not None else 1.0
        if self.p.cap is not None:
            weight = full[:, None] * m
        if self.replaces_advantages:
            if batch.rewards is None or batch.group_index is None or batch.grad_sq is None:
                raise ValueError("vcpo's optimal baseline needs the rewards, groups and per-rollout gradient norms")
            groups = int(batch.group_index.max()) + 1 if batch.group_index.numel() else 0
            advantages, base, mean = compute_opob_advantages(batch.rewards, batch.group_index, full, batch.grad_sq,
                                                             groups, self.p.norm_by_std)
            metrics |= {"offpolicy/opob_shift": float((base - mean).abs().mean()) if groups else 0.0,
                        "offpolicy/grad_sq_mean": float(batch.grad_sq[rows].mean()) if bool(rows.any()) else 0.0}
        return Prepared(weight=weight, lr_scale=scale, advantages=advantages, metrics=metrics)


# ------------------------------------------------------------------ MinPRO
def compute_min_prefix_ratio(log_ratio: Tensor, mask: Tensor, strict: bool = True,
                             cap_at_one: bool = False) -> Tensor:
    """MinPRO's m_t [B, C]: min over the prefix of the token ratios exp(log_ratio), by ``cummin`` of the log
    ratios; ``strict`` takes j < t (shifted by one, m_1 = 1), else j <= t; ``cap_at_one`` bounds m_t by 1.
    Padding does not enter the minimum (it is at the end) and m is 0 there."""
    lr = torch.where(mask > 0, log_ratio, torch.full_like(log_ratio, math.inf))
    cm = torch.cummin(lr, dim=-1).values  # [B, C] min_{j <= t}
    if strict:
        cm = torch.cat([torch.zeros_like(cm[:, :1]), cm[:, :-1]], dim=-1)  # m_1 = 1 (log 0)
    if cap_at_one:
        cm = cm.clamp(max=0.0)
    return torch.exp(cm.clamp(-LOG_W_MAX, LOG_W_MAX)) * mask


class MinPro(Correction):
    """MinPRO, minimum prefix ratio (arXiv:2601.22718; spec section 8): loss_t = -sg(m_t) clipterm_t with
    m_t = min_{j<t} rho_j, rho_j = pi_theta/mu (detached, from each loss pass), m_1 = 1. The clipped token
    term is PPO's, on rho_t = pi_theta/mu (``anchor = "behaviour"``; "prox" clips pi_theta/pi_prox instead).
    Unverified in the paper, so knobs: j < t vs j <= t (``prefix``), m capped at 1 or not (``cap_at_one``),
    and the PPO-clipped (not CISPO) token term, which is the one taken here."""

    off_policy_only = True  # on on-policy data every weight is 1: the run is warned at load

    def __init__(self, **knobs: Any) -> None:
        self.p = MinproKnobs(**knobs)
        self.prox = "always" if self.p.anchor == "prox" else "never"

    def tokens(self, x: TokenInputs) -> TokenTerms:
        log_rho = x.logprobs.detach() - x.behaviour
        m = compute_min_prefix_ratio(log_rho, x.mask, self.p.prefix == "strict", self.p.cap_at_one)
        anchor = x.behaviour if self.p.anchor == "behaviour" else None
        return TokenTerms(anchor=anchor, weight=m, metrics={
            "offpolicy/minpro_m_mean": masked_mean(m, x.mask),
            "offpolicy/is_mean": masked_mean(torch.exp(log_rho.clamp(-LOG_W_MAX, LOG_W_MAX)), x.mask)})


# ------------------------------------------------------------------ ReMix
class Remix(Correction):
    """ReMix's mixed-policy proximal PG (arXiv:2507.06892; spec section 9): every token's clipped ratio is
    pi_theta / mu against the policy that generated it (the behaviour logprobs stored with the rollout, so
    replayed rollouts are corrected against their own sampler), plus the KL-convex penalty
    beta [lam KL(pi_theta || pi_base) + (1 - lam) KL(pi_theta || pi_prev)] (k3 per token, aggregated like the
    loss), pi_base = the reference model, pi_prev = the step's proximal pi_old. The buffer of recent rollouts is
    the sampler's replay (``sampler.replay``): use remix with replay on, else every rollout is fresh. Policy
    reincarnation: at step ``reincarnate_at`` the reference <- current weights (the update reloads its reference
    model) and the update reports a ``policy_reset``, on which the sampler's replay empties its buffer and
    replays nothing more (ReMix: clear the buffer, continue purely on-policy). A resume after that step
    reloads the reference from the weights at the resume (not those of the reincarnation step)."""

    def __init__(self, **knobs: Any) -> None:
        self.p = RemixKnobs(**knobs)
        on = self.p.kl_coef > 0
        self.needs = frozenset({"reference"}) if on and self.p.lam > 0 else frozenset()
        self.adds_penalty = on
        self.prox = "always" if on and self.p.lam < 1 else "never"
        self._reincarnated = False

    def reset_reference(self, version: int) -> bool:
        if self.p.reincarnate_at is None or self._reincarnated or version < self.p.reincarnate_at:
            return False
        self._reincarnated = True
        return True

    def tokens(self, x: TokenInputs) -> TokenTerms:
        metrics = {"offpolicy/is_mean": masked_mean(torch.exp((x.logprobs.detach() - x.behaviour).clamp(
            -LOG_W_MAX, LOG_W_MAX)), x.mask)}
        penalty = None
        if self.p.kl_coef > 0:
            penalty = torch.zeros_like(x.logprobs)
            if self.p.lam > 0:
                if x.ref is None:
                    raise ValueError("remix with lam > 0 needs the reference logprobs")
                kl_base = compute_kl_k3(x.logprobs, x.ref)
                penalty = penalty + self.p.lam * kl_base
                metrics["offpolicy/remix_kl_base"] = masked_mean(kl_base.detach(), x.mask)
            if self.p.lam < 1:
                if x.old is None:
                    raise ValueError("remix with lam < 1 needs the previous (proximal) logprobs")
                kl_prev = compute_kl_k3(x.logprobs, x.old)
                penalty = penalty + (1.0 - self.p.lam) * kl_prev
                metrics["offpolicy/remix_kl_prev"] = masked_mean(kl_prev.detach(), x.mask)
            penalty = self.p.kl_coef * penalty * x.mask
        return TokenTerms(anchor=x.behaviour, penalty=penalty, metrics=metrics)
