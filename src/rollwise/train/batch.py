"""From trained groups to loss: advantages over variable-size groups, micro-batches, and the optimisation
passes with gradient accumulation normalised by global totals (so micro-batched == full batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rollwise.algos import (
    ADVANTAGES,
    AGGREGATIONS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageContext,
    LossParams,
    compute_aggregate,
)
from rollwise.algos.d3s import compute_d3s_token_mask
from rollwise.sampling import TrainGroup
from rollwise.train.policy import SeqBatch, build_seq_batch, compute_logprobs
from rollwise.types import Rollout


@dataclass
class TrainBatch:
    """The rollouts one step trains on, with their advantages and group membership."""

    rollouts: list[Rollout]  # [B]
    advantages: torch.Tensor  # [B]
    group_index: torch.Tensor  # [B] index into ``groups``
    groups: list[TrainGroup]  # fresh groups first, replayed groups after
    off_policy: torch.Tensor  # [B] bool, True for replayed rollouts (decoupled ratio)


def build_train_batch(groups: list[TrainGroup], pools: dict[int, list[Rollout]], replayed: list[Any],
                      estimator: str, params: dict[str, Any], version: int) -> TrainBatch:
    """Compute advantages over each trained group's whole pool (every rollout generated for the prompt, so
    down-sampled groups keep the unbiased pool's statistics, as D3S and Reinforce-Ada require), then keep
    the rows the sampler selected and the estimator did not exclude."""
    rollouts: list[Rollout] = []
    gidx: list[int] = []
    selected: list[bool] = []
    all_groups = list(groups) + [TrainGroup(g.prompt, np.arange(len(g.rollouts))) for g in replayed]
    for gi, g in enumerate(groups):
        pool = pools[g.prompt]
        chosen = set(int(i) for i in g.keep)
        rollouts += pool
        gidx += [gi] * len(pool)
        selected += [i in chosen for i in range(len(pool))]
    for j, g in enumerate(replayed):
        rollouts += list(g.rollouts)
        gidx += [len(groups) + j] * len(g.rollouts)
        selected += [True] * len(g.rollouts)
    if not rollouts:
        empty = torch.zeros(0)
        return TrainBatch([], empty, empty.long(), all_groups, empty.bool())
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)  # [R] every pool rollout
    group_index = torch.tensor(gidx, dtype=torch.long)  # [R]
    baseline = None
    if any(g.baseline is not None for g in all_groups):
        sums = torch.zeros(len(all_groups)).index_add_(0, group_index, rewards)
        counts = torch.zeros(len(all_groups)).index_add_(0, group_index, torch.ones_like(rewards))
        own = sums / counts.clamp(min=1)  # replayed groups (no pool baseline) fall back to their own mean
        baseline = torch.tensor([g.baseline if g.baseline is not None else float(own[i])
                                 for i, g in enumerate(all_groups)], dtype=torch.float32)
    seq_lp = torch.tensor([sum(r.behaviour_logprobs) / max(len(r.behaviour_logprobs), 1) for r in rollouts])
    ctx = AdvantageContext(num_groups=len(all_groups), baseline=baseline, seq_logprob=seq_lp, params=params)
    out = ADVANTAGES.get(estimator)(rewards, group_index, ctx)
    weights = torch.tensor([g.weight for g in all_groups], dtype=torch.float32)
    adv = out.advantages * weights[group_index]  # [R]
    keep = torch.tensor(selected, dtype=torch.bool)
    if out.keep is not None:
        keep &= out.keep
    rows = keep.nonzero().squeeze(-1)
    off = torch.tensor([rollouts[i].policy_version != version for i in rows.tolist()], dtype=torch.bool)
    return TrainBatch([rollouts[i] for i in rows.tolist()], adv[rows], group_index[rows], all_groups, off)


@dataclass
class MicroBatch:
    seq: SeqBatch
    advantages: torch.Tensor  # [b]
    behaviour: torch.Tensor  # [b, C]
    rows: slice  # rows of the TrainBatch
    old: torch.Tensor | None = None  # [b, C] pi_old logprobs (None: on-policy single pass, use detached current)
    ref: torch.Tensor | None = None  # [b, C] reference logprobs for the KL penalty
    token_mask: torch.Tensor | None = None  # [b, C] D3S token selection


def make_micro_batches(batch: TrainBatch, size: int, pad_id: int, device: torch.device) -> list[MicroBatch]:
    out = []
    for s in range(0, len(batch.rollouts), size):
        rs = batch.rollouts[s : s + size]
        seq = build_seq_batch([r.prompt_ids for r in rs], [r.completion_ids for r in rs], pad_id).to(device)
        beh = torch.zeros_like(seq.completion_mask)
        for i, r in enumerate(rs):
            beh[i, : len(r.behaviour_logprobs)] = torch.tensor(r.behaviour_logprobs)
        out.append(MicroBatch(seq, batch.advantages[s : s + size].to(device), beh, slice(s, s + len(rs))))
    return out


class Optimiser:
    """Runs ``epochs`` passes of ``mini_batches`` optimiser steps over a TrainBatch."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: Any,
                 temperature: float, norm_length: int, ref_model: torch.nn.Module | None = None) -> None:
        self.model, self.opt, self.cfg, self.ref = model, optimizer, cfg, ref_model
        self.temperature, self.norm_length = temperature, norm_length
        self.loss_fn = POLICY_LOSSES.get(cfg.loss)
        self.kl_fn = KL_ESTIMATORS.get(cfg.kl_estimator)
        AGGREGATIONS.get(cfg.aggregation)  # fail early on an unknown mode
        self.params = LossParams(clip_low=cfg.clip_low, clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
                                 behaviour_is_cap=cfg.behaviour_is_cap)

    @torch.no_grad()
    def prepare(self, micro: list[MicroBatch], batch: TrainBatch, token_fraction: float | None) -> None:
        """No-grad passes: pi_old when it can differ from the current policy, reference, D3S token mask."""
        multi = self.cfg.epochs > 1 or self.cfg.mini_batches > 1 or bool(batch.off_policy.any())
        ents = []
        for mb in micro:
            if multi or token_fraction is not None:
                want_ent = token_fraction is not None
                lp, ent = self._logprobs(self.model, mb.seq, with_entropy=want_ent)
                mb.old = lp if multi else None
                ents.append(ent)
            if self.ref is not None:
                mb.ref, _ = self._logprobs(self.ref, mb.seq)
        if token_fraction is not None and token_fraction < 1.0:
            C = max(mb.seq.completion_mask.shape[1] for mb in micro)
            pad = [torch.nn.functional.pad(t, (0, C - t.shape[1])) for t in ents]
            masks = [torch.nn.functional.pad(mb.seq.completion_mask, (0, C - mb.seq.completion_mask.shape[1]))
                     for mb in micro]
            adv = torch.cat([mb.advantages for mb in micro])
            keep = compute_d3s_token_mask(adv, torch.cat(pad), torch.cat(masks), token_fraction)
            row = 0
            for mb in micro:
                b, c = mb.seq.completion_mask.shape
                mb.token_mask = keep[row : row + b, :c].float()
                row += b

    def run(self, micro: list[MicroBatch], num_rows: int) -> tuple[dict[str, float], torch.Tensor, bool]:
        """Optimise; return metrics, the per-rollout surrogate loss of the last pass ([B]), and success."""
        per_row = torch.zeros(num_rows)
        sums: dict[str, float] = {}
        n_mb = max(self.cfg.mini_batches, 1)
        chunks = [micro[i::n_mb] for i in range(n_mb)] if len(micro) >= n_mb else [micro]
        ok = True
        for _ in range(self.cfg.epochs):
            for chunk in chunks:
                masks = [self._mask(mb) for mb in chunk]
                tok = sum(float(m.sum()) for m in masks)
                seqs = sum(float((m.sum(-1) > 0).sum()) for m in masks)
                self.opt.zero_grad(set_to_none=True)
                total = 0.0
                for mb, mask in zip(chunk, masks):
                    loss, metrics, row_loss = self._micro_loss(mb, mask, tok, seqs)
                    loss.backward()
                    total += loss.item()
                    per_row[mb.rows] = row_loss
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * len(mb.advantages) / num_rows
                if not torch.isfinite(torch.tensor(total)):
                    self.opt.zero_grad(set_to_none=True)
                    ok = False
                    continue
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                if not torch.isfinite(gn):
                    self.opt.zero_grad(set_to_none=True)
                    ok = False
                    continue
                self.opt.step()
                sums["loss/total"] = sums.get("loss/total", 0.0) + total / (len(chunks) * self.cfg.epochs)
                sums["loss/grad_norm"] = float(gn)
        passes = self.cfg.epochs * len(chunks)
        return {k: (v / passes if k not in ("loss/total", "loss/grad_norm") else v) for k, v in sums.items()}, \
            per_row, ok

    def _logprobs(self, model: torch.nn.Module, seq: SeqBatch,
                  with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        return compute_logprobs(model, seq, self.temperature, with_entropy=with_entropy,
                                share_prefix=self.cfg.share_prefix, length_buckets=self.cfg.length_buckets)

    def _mask(self, mb: MicroBatch) -> torch.Tensor:
        return mb.seq.completion_mask if mb.token_mask is None else mb.seq.completion_mask * mb.token_mask

    def _micro_loss(self, mb: MicroBatch, mask: torch.Tensor, tok: float,
                    seqs: float) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor]:
        logp, _ = self._logprobs(self.model, mb.seq)  # [b, C]
        old = mb.old if mb.old is not None else logp.detach()
        beh = mb.behaviour if mb.old is not None else None
        loss_tok, metrics = self.loss_fn(logp, old, mb.advantages, mask, self.params, beh)
        loss = compute_aggregate(loss_tok, mask, self.cfg.aggregation, num_tokens=tok, num_seqs=seqs,
                                 norm_length=self.norm_length)
        if mb.ref is not None and self.cfg.kl_coef > 0:
            kl = self.kl_fn(logp, mb.ref) * mask
            kl_loss = compute_aggregate(kl, mask, self.cfg.aggregation, num_tokens=tok, num_seqs=seqs,
                                        norm_length=self.norm_length)
            loss = loss + self.cfg.kl_coef * kl_loss
            metrics = dict(metrics) | {"loss/kl": kl_loss.detach() * (tok / max(mask.sum().item(), 1))}
        row_loss = (loss_tok.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [b]
        return loss, metrics, row_loss
