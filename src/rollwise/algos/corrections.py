"""Off-policy corrections behind the ``CORRECTIONS`` registry (``catalog.py``; config ``algo.correction``).

Rollouts can come from other weights than the learner's: replay, several epochs or mini-batches, an engine that
samples from another distribution, and asynchronous rollout workers whose tokens are several versions stale.
Three policies are in play (spec section 0): the behaviour mu (the engine's per-token logprobs and weight
``versions``), the proximal pi_prox = pi_old (the learner at the step start, recomputed in a no-grad pass) and
pi_theta (being optimised). A correction is a small class the update drives through one interface::

    c = Cls(**knobs)
    c.prox                      # "auto" (the update's own rule), "always" or "never": the pi_prox pass
    c.needs                     # frozenset: "reference" (reference logprobs), "grad_norms" (per-rollout
                                #   ||grad log pi||^2, one gradient per rollout: VCPO's baseline)
    c.loss_behaviour            # True only for "none": the loss applies its own pi_old/mu weight
    c.reset_reference(version)  # True: load the current weights into the reference now (ReMix reincarnation)
    c.prepare(CorrectionBatch) -> Prepared     # once per step, no grad, over the WHOLE batch [B, C]
    c.tokens(TokenInputs) -> TokenTerms        # per micro-batch in the loss pass, with pi_theta

``prepare`` returns fixed per-token weights, a token mask that replaces the completion mask (it changes the
loss denominators), an lr scale for this step's optimiser steps, optionally new per-rollout advantages, and
exact whole-batch metrics; ``tokens``
returns what depends on pi_theta: a new trust-region anchor, a detached weight, a differentiable penalty. Every
batch statistic (ESS, geometric means) is taken in ``prepare`` or per row, so micro-batched == full batch.

Per-token weights multiply the policy loss's per-token term after it is computed (the loss sees no behaviour
logprobs, so its built-in weight is off), so a correction works with every registered loss.

This module holds the interface, the shared math, ``none``, TIS, MIS and AReaL; ``corrections_policy.py`` holds
VCPO, MinPRO and ReMix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rollwise.algos.catalog import ArealKnobs, MisKnobs, TisKnobs
from rollwise.algos.losses import masked_mean

LOG_W_MAX = 20.0  # verl's safety bound: log IS weights are clamped to +-20 before exp
STALE_BINS = 9  # trace/stale_hist: tokens with staleness 0, 1, ..., 7 and 8+


@dataclass
class CorrectionBatch:
    """The whole step's batch, detached, micro-batches padded and stacked: [B, C]."""

    mask: Tensor  # [B, C] float, 1 on real completion tokens
    behaviour: Tensor  # [B, C] log mu of the engine that sampled each token
    versions: Tensor  # [B, C] long, weight version of each token (-1 unknown or padding)
    version: int  # the step's version: the learner's weights after ``version`` updates (= pi_prox)
    old: Tensor | None = None  # [B, C] pi_prox logprobs (when the pass ran)
    ref: Tensor | None = None  # [B, C] reference logprobs (needs "reference")
    rewards: Tensor | None = None  # [B] each rollout's reward
    group_index: Tensor | None = None  # [B] long, each rollout's group in the step's batch
    grad_sq: Tensor | None = None  # [B] ||grad log pi_theta(rollout)||^2 (needs "grad_norms")
    entropy: Tensor | None = None  # [B, C] pi_old token entropies (needs "entropy")


@dataclass
class Prepared:
    weight: Tensor | None = None  # [B, C] detached factor on each token's loss
    keep: Tensor | None = None  # [B, C] float: tokens kept; removed tokens leave the loss denominators too
    lr_scale: float | None = None  # multiplies the lr of this step's optimiser steps only
    advantages: Tensor | None = None  # [B] replaces the estimator's advantages (VCPO's optimal baseline)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TokenInputs:
    """One micro-batch in the loss pass: [b, C]."""

    logprobs: Tensor  # [b, C] pi_theta, with grad
    mask: Tensor  # [b, C] float, real completion tokens
    behaviour: Tensor  # [b, C] log mu
    versions: Tensor  # [b, C] long (-1 unknown)
    version: int
    old: Tensor | None = None  # [b, C] pi_prox (None: the pass was skipped)
    ref: Tensor | None = None  # [b, C] reference logprobs


@dataclass
class TokenTerms:
    anchor: Tensor | None = None  # [b, C] replaces pi_old as the loss's trust-region anchor (detached)
    weight: Tensor | None = None  # [b, C] detached factor on each token's loss
    penalty: Tensor | None = None  # [b, C] differentiable per-token term, aggregated like the loss and added
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Correction:
    """Base: no correction terms; subclasses override what they change."""

    prox = "auto"
    needs: frozenset[str] = frozenset()  # read from the built instance (a knob may change it: ReMix, VCPO)
    off_policy_only = False  # True: acts only on stale or replayed rollouts (a run without any is warned)
    adds_penalty = False  # True: ``tokens`` returns a penalty, which rows with zero advantage feel too
    loss_behaviour = False
    replaces_advantages = False  # its ``prepare`` returns new advantages (not combinable with algo.shaping)

    def reset_reference(self, version: int) -> bool:
        return False

    def prepare(self, batch: CorrectionBatch) -> Prepared:
        return Prepared()

    def tokens(self, x: TokenInputs) -> TokenTerms:
        return TokenTerms()


