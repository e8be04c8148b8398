"""Advantage shapers: per-token rewrites of the advantages inside the update, after the sampler's advantages and
before the loss, applied in the configured order (``algo.shaping``). Each is a pure function behind the
``SHAPERS`` registry (``catalog.py``)::

    fn(ctx: ShapingContext, params: dict) -> (advantages [B, T], metrics)

A shaper declares what it reads in ``fn.needs`` (a frozenset of ``"reference"`` and ``"entropy"``); the update
computes only that (a reference model is built when some shaper needs one, even with ``algo.kl_coef`` = 0).
Rewards, group ids and each rollout's ``meta`` (rollout-strategy tree metadata) are always in the context.
The update applies the shapers once to the whole step's batch (micro-batches padded and stacked), so any
batch statistic a shaper takes is exact and micro-batched == full batch by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rollwise.algos.catalog import AceKnobs, MssrEntropyKnobs
from rollwise.algos.losses import masked_mean

#: grad_norms: per-rollout score-gradient norms (VCPO); off_policy_mask: a loss reads each token's
#: ``Rollout.off_policy_mask`` [B, T] (SCOPE's spliced suffix)
NEEDS = frozenset({"reference", "entropy", "grad_norms", "off_policy_mask"})


@dataclass
class ShapingContext:
    """What a shaper may read; every tensor is detached and rows are the step's rollouts."""

    advantages: Tensor  # [B, T] per-token advantages after the earlier shapers
    mask: Tensor  # [B, T] float, 1 on real completion tokens
    old_logprobs: Tensor  # [B, T] pi_old log-probabilities (0 on padding)
    ref_logprobs: Tensor | None = None  # [B, T] reference log-probabilities (needs "reference")
    entropy: Tensor | None = None  # [B, T] pi_old full-vocabulary token entropy (needs "entropy")
    rewards: Tensor | None = None  # [B] verified rewards
    group_index: Tensor | None = None  # [B] prompt group of each row
    meta: list[dict[str, Any]] | None = None  # [B] each row's Rollout.meta (rollout-strategy tree metadata)


ShaperFn = Callable[[ShapingContext, dict[str, Any]], tuple[Tensor, dict[str, Tensor]]]


def needs_of(component: Any) -> frozenset[str]:
    """The inputs a built shaper, loss or correction declares in ``needs`` (empty when it declares none); unknown
    ones raise. Read from the object the update runs (a function, or a correction *instance*, whose needs may
    depend on its knobs), never from a class."""
    if isinstance(component, type):
        raise TypeError(f"needs_of({component.__name__}): read needs from the built instance, not its class")
    needs = frozenset(getattr(component, "needs", ()))
    if needs - NEEDS:
        raise ValueError(f"{component!r} needs {sorted(needs - NEEDS)}; the update provides {sorted(NEEDS)}")
    return needs


def _knobs(params: dict[str, Any], knobs: type, name: str) -> Any:
    valid = {f.name for f in dataclasses.fields(knobs)}
    if set(params) - valid:
        raise ValueError(f"unknown params {sorted(set(params) - valid)} for shaper {name!r}; valid: {sorted(valid)}")
    return knobs(**params)


def shape_ace(ctx: ShapingContext, params: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """ACE, asymmetric confidence-aware error penalty (arXiv:2602.21420).

    c_i = sum_t (log pi_old - log pi_ref) over rollout i (detached; the paper writes pi_theta, which equals
    pi_old before the first optimiser step). Tokens with A < 0 get A (1 + alpha softplus(c_i)); A >= 0 is
    unchanged. With ACE first in ``algo.shaping`` every token of a rollout shares its sign, so this is the
    paper's per-rollout rule.
    """
    p = _knobs(params, AceKnobs, "ace")
    if ctx.ref_logprobs is None:
        raise ValueError("shaper 'ace' needs ctx.ref_logprobs")
    m = ctx.mask
    c = ((ctx.old_logprobs - ctx.ref_logprobs) * m).sum(-1)  # [B] sequence-level confidence shift
    scale = 1.0 + p.alpha * F.softplus(c)  # [B]
    adv = ctx.advantages
    neg = adv < 0  # [B, T]
    out = torch.where(neg, adv * scale[:, None], adv)
    neg_rows = (neg & (m > 0)).any(-1)  # [B]
    f = adv.dtype
    metrics = {"loss/ace_conf_shift_mean": c.mean() if c.numel() else c.new_zeros(()),
               "loss/ace_scale_mean": masked_mean(scale, neg_rows.to(f)),
               "loss/ace_neg_frac": neg_rows.to(f).mean() if c.numel() else c.new_zeros(())}
    return out, metrics


shape_ace.needs = frozenset({"reference"})  # type: ignore[attr-defined]


def shape_mssr_entropy(ctx: ShapingContext, params: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """Entropy advantage term: A_t <- A_t + min(kappa1 sg(H_t), |A_t| / kappa2).

    From Cheng et al., "Reasoning with Exploration: An Entropy Perspective" (arXiv:2506.14758), used by MSSR
    (Liu et al., arXiv:2512.18215) to prevent collapse in single-rollout RL. Defaults kappa1 = 0.4, kappa2 = 2
    are Cheng et al.'s alpha and kappa as we recall them (not confirmed against the paper's text; MSSR's own
    values are unverified). H_t is the pi_old token entropy at the training temperature. The term is >= 0 and
    at most |A_t| / kappa2, so it never flips an advantage's sign (kappa2 > 1) and is 0 where A_t = 0.
    """
    p = _knobs(params, MssrEntropyKnobs, "mssr_entropy")
    if ctx.entropy is None:
        raise ValueError("shaper 'mssr_entropy' needs ctx.entropy")
    adv = ctx.advantages
    term = torch.minimum(p.kappa1 * ctx.entropy.detach(), adv.abs() / p.kappa2)  # [B, T]
    term = term * ctx.mask
    capped = (p.kappa1 * ctx.entropy > adv.abs() / p.kappa2).to(adv.dtype)
    metrics = {"loss/mssr_entropy_term_mean": masked_mean(term, ctx.mask),
               "loss/mssr_entropy_capped_frac": masked_mean(capped, ctx.mask)}
    return adv + term, metrics


shape_mssr_entropy.needs = frozenset({"entropy"})  # type: ignore[attr-defined]
