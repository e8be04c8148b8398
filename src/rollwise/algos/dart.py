"""DART's loss-side curation (arXiv:2509.23866) as one off-policy correction with two parts, each can be off.

- Truncated IS with cap 1 (DART-GUI ``core_algos.py``, vanilla and gspo losses): every token's loss times the
  detached w_t = min(exp(log pi_old - log mu), ``is_cap``); a row whose stored behaviour logprobs are all zero
  (none recorded) falls back to w = 1. The cap is 1, not the 2 of verl / FlashRL's TIS (``tis``). The trust region
  stays on pi_old. ``is_cap = None`` turns it off.
- High-entropy step selection (the paper; commented out in the release): each step sample's (row's) mean token
  entropy under pi_old; the top ``entropy_keep`` fraction of the batch's rows keep their loss mask, the rest are
  zeroed (they leave the loss denominators too). ``entropy_keep = 1`` turns it off. rho is unverified in the
  release (not set); 0.8 is the spec's suggestion. In an ``[env]`` run a row is one turn (a step sample); single
  turn, a row is the whole rollout.

Hand-checkable: :func:`compute_step_entropy_keep` and :func:`compute_capped_is`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rollwise.algos.catalog import DartKnobs
from rollwise.algos.corrections import LOG_W_MAX, Correction, CorrectionBatch, Prepared
from rollwise.algos.losses import masked_mean


def compute_step_entropy_keep(entropy: Tensor, mask: Tensor, keep: float) -> Tensor:
    """[B] bool: the rows kept by mean token entropy, the top max(1, floor(keep * live rows)) of the rows with
    tokens (at most the fraction ``keep``; ties: the earlier row first); rows without tokens are not kept."""
    m = mask.to(entropy.dtype)
    live = m.sum(-1) > 0  # [B]
    row = (entropy * m).sum(-1) / m.sum(-1).clamp(min=1)  # [B] mean token entropy
    k = max(1, math.floor(keep * int(live.sum()) + 1e-9))
    score = torch.where(live, row, torch.full_like(row, -math.inf))
    order = torch.sort(-score, stable=True).indices[:k]  # [k] highest entropy first
    out = torch.zeros_like(live)
    out[order] = True
    return out & live


def compute_capped_is(old: Tensor, behaviour: Tensor, mask: Tensor, cap: float) -> tuple[Tensor, Tensor]:
    """(w [B, C] = min(exp(old - behaviour), cap) on real tokens, 1 for rows with no recorded behaviour logprob;
    over [B, C] bool: tokens the cap bit)."""
    m = mask > 0
    w = torch.exp((old - behaviour).clamp(-LOG_W_MAX, LOG_W_MAX))
    unrecorded = ((behaviour == 0) | ~m).all(-1, keepdim=True)  # [B, 1] no logprob stored: w = 1
    w = torch.where(unrecorded, torch.ones_like(w), w)
    over = (w > cap * (1 + 1e-4)) & m  # the cap bit (not float noise between engine and trainer logprobs)
    return torch.where(m, w.clamp(max=cap), torch.zeros_like(w)), over


class DartCorrection(Correction):
    """Truncated IS at cap 1 and the high-entropy step mask (module docstring)."""

    prox = "always"

    def __init__(self, **knobs: Any) -> None:
        self.p = DartKnobs(**knobs)
        self.needs = frozenset({"entropy"}) if self.p.entropy_keep < 1.0 else frozenset()

    def prepare(self, batch: CorrectionBatch) -> Prepared:
        out = Prepared()
        if self.p.is_cap is not None and batch.old is not None:
            w, over = compute_capped_is(batch.old, batch.behaviour, batch.mask, self.p.is_cap)
            out.weight = w
            vals = w[batch.mask > 0]
            if vals.numel():
                out.metrics |= {"offpolicy/is_mean": float(vals.mean()), "offpolicy/is_min": float(vals.min()),
                                "offpolicy/is_max": float(vals.max()),
                                "offpolicy/is_clip_frac": float(masked_mean(over.float(), batch.mask))}
        if self.p.entropy_keep < 1.0:
            if batch.entropy is None:
                raise ValueError("dart correction: the entropy mask needs pi_old's token entropies")
            rows = compute_step_entropy_keep(batch.entropy, batch.mask, self.p.entropy_keep)  # [B]
            out.keep = rows.to(batch.mask.dtype).unsqueeze(-1).expand_as(batch.mask).clone()
            live = int((batch.mask.sum(-1) > 0).sum())
            out.metrics["offpolicy/dart_entropy_kept_share"] = float(rows.sum()) / max(live, 1)
        return out