class NoCorrection(Correction):
    """Today's update: pi_old is recomputed when rollouts are off-policy and the loss multiplies each token by
    exp(old - behaviour) capped at ``algo.behaviour_is_cap`` (``losses._behaviour_weight``)."""

    loss_behaviour = True


# ------------------------------------------------------------------ shared math
def compute_staleness_metrics(versions: Tensor, version: int, mask: Tensor) -> dict[str, Any]:
    """Staleness = version - token version over real tokens of known version: mean, max and a histogram of
    token counts for 0..7 and 8+ (``trace/stale_hist``). Empty when no token has a known version."""
    known = (mask > 0) & (versions >= 0)
    if not bool(known.any()):
        return {}
    stale = (version - versions[known]).clamp(min=0)
    hist = torch.bincount(stale.clamp(max=STALE_BINS - 1), minlength=STALE_BINS)
    return {"offpolicy/stale_mean": float(stale.float().mean()), "offpolicy/stale_max": int(stale.max()),
            "offpolicy/stale_unknown_frac": float(1.0 - known.sum() / (mask > 0).sum()),
            "trace/stale_hist": [int(c) for c in hist]}


def compute_level_log_ratio(log_ratio: Tensor, mask: Tensor, level: str) -> Tensor:
    """Per-token log ratio [B, C] at ``level``: token as is; sequence = sum over the row's tokens (the product
    of ratios); geometric = mean over them (geometric mean); broadcast over the row, 0 on padding."""
    lr = log_ratio * mask
    if level == "token":
        return lr
    agg = lr.sum(-1, keepdim=True)
    if level == "geometric":
        agg = agg / mask.sum(-1, keepdim=True).clamp(min=1)
    return agg.expand_as(lr) * mask


def _ratio_metrics(w: Tensor, mask: Tensor, level: str, name: str = "is") -> dict[str, float]:
    """Mean / max / min of the weights over tokens (token level) or rows (sequence levels)."""
    if level == "token":
        vals = w[mask > 0]
    else:
        vals = w[:, 0][mask.sum(-1) > 0] if w.shape[1] else w.new_zeros(0)
    if vals.numel() == 0:
        return {}
    return {f"offpolicy/{name}_mean": float(vals.mean()), f"offpolicy/{name}_max": float(vals.max()),
            f"offpolicy/{name}_min": float(vals.min())}


def _unit_weights(old: Tensor | None, behaviour: Tensor, mask: Tensor, level: str) -> Tensor:
    """pi_old/mu at ``level``, safety-bounded, [B, C], 0 on padding."""
    if old is None:
        raise ValueError("this correction needs the pi_old (proximal) logprobs")
    log_w = compute_level_log_ratio(old - behaviour, mask, level).clamp(-LOG_W_MAX, LOG_W_MAX)
    return torch.exp(log_w) * mask


# ------------------------------------------------------------------ TIS and MIS
class TruncatedIS(Correction):
    """Truncated IS (Yao et al., "Your efficient RL framework secretly brings you off-policy RL training",
    2025; verl ``rollout_is``): each token's loss times the detached w = min(pi_old/mu, C), with the ratio per
    token or, at sequence level, the product over the rollout (one weight per rollout). PPO's trust region
    stays on pi_old (verl's decoupled mode)."""

    off_policy_only = True  # on on-policy data every weight is 1: the run is warned at load

    prox = "always"

    def __init__(self, **knobs: Any) -> None:
        self.p = TisKnobs(**knobs)

    def prepare(self, batch: CorrectionBatch) -> Prepared:
        w = _unit_weights(batch.old, batch.behaviour, batch.mask, self.p.level)  # [B, C]
        over = (w > self.p.cap) & (batch.mask > 0)
        metrics = _ratio_metrics(w, batch.mask, self.p.level)
        metrics["offpolicy/is_clip_frac"] = float(masked_mean(over.float(), batch.mask))
        return Prepared(weight=w.clamp(max=self.p.cap), metrics=metrics)


