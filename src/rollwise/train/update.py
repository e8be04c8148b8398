"""The policy update: ``epochs`` passes of ``mini_batches`` optimiser steps over a step's micro-batches, with
gradient accumulation normalised by global token and sequence totals (so micro-batched == full batch), the
no-grad passes it needs (pi_old, token entropies, reference, D3S token mask), the configured advantage shapers,
and a guard that skips non-finite steps.

What the no-grad pass computes is declared by the components, never chosen by name here: a shaper or loss lists
``needs`` ("reference", "entropy"). Shapers and a loss's ``prepare`` run once over the whole batch (the
micro-batches padded and stacked), so their batch statistics are exact under micro-batching.

The off-policy correction (``algo.correction``, ``algos/corrections.py``) is driven the same way: it declares
whether it wants the pi_prox pass (``prox``) and the reference (``needs``); its ``prepare`` runs once over the
whole batch and gives per-token weights, a token mask, an lr scale for this step's optimiser steps (restored
after each) and metrics; its ``tokens`` gives, per micro-batch, a new trust-region anchor, weights and a
penalty. The step's weight version comes with the batch (``TrainBatch.version``), so staleness is logged for
every correction (``offpolicy/stale_*``, ``trace/stale_hist``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rollwise.algos import (
    AGGREGATIONS,
    CORRECTIONS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    SHAPERS,
    LossParams,
    compute_aggregate,
)
from rollwise.algos.corrections import CorrectionBatch, TokenInputs, compute_staleness_metrics
from rollwise.algos.d3s import compute_d3s_token_mask
from rollwise.algos.shaping import ShapingContext, needs_of
from rollwise.components import knobs
from rollwise.train.batch import MicroBatch, TrainBatch
from rollwise.train.policy import SeqBatch, compute_logprobs

COMPILE_OPTIONS: dict[str, Any] = {"dynamic": True}  # torch.compile options of ``algo.compile`` (shapes vary per step)


def _row(seq: SeqBatch, i: int) -> SeqBatch:
    """Row ``i`` of a batch as a batch of one, cut to its own completion length (completions are right-padded)."""
    c = max(int(seq.completion_mask[i].sum()), 1)
    end = seq.input_ids.shape[1] - seq.completion_ids.shape[1] + c
    return SeqBatch(seq.input_ids[i : i + 1, :end], seq.attention_mask[i : i + 1, :end],
                    seq.position_ids[i : i + 1, :end], seq.completion_ids[i : i + 1, :c],
                    seq.completion_mask[i : i + 1, :c])


def _stack(parts: list[torch.Tensor], width: int) -> torch.Tensor:
    """Right-pad [b, c] parts to ``width`` columns and stack them: [B, width]."""
    return torch.cat([F.pad(t, (0, width - t.shape[1])) for t in parts])


@dataclass
class UpdateParts:
    """The update's components, built from ``[algo]`` once: the policy loss (a function) with its knobs, the
    advantage shapers (functions) with theirs, and the off-policy correction (an instance). What they need from
    the no-grad pass is read from these built objects, one way for all (:func:`needs_of`), so a need that
    depends on a knob (ReMix's reference only when its KL-to-base term is on) is seen wherever it is asked."""

    loss_fn: Any
    loss_knobs: dict[str, Any]
    shapers: list[tuple[Any, dict[str, Any]]]
    correction: Any

    @classmethod
    def build(cls, cfg: Any) -> UpdateParts:
        """From a validated ``AlgoConfig``."""
        return cls(POLICY_LOSSES.get(cfg.loss.type), knobs(cfg.loss),
                   [(SHAPERS.get(s.type), knobs(s)) for s in cfg.shaping],
                   CORRECTIONS.get(cfg.correction.type)(**knobs(cfg.correction)))

    @property
    def needs(self) -> frozenset[str]:
        return needs_of(self.loss_fn).union(needs_of(self.correction), *(needs_of(fn) for fn, _ in self.shapers))

    def wants_reference(self, kl_coef: float) -> bool:
        """Whether a frozen reference model must be built: a KL penalty, or a part that reads it."""
        return kl_coef > 0 or "reference" in self.needs


class PolicyUpdate:
    """Runs ``epochs`` passes of ``mini_batches`` optimiser steps over a TrainBatch."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: Any,
                 temperature: float, norm_length: int, ref_model: torch.nn.Module | None = None,
                 parts: UpdateParts | None = None) -> None:
        self.model, self.opt, self.cfg, self.ref = model, optimizer, cfg, ref_model
        # algo.compile: the trainer's forwards go through a compiled wrapper of the same module (shared weights);
        # off by default: on CPU at the default's shapes its compile time outweighs its gain (benchmarks.md)
        self._fwd = torch.compile(model, **COMPILE_OPTIONS) if cfg.compile else model
        self.temperature, self.norm_length = temperature, norm_length
        parts = parts or UpdateParts.build(cfg)
        self.loss_fn, self.loss_knobs, self.shapers, self.correction = (parts.loss_fn, parts.loss_knobs,
                                                                         parts.shapers, parts.correction)
        self.kl_fn = KL_ESTIMATORS.get(cfg.kl_estimator.type)
        self.aggregation = cfg.aggregation.type
        AGGREGATIONS.get(self.aggregation)  # fail early on an unknown mode
        self.params = LossParams(clip_low=cfg.clip_low, clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
                                 behaviour_is_cap=cfg.behaviour_is_cap)
        self.needs = parts.needs
        if "reference" in self.needs and ref_model is None:
            raise ValueError("a configured shaper, loss or correction needs a reference model; pass ref_model")
        if self.correction.replaces_advantages and self.shapers:
            raise ValueError(f"algo.correction: {cfg.correction.type!r} replaces the advantages; not with algo.shaping")
        self.feedback: dict[str, Any] = {}  # what the last update measured for the engine (HAPO: entropy_norm)
        self.engine_off_policy = False  # the engine samples from another distribution than pi_old (feed())
        self._prep_metrics: dict[str, Any] = {}
        self._lr_scale: float | None = None  # the correction's scale of this step's lr (VCPO)
        self._version = 0  # the step's weight version
        self.events: set[str] = set()  # what this update did that the sampler hears of ("policy_reset")

    def take_events(self) -> set[str]:
        """What the last update did that the sampler hears of (``policy_reset``), once."""
        events, self.events = self.events, set()
        return events

    def feed(self, engine: Any) -> None:
        """Hand the engine this update's feedback, if it takes any (``engine.observe_update``), and learn
        whether its samples now come from another distribution than the trainer's pi_old (HAPO's adaptive
        temperature): if so, later updates recompute pi_old and apply the decoupled behaviour-IS weight."""
        observe = getattr(engine, "observe_update", None)
        if observe is not None:
            observe(self.feedback)
        self.engine_off_policy = bool(getattr(engine, "samples_off_policy", False))

    @torch.no_grad()
    def prepare(self, micro: list[MicroBatch], batch: TrainBatch) -> None:
        """No-grad passes: pi_old (when it can differ from the current policy, or a component reads it), token
        entropies and reference when declared, the D3S token mask, then the shapers and the loss's own
        whole-batch step."""
        token_fraction = batch.token_fraction
        self._version, self._lr_scale, self._prep_metrics, self.events = batch.version, None, {}, set()
        multi = (self.cfg.epochs > 1 or self.cfg.mini_batches > 1 or bool(batch.off_policy.any())
                 or self.engine_off_policy)
        prox = self.correction.prox  # "auto": when pi_old can differ from the current policy
        anchor = prox == "always" or (multi and prox == "auto")
        want_ent = token_fraction is not None or "entropy" in self.needs
        want_old = anchor or want_ent or bool(self.shapers)
        if self.ref is not None and self.correction.reset_reference(batch.version):
            self.ref.load_state_dict(self.model.state_dict())  # ReMix's policy reincarnation
            self.events.add("policy_reset")
            self._prep_metrics["offpolicy/policy_reset"] = 1.0  # the step that reincarnated (signature counter)
        olds, ents = [], []
        for mb in micro:
            if want_old:
                lp, ent = self._logprobs(self._fwd, mb.seq, with_entropy=want_ent)
                mb.old = lp if anchor else None
                olds.append(lp)
                ents.append(ent)
            if self.ref is not None:
                mb.ref, _ = self._logprobs(self.ref, mb.seq)
        if not micro:
            return
        C = max(mb.seq.completion_mask.shape[1] for mb in micro)
        mask = _stack([mb.seq.completion_mask for mb in micro], C)  # [B, C]
        if want_old:
            entropy = _stack(ents, C) if want_ent else None  # [B, C]
            if token_fraction is not None and token_fraction < 1.0:
                adv = torch.cat([mb.advantages for mb in micro])
                self._split(micro, "token_mask", compute_d3s_token_mask(adv, entropy, mask, token_fraction).float())
            if self.shapers:
                self._shape(micro, batch, mask, _stack(olds, C), entropy)
            if "entropy" in needs_of(self.loss_fn):  # the loss's whole-batch step (HAPO: h and its statistics)
                prep = getattr(self.loss_fn, "prepare", None)
                x, self.feedback = prep(entropy, mask, **self.loss_knobs) if prep else (entropy, {})
                self._split(micro, "entropy", x)
        self._correct(micro, batch, mask, _stack(ents, C) if want_ent and ents else None)

    def _correct(self, micro: list[MicroBatch], batch: TrainBatch, mask: torch.Tensor,
                 entropy: torch.Tensor | None = None) -> None:
        """Staleness metrics and the correction's whole-batch step: weights, token mask, lr scale."""
        C = mask.shape[1]
        versions = _stack([self._versions(mb) for mb in micro], C)  # [B, C]
        versions = torch.where(mask > 0, versions, torch.full_like(versions, -1))
        self._prep_metrics |= compute_staleness_metrics(versions, batch.version, mask)
        old = _stack([mb.old for mb in micro], C) if all(mb.old is not None for mb in micro) else None
        ref = _stack([mb.ref for mb in micro], C) if self.ref is not None else None
        rows, rewards, groups = self._row_info(micro, batch, mask)
        grad_sq = self._grad_sq(micro).to(mask.device) if "grad_norms" in self.needs else None
        prep = self.correction.prepare(CorrectionBatch(mask, _stack([mb.behaviour for mb in micro], C), versions,
                                                       batch.version, old, ref, rewards, groups, grad_sq,
                                                       entropy))
        if prep.weight is not None:
            self._split(micro, "is_weight", prep.weight)
        if prep.advantages is not None:  # [B] per rollout
            self._split(micro, "advantages", prep.advantages)
        if prep.keep is not None:
            for mb, keep in zip(micro, self._parts(micro, prep.keep)):
                mb.token_mask = keep if mb.token_mask is None else mb.token_mask * keep
        self._lr_scale = prep.lr_scale
        self._prep_metrics |= prep.metrics

    def _grad_sq(self, micro: list[MicroBatch]) -> torch.Tensor:
        """||grad_theta log pi_theta(rollout)||^2 per rollout [B], the log-likelihood aggregated over the row as
        the loss aggregates it (up to a factor common to all rows): one gradient per rollout (VCPO's baseline)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        out: list[float] = []
        with torch.enable_grad():
            for mb in micro:
                for i in range(mb.seq.completion_mask.shape[0]):
                    row = _row(mb.seq, i)  # a forward of one row: a backward costs that row only
                    if float(row.completion_mask.sum()) == 0:
                        out.append(0.0)
                        continue
                    logp, _ = self._logprobs(self.model, row)  # [1, C]
                    s = compute_aggregate(logp, row.completion_mask, self.aggregation, num_tokens=1.0,
                                          num_seqs=1.0, norm_length=self.norm_length)
                    grads = torch.autograd.grad(s, params, allow_unused=True)
                    out.append(sum(float((g.double() ** 2).sum()) for g in grads if g is not None))
        return torch.tensor(out, dtype=torch.float64)

    @staticmethod
    def _versions(mb: MicroBatch) -> torch.Tensor:
        if mb.versions is not None:
            return mb.versions
        return torch.full(mb.seq.completion_mask.shape, -1, dtype=torch.long, device=mb.seq.completion_mask.device)

    def _shape(self, micro: list[MicroBatch], batch: TrainBatch, mask: torch.Tensor, old: torch.Tensor,
               entropy: torch.Tensor | None) -> None:
        """Apply the configured shapers, in order, to the whole batch's per-token advantages."""
        adv = torch.cat([mb.advantages.unsqueeze(-1) if mb.advantages.dim() == 1 else mb.advantages
                         for mb in micro])  # [B, 1] or [B, C]
        rows, rewards, groups = self._row_info(micro, batch, mask)
        ref = _stack([mb.ref for mb in micro], mask.shape[1]) if self.ref is not None else None
        ctx = ShapingContext(adv.expand_as(mask) * mask, mask, old, ref, entropy, rewards, groups,
                             [batch.rollouts[i].meta for i in rows.tolist()])
        for fn, params in self.shapers:
            ctx.advantages, metrics = fn(ctx, params)
            self._prep_metrics |= {k: float(v) for k, v in metrics.items()}
        self._split(micro, "advantages", ctx.advantages)

    @staticmethod
    def _row_info(micro: list[MicroBatch], batch: TrainBatch,
                  mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stacked rows' batch indices, rewards and group indices, each [B] (rewards on the mask's device)."""
        rows = torch.cat([torch.arange(len(batch.rollouts))[mb.rows] for mb in micro])
        rewards = torch.tensor([batch.rollouts[i].reward for i in rows.tolist()], dtype=mask.dtype)
        return rows, rewards.to(mask.device), batch.group_index[rows].to(mask.device)

    @staticmethod
    def _parts(micro: list[MicroBatch], full: torch.Tensor) -> list[torch.Tensor]:
        """Each micro-batch's rows (and, for [B, C], columns) of a whole-batch [B] or [B, C] tensor."""
        out, row = [], 0
        for mb in micro:
            b, c = mb.seq.completion_mask.shape
            out.append(full[row : row + b] if full.dim() == 1 else full[row : row + b, :c])
            row += b
        return out

    @classmethod
    def _split(cls, micro: list[MicroBatch], attr: str, full: torch.Tensor) -> None:
        """Give each micro-batch its rows (and columns) of a whole-batch [B] or [B, C] tensor."""
        for mb, part in zip(micro, cls._parts(micro, full)):
            setattr(mb, attr, part)

    def run(self, micro: list[MicroBatch], num_rows: int) -> tuple[dict[str, float], torch.Tensor, bool]:
        """Optimise; return metrics, the per-rollout surrogate loss of the last pass ([B]), and success."""
        per_row = torch.zeros(num_rows)
        sums: dict[str, float] = {}
        n_mb = max(self.cfg.mini_batches, 1)
        chunks = [micro[i::n_mb] for i in range(n_mb)] if len(micro) >= n_mb else [micro]
        live = {id(mb): self._live_rows(mb) for mb in micro}  # [b] bool per micro-batch (None: all rows run)
        ran = sum(len(mb.advantages) if live[id(mb)] is None else int(live[id(mb)].sum()) for mb in micro)
        ok = True
        for _ in range(self.cfg.epochs):
            for chunk in chunks:
                masks = [self._mask(mb) for mb in chunk]
                tok = sum(float(m.sum()) for m in masks)  # normalisers over every row, skipped ones included
                seqs = sum(float((m.sum(-1) > 0).sum()) for m in masks)
                self.opt.zero_grad(set_to_none=True)
                total, backward = 0.0, False
                for mb, mask in zip(chunk, masks):
                    keep = live[id(mb)]
                    if keep is not None:  # rows with zero advantage everywhere: 0 loss, 0 gradient, not run
                        if not bool(keep.any()):
                            continue
                        idx = keep.nonzero().squeeze(-1)
                        mb, mask = mb.select(idx), mask[idx]
                    loss, metrics, row_loss = self._micro_loss(mb, mask, tok, seqs)
                    loss.backward()
                    backward = True
                    total += loss.item()
                    per_row[mb.rows] = row_loss
                    for k, v in metrics.items():  # metrics are means over the rows that ran
                        sums[k] = sums.get(k, 0.0) + float(v) * len(mb.advantages) / max(ran, 1)
                if not backward:  # every row of the chunk skipped: step as the full update's zero gradients would
                    self._zero_grads()
                if not torch.isfinite(torch.tensor(total)):
                    self.opt.zero_grad(set_to_none=True)
                    ok = False
                    continue
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                if not torch.isfinite(gn):
                    self.opt.zero_grad(set_to_none=True)
                    ok = False
                    continue
                self._step()
                sums["loss/total"] = sums.get("loss/total", 0.0) + total / (len(chunks) * self.cfg.epochs)
                sums["loss/grad_norm"] = float(gn)
        passes = self.cfg.epochs * len(chunks)
        out = {k: (v / passes if k not in ("loss/total", "loss/grad_norm") else v) for k, v in sums.items()}
        out["perf/update_rows_skipped"] = num_rows - ran
        return out | self._prep_metrics, per_row, ok

    def _zero_grads(self) -> None:
        """Zero gradients for a chunk whose rows were all skipped: the full update's backward would have left
        zeros, and AdamW's step must still see them (its momentum and weight decay move the weights), not
        ``None`` (which it skips)."""
        for p in self.model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)

    def _live_rows(self, mb: MicroBatch) -> torch.Tensor | None:
        """[b] bool: the rows whose forward and backward can change the update, i.e. some token under the loss
        mask has a non-zero advantage; None when every row must run (``algo.skip_zero_rows`` off, a KL penalty, a
        correction penalty, or a loss not declared zero at zero advantage). A skipped row's loss and gradient
        are exactly 0, and the token and sequence normalisers still count it, so the update is unchanged."""
        if not (self.cfg.skip_zero_rows and self.cfg.kl_coef == 0 and not self.correction.adds_penalty
                and getattr(self.loss_fn, "zero_at_zero_advantage", False)):
            return None
        mask = self._mask(mb) > 0  # [b, C]
        adv = mb.advantages if mb.advantages.dim() == 2 else mb.advantages.unsqueeze(-1).expand_as(mask)
        keep = ((adv != 0) & mask).any(-1)  # [b]
        return None if bool(keep.all()) else keep

    def _step(self) -> None:
        """One optimiser step, its lr scaled by the correction's factor (VCPO) and restored afterwards."""
        if self._lr_scale is None:
            self.opt.step()
            return
        saved = [g["lr"] for g in self.opt.param_groups]
        for g in self.opt.param_groups:
            g["lr"] = g["lr"] * self._lr_scale
        try:
            self.opt.step()
        finally:
            for g, lr in zip(self.opt.param_groups, saved):
                g["lr"] = lr

    def _logprobs(self, model: torch.nn.Module, seq: SeqBatch,
                  with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        return compute_logprobs(model, seq, self.temperature, with_entropy=with_entropy,
                                share_prefix=self.cfg.share_prefix, length_buckets=self.cfg.length_buckets)

    def _mask(self, mb: MicroBatch) -> torch.Tensor:
        return mb.seq.completion_mask if mb.token_mask is None else mb.seq.completion_mask * mb.token_mask

    def _micro_loss(self, mb: MicroBatch, mask: torch.Tensor, tok: float,
                    seqs: float) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor]:
        logp, _ = self._logprobs(self._fwd, mb.seq)  # [b, C]
        terms = self.correction.tokens(TokenInputs(logp, mb.seq.completion_mask, mb.behaviour, self._versions(mb),
                                                   self._version, mb.old, mb.ref))
        old = mb.old if mb.old is not None else logp.detach()
        old = terms.anchor.detach() if terms.anchor is not None else old
        beh = mb.behaviour if mb.old is not None and self.correction.loss_behaviour else None
        extra = {"entropy": mb.entropy} if mb.entropy is not None else {}
        if "off_policy_mask" in needs_of(self.loss_fn):  # SCOPE's spliced tokens, None when none this batch
            extra["off_policy_mask"] = mb.off_mask
        loss_tok, metrics = self.loss_fn(logp, old, mb.advantages, mask, self.params, beh, **self.loss_knobs, **extra)
        for w in (mb.is_weight, terms.weight):
            if w is not None:
                loss_tok = loss_tok * w.detach()
        loss = compute_aggregate(loss_tok, mask, self.aggregation, num_tokens=tok, num_seqs=seqs,
                                 norm_length=self.norm_length)
        if terms.metrics:
            metrics = dict(metrics) | terms.metrics
        if terms.penalty is not None:
            pen = compute_aggregate(terms.penalty * mask, mask, self.aggregation, num_tokens=tok, num_seqs=seqs,
                                    norm_length=self.norm_length)
            loss = loss + pen
            metrics = dict(metrics) | {"offpolicy/penalty": pen.detach() * (tok / max(mask.sum().item(), 1))}
        if mb.ref is not None and self.cfg.kl_coef > 0:
            kl = self.kl_fn(logp, mb.ref) * mask
            kl_loss = compute_aggregate(kl, mask, self.aggregation, num_tokens=tok, num_seqs=seqs,
                                        norm_length=self.norm_length)
            loss = loss + self.cfg.kl_coef * kl_loss
            metrics = dict(metrics) | {"loss/kl": kl_loss.detach() * (tok / max(mask.sum().item(), 1))}
        row_loss = (loss_tok.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # [b]
        return loss, metrics, row_loss
