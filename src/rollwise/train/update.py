"""The policy update: ``epochs`` passes of ``mini_batches`` optimiser steps over a step's micro-batches, with
gradient accumulation normalised by global token and sequence totals (so micro-batched == full batch), the
no-grad passes it needs (pi_old, reference, D3S token mask), and a guard that skips non-finite steps."""

from __future__ import annotations

from typing import Any

import torch

from rollwise.algos import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES, LossParams, compute_aggregate
from rollwise.algos.d3s import compute_d3s_token_mask
from rollwise.train.batch import MicroBatch, TrainBatch
from rollwise.train.policy import SeqBatch, compute_logprobs


class PolicyUpdate:
    """Runs ``epochs`` passes of ``mini_batches`` optimiser steps over a TrainBatch."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: Any,
                 temperature: float, norm_length: int, ref_model: torch.nn.Module | None = None) -> None:
        self.model, self.opt, self.cfg, self.ref = model, optimizer, cfg, ref_model
        self.temperature, self.norm_length = temperature, norm_length
        self.loss_fn = POLICY_LOSSES.get(cfg.loss.type)
        self.kl_fn = KL_ESTIMATORS.get(cfg.kl_estimator.type)
        self.aggregation = cfg.aggregation.type
        AGGREGATIONS.get(self.aggregation)  # fail early on an unknown mode
        self.params = LossParams(clip_low=cfg.clip_low, clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
                                 behaviour_is_cap=cfg.behaviour_is_cap)

    @torch.no_grad()
    def prepare(self, micro: list[MicroBatch], batch: TrainBatch) -> None:
        """No-grad passes: pi_old when it can differ from the current policy, reference, D3S token mask."""
        token_fraction = batch.token_fraction
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
        loss = compute_aggregate(loss_tok, mask, self.aggregation, num_tokens=tok, num_seqs=seqs,
                                 norm_length=self.norm_length)
        if mb.ref is not None and self.cfg.kl_coef > 0:
            kl = self.kl_fn(logp, mb.ref) * mask
            kl_loss = compute_aggregate(kl, mask, self.aggregation, num_tokens=tok, num_seqs=seqs,
                                        norm_length=self.norm_length)
            loss = loss + self.cfg.kl_coef * kl_loss
            metrics = dict(metrics) | {"loss/kl": kl_loss.detach() * (tok / max(mask.sum().item(), 1))}
        row_loss = (loss_tok.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [b]
        return loss, metrics, row_loss