class MaskedIS(Correction):
    """Masked IS (Yao et al. 2025; verl ``rollout_rs``): tokens, or whole rollouts, whose pi_old/mu (token,
    sequence product, or geometric mean) lies outside [lower, upper] leave the loss, denominators included
    (verl's separation of rejection from weighting); kept tokens carry their IS weight unless ``is_weight`` is
    off: the token ratio, or the sequence product at sequence level (geometric is a rejection test only, as
    verl, so its kept tokens carry the token ratio)."""

    off_policy_only = True  # on on-policy data every weight is 1: the run is warned at load

    prox = "always"

    def __init__(self, **knobs: Any) -> None:
        self.p = MisKnobs(**knobs)
        self.lower = self.p.lower if self.p.lower is not None else 1.0 / self.p.upper

    def prepare(self, batch: CorrectionBatch) -> Prepared:
        m = batch.mask
        w = _unit_weights(batch.old, batch.behaviour, m, self.p.level)  # [B, C]
        keep = ((w >= self.lower) & (w <= self.p.upper)).float() * m
        metrics = _ratio_metrics(w, m, self.p.level)
        metrics["offpolicy/is_mask_frac"] = float(masked_mean(1.0 - keep, m))
        if self.p.is_weight:
            level_w = w if self.p.level == "sequence" else _unit_weights(batch.old, batch.behaviour, m, "token")
            return Prepared(weight=level_w * keep, keep=keep, metrics=metrics)
        return Prepared(keep=keep, metrics=metrics)


# ------------------------------------------------------------------ AReaL
def compute_loglinear_alpha(versions: Tensor, version: int) -> Tensor:
    """A-3PO's interpolation weight [B, C]: alpha = (v_prox - v_mu) / (v_theta - v_mu), clamped to [0, 1].

    In rollwise's versions the proximal policy is the step's weights (v_prox = ``version``) and pi_theta is the
    policy this step produces (v_theta = version + 1); AReaL writes the same as v_prox = v_theta - 1. A fresh
    token (v_mu = v_prox) gets alpha = 0, so pi_prox = mu exactly; unknown versions (-1) get 0."""
    v = versions.float()
    gap, diff = version - v, version + 1.0 - v
    alpha = torch.where((diff > 0) & (versions >= 0), gap / diff.clamp(min=1.0), torch.zeros_like(v))
    return alpha.clamp(0.0, 1.0)


class ArealDecoupled(Correction):
    """AReaL's decoupled PPO (arXiv:2505.24298; spec section 6): the clipped term uses u = pi_theta/pi_prox,
    each token's loss is multiplied by the detached behaviour weight w = pi_prox/mu, and w is controlled by
    ``rejection_sampling`` knobs: per token or per sequence (geometric mean of the token weights), ``mask``
    zeroes w outside [lower, upper] while the loss denominator still counts those tokens (AReaL divides by the
    mask before masking), ``clamp`` truncates w. Only the ratio metric is implemented (not AReaL's k1/k2/k3).

    ``prox = "loglinear"`` (A-3PO) skips the pi_prox pass: log pi_prox = log mu + alpha (log pi_theta - log mu)
    with alpha from the per-token versions (``compute_loglinear_alpha``) and pi_theta detached, evaluated in each
    micro-batch's loss pass; with several epochs or mini-batches it follows the moving pi_theta, as A-3PO."""

    off_policy_only = True  # on on-policy data every weight is 1: the run is warned at load

    def __init__(self, **knobs: Any) -> None:
        self.p = ArealKnobs(**knobs)
        self.prox = "never" if self.p.prox == "loglinear" else "always"
        self.level = "token" if self.p.level == "token" else "geometric"

    def _bound(self, log_w: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """w [B, C] at the configured level and action, and whether each token fell outside the bounds."""
        w = torch.exp(compute_level_log_ratio(log_w, mask, self.level).clamp(-LOG_W_MAX, LOG_W_MAX))
        lo = self.p.lower if self.p.lower is not None else 0.0
        out = ((w > self.p.upper) | (w < lo)) & (mask > 0)
        w = w.masked_fill(out, 0.0) if self.p.action == "mask" else w.clamp(lo, self.p.upper)
        return w * mask, out

    def prepare(self, batch: CorrectionBatch) -> Prepared:
        if self.p.prox == "loglinear":
            return Prepared()
        raw = _unit_weights(batch.old, batch.behaviour, batch.mask, self.level)
        w, out = self._bound(batch.old - batch.behaviour, batch.mask)
        metrics = _ratio_metrics(raw, batch.mask, self.p.level)
        metrics["offpolicy/is_clip_frac"] = float(masked_mean(out.float(), batch.mask))
        return Prepared(weight=w, metrics=metrics)

    def tokens(self, x: TokenInputs) -> TokenTerms:
        if self.p.prox != "loglinear":
            return TokenTerms()
        alpha = compute_loglinear_alpha(x.versions, x.version)
        mu = x.behaviour
        prox = mu + alpha * (x.logprobs.detach() - mu)  # [b, C]
        w, out = self._bound(prox - mu, x.mask)
        return TokenTerms(anchor=prox, weight=w, metrics={
            "offpolicy/is_mean": masked_mean(w, x.mask), "offpolicy/is_clip_frac": masked_mean(out.float(), x.mask),
            "offpolicy/prox_alpha_mean": masked_mean(alpha, x.mask)})
