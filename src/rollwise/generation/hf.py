"""HF transformers engine: a custom KV-cached sampling loop batched across prompts, with exact behaviour
logprobs and chunk-invariant seeded sampling.

Every requested sequence is a *row* with a global index (prompt ``i``'s ``j``-th sample comes after all
samples of prompts ``< i``). Rows are sorted by prompt length and decoded in chunks of ``batch_size``. The
randomness of row ``r`` at step ``t`` is the uniform ``u[r, t]`` of one ``[rows, max_new_tokens]`` draw from
a per-call ``torch.Generator``, consumed by inverse-CDF sampling, so a seeded call returns the same tokens
whatever the chunking or the order in which rows are decoded. ``t`` is the completion *position*, so a row
continued from a :class:`Prefix` of ``k`` tokens draws ``u[r, k:]``: cut a seeded row at ``k`` and continue it
with the same seed and row layout, and it redraws the uninterrupted row's tokens.

Engine API (generation/base.py): a prefix is prefilled with the prompt (rows with the same prompt and prefix
share that prefill); ``outputs`` and ``control`` are recorded by generation/hf_record.py's ``Recorder`` and cost
nothing when off (the forward asks for hidden states only when they are wanted; top-k and entropy need one
log-softmax per step). The step callback runs per chunk of ``batch_size`` rows; ``Decision.ABORT`` alone also
marks the call aborted, so later chunks are not decoded. Fork is not a primitive here: LATR branches by
continuing from the prefix ``parent[:t] + [token]`` (a new prefill instead of a KV copy).

HAPO's adaptive sampling temperature (arXiv:2509.16591), knob ``entropy_temperature_tau`` (0 = off; HAPO 0.05):
each step samples at T_t = T (1 + tau clamp(h_t, -1, 1)), h_t being the step's logit entropy (at the base T)
normalised with the statistics of the previous training batch (``observe_update``; until the first update the
engine samples at T). Behaviour logprobs are those of T_t, the temperature actually used; the trainer's pi_old
is at T, so once statistics have arrived ``samples_off_policy`` is True and the update recomputes pi_old and
applies the decoupled behaviour-IS weight pi_old / mu (``algo.behaviour_is_cap``; None leaves the rollouts
uncorrected, as HAPO's released code does).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from rollwise.algos.hapo import EntropyNorm, apply_entropy_norm
from rollwise.generation.base import (
    WORK_KEYS,
    Completion,
    Decision,
    GenerateStats,
    OutputSpec,
    Prefix,
    SamplingParams,
    StepControl,
    StepView,
    check_request,
    distinct_rows,
    pad_outputs,
    prefix_completion,
    prefix_finish,
    resolve_decision,
)
from rollwise.generation.hf_record import REASONS, CallState, Recorder
from rollwise.generation.kv_store import KVStore


def _left_padded(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask [U, max len] of ``seqs``, left-padded."""
    N = max(len(q) for q in seqs)
    ids = torch.full((len(seqs), N), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), N), dtype=torch.long)
    for u, q in enumerate(seqs):
        ids[u, N - len(q) :] = torch.tensor(q, dtype=torch.long)
        attn[u, N - len(q) :] = 1
    return ids, attn


def compute_sample(logits: torch.Tensor, u: torch.Tensor, temperature: float | torch.Tensor,
                   top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from ``logits`` [B, V] with uniforms ``u`` [B]; return (tokens, logprobs) [B].

    ``temperature`` is one float or one per row ([B], all > 0). The logprob is log_softmax(logits / T) of the
    sampled token before top-p truncation (T = 1 when greedy).
    """
    if not isinstance(temperature, torch.Tensor) and temperature <= 0.0:
        logp = F.log_softmax(logits, dim=-1)  # [B, V]
        tok = logits.argmax(-1)  # [B]
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)
    t = temperature[:, None].to(logits.dtype) if isinstance(temperature, torch.Tensor) else temperature
    logp = F.log_softmax(logits / t, dim=-1)  # [B, V]
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)  # [B, V]
        probs = sorted_logp.exp()
        # keep the smallest prefix whose mass reaches top_p (the top token is always kept)
        probs = probs * ((probs.cumsum(-1) - probs) < top_p)
    else:
        order, probs = None, logp.exp()
    cdf = probs.cumsum(-1)  # [B, V], unnormalised
    idx = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1])[:, None], right=True)  # [B, 1]
    pos = torch.arange(probs.shape[-1], device=probs.device)  # [V]
    last = torch.where(probs > 0, pos, 0).amax(-1, keepdim=True)  # [B, 1]: rounding never picks a zero-mass token
    idx = torch.minimum(idx, last)
    tok = (order.gather(-1, idx) if order is not None else idx).squeeze(-1)  # [B]
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


def compute_entropy_temperature(logits: torch.Tensor, temperature: float, tau: float,
                                norm: EntropyNorm) -> torch.Tensor:
    """HAPO's per-row sampling temperature [B]: T (1 + tau clamp(h, -1, 1)), h the normalised entropy of
    softmax(logits / T) under the previous batch's statistics ``norm``."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)  # [B, V]
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)  # [B]; -inf logits (masked) add 0
    return temperature * (1.0 + tau * apply_entropy_norm(entropy, norm))


class HFEngine:
    """Generates with any HF causal LM in-process; shares the learner's module (no weight copy)."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 256,
                 device: str | torch.device | None = None, compact: bool = True, share_prefill: bool = True,
                 entropy_temperature_tau: float = 0.0, kv_cache_mb: float = 0.0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= entropy_temperature_tau < 1.0:
            raise ValueError(f"entropy_temperature_tau must lie in [0, 1), got {entropy_temperature_tau}")
        self.tau = entropy_temperature_tau
        self.entropy_norm: EntropyNorm | None = None  # the previous training batch's statistics (HAPO)
        self.model, self.tokenizer, self.batch_size, self.compact = model, tokenizer, batch_size, compact
        self.share_prefill = share_prefill  # rows with the same prompt (a group) share one prefill
        self._device = torch.device(device) if device is not None else None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.version = 0
        self._stats = GenerateStats()
        if kv_cache_mb < 0:
            raise ValueError(f"kv_cache_mb must be >= 0, got {kv_cache_mb}")
        # rows' keys/values kept across calls (APRIL resumes, LATR/ROSE branches, episode turns); None = off
        self.kv_store = KVStore(int(min(kv_cache_mb, 2.0**40) * 2**20)) if kv_cache_mb > 0 else None  # inf: no cap

    @property
    def device(self) -> torch.device:
        """The given device, else wherever the model's weights are now."""
        return self._device if self._device is not None else next(self.model.parameters()).device

    @property
    def last_stats(self) -> GenerateStats:
        return self._stats

    def sync_weights(self, model: Any, version: int) -> None:
        """The engine decodes with the learner's own module; only the version is recorded, and kept keys and
        values, computed by the older weights, are dropped."""
        if self.kv_store is not None and version != self.version:
            self.kv_store.clear()
        self.version = version

    def metrics(self) -> dict[str, float]:
        """The cross-call KV cache's hit/miss counters (``kv_cache/*``; empty when it is off)."""
        return self.kv_store.metrics() if self.kv_store is not None else {}

    def observe_update(self, feedback: dict[str, Any]) -> None:
        """Keep the entropy statistics of the last training batch, when it produced some (adaptive temperature)."""
        if self.tau > 0 and feedback.get("entropy_norm") is not None:
            self.entropy_norm = feedback["entropy_norm"]

    @property
    def samples_off_policy(self) -> bool:
        """True once sampled temperatures differ from the base T (the trainer's pi_old)."""
        return self.tau > 0 and self.entropy_norm is not None

    def generate(self, prompts: list[list[int]], counts: list[int], params: SamplingParams, *,
                 prefixes: list[Prefix | None] | None = None, outputs: OutputSpec | None = None,
                 control: StepControl | None = None) -> list[list[Completion]]:
        """Return ``counts[i]`` completions per prompt, in input order (options: see generation/base.py)."""
        check_request(prompts, counts, params, prefixes)
        t0 = time.perf_counter()
        rows = [i for i, c in enumerate(counts) for _ in range(c)]  # global row -> prompt index
        M = params.max_new_tokens
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        gen = torch.Generator().manual_seed(seed)
        # u[row, position]: indexed by completion position, so a continuation of a prefix draws what the
        # uninterrupted row would have drawn at the same position (and chunking never matters)
        noise = torch.rand((len(rows), max(M, 0)), generator=gen)  # [N, M]
        if params.row_seeds is not None:  # per-row streams: a row's noise is its seed's, wherever it sits
            noise = torch.stack([torch.rand(max(M, 0), generator=torch.Generator().manual_seed(int(s)))
                                 for s in params.row_seeds]) if rows else noise  # [N, M]
        stop = sorted({*params.stop_token_ids, *([self.eos_id] if self.eos_id is not None else [])})
        pre = prefixes if prefixes is not None else [None] * len(prompts)
        results: list[Completion | None] = [None] * len(rows)
        call = CallState(rows, control, outputs, pre)
        for r, i in enumerate(rows):  # rows whose prefix already finished are not decoded
            if (reason := prefix_finish(pre[i], M, stop)) is not None:
                results[r] = prefix_completion(pre[i], M, reason, outputs, self._text)
                call.finished[r] = reason
        todo = [r for r in range(len(rows)) if results[r] is None]
        seq_len = [len(prompts[i]) + (len(pre[i].token_ids) if pre[i] else 0) for i in rows]  # prompt + prefix
        order = sorted(todo, key=lambda r: seq_len[r])
        self._temperature_sum = 0.0  # sum of the per-token temperatures used (adaptive sampling)
        self._work = dict.fromkeys(WORK_KEYS, 0)  # this call's prefill / decode forwards, counted where they run
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(order), self.batch_size):
                    chunk = order[s : s + self.batch_size]
                    if call.abort_all:  # a callback aborted the call: later chunks return their prefix
                        for r in chunk:
                            results[r] = prefix_completion(pre[rows[r]], M, "abort", outputs, self._text)
                        continue
                    for r, out in zip(chunk, self._decode(chunk, prompts, noise[chunk], params, stop, call)):
                        results[r] = out
        finally:
            self.model.train(was_training)
        completions: list[list[Completion]] = [[] for _ in prompts]
        for r, c in enumerate(results):
            assert c is not None
            completions[rows[r]].append(c)
        self._stats = GenerateStats(
            sequences=len(rows), prompt_tokens=sum(len(prompts[i]) for i in rows),
            completion_tokens=sum(len(c.token_ids) - c.prefix_len for c in results if c is not None),
            seconds=time.perf_counter() - t0, extra={"policy_version": self.version}, **self._work,
        )
        if self.samples_off_policy and params.temperature > 0:
            self._stats.extra["temperature_mean"] = self._temperature_sum / max(self._stats.completion_tokens, 1)
        return completions

    def _text(self, toks: list[int]) -> str:
        return self.tokenizer.decode(toks, skip_special_tokens=True)

    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, cache: Any, hidden: bool,
                 **kw: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of the last position [b, V] and, when asked, the last layer's states [b, T, d]."""
        out = self.model(ids, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True,
                         output_hidden_states=hidden, **kw)
        return out.logits[:, -1], (out.hidden_states[-1] if hidden else None)

    def _decode(self, chunk: list[int], prompts: list[list[int]], noise: torch.Tensor, params: SamplingParams,
                stop: list[int], call: CallState) -> list[Completion]:
        """KV-cached sampling of one chunk of rows: left-padded prompt + prefix, position ids from the mask.

        Rows with the same prompt and prefix (a GRPO group) share one prefill: the cache is gathered to the rows.
        Row ``b`` with a prefix of ``L_b`` tokens samples completion position ``L_b + t`` at step ``t``.
        """
        B, M, dev = len(chunk), params.max_new_tokens, self.device
        pre = [call.prefixes[call.rows[r]] for r in chunk]
        L = torch.tensor([len(p.token_ids) if p else 0 for p in pre], device=dev)  # [B] forced tokens per row
        seqs = [prompts[call.rows[r]] + (list(p.token_ids) if p else []) for r, p in zip(chunk, pre)]
        heads, index = distinct_rows(seqs) if self.share_prefill else (seqs, list(range(B)))
        index = torch.tensor(index, device=dev)  # [B] row -> its prefill row
        cache = DynamicCache(config=self.model.config)
        kept = self._kept(heads, call)  # [U] tokens whose keys/values a kept row already holds (0: none)
        ids, attn = _left_padded([q[m:] for q, m in zip(heads, kept)], self.pad_id)  # [U, N] what is new
        if any(kept):  # cached part right-aligned in front of the new part, its holes masked
            attn = torch.cat([self._fill_cache(cache, heads, kept), attn], dim=-1)  # [U, K + N]
        ids, attn, noise = ids.to(dev), attn.to(dev), noise.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, attn.shape[1] - ids.shape[1] :]  # [U, N]
        next_pos = attn.sum(-1, keepdim=True)[index]  # [B, 1]: position of the first new token
        stop_t = torch.tensor(stop, dtype=torch.long, device=dev)
        S = M - int(L.min())  # decode steps of the longest-running row
        tokens = torch.full((B, S), self.pad_id, dtype=torch.long, device=dev)  # [B, S] new tokens
        logps = torch.zeros((B, S), device=dev)  # [B, S]
        n_new = (M - L).clone()  # [B] new tokens per row (final once the row is done)
        reason = torch.zeros(B, dtype=torch.long, device=dev)  # index into REASONS; 0 = length
        rec = Recorder(call, B, S, dev)
        active = torch.arange(B, device=dev)  # rows still in the (compacted) batch
        done = torch.zeros(B, dtype=torch.bool, device=dev)  # per active row
        fed = attn.shape[1]  # cache width before decoding: later columns hold the fed new tokens
        logits, h = self._forward(ids, attn, pos, cache, rec.hidden, logits_to_keep=1)
        self._work["prefill_tokens"] += sum(len(q) - m for q, m in zip(heads, kept))  # real tokens, pads not
        logits = logits[index]  # [B, V]
        if h is not None:
            rec.prefill_hidden(h[index], L)  # [B, P, d]
        cache.reorder_cache(index)  # [U, ..] -> [B, ..]
        attn = attn[index]  # [B, P]
        adaptive = self.samples_off_policy and params.temperature > 0
        temp_sum = 0.0
        for t in range(S):
            temp = params.temperature
            if adaptive:
                temp = compute_entropy_temperature(logits, params.temperature, self.tau, self.entropy_norm)  # [b]
                temp_sum += float(temp[~done].sum())
            u = noise[active, (L[active] + t).clamp(max=M - 1)]  # [b]: u[row, completion position]
            tok, lp = compute_sample(logits.float(), u, temp, params.top_p)  # [b]
            tok = tok.masked_fill(done, self.pad_id)
            tokens[active, t], logps[active, t] = tok, lp
            rec.step(logits, params.temperature, active, t)
            hit = torch.isin(tok, stop_t) & ~done  # [b]
            reason[active[hit]] = 1
            cut = hit | ((L[active] + t + 1 >= M) & ~done)  # [b] stop token or whole-completion budget reached
            n_new[active[cut]] = t + 1
            done = done | cut
            if call.control is not None:
                call.note_finished(chunk, active, done, reason)
                if (t + 1) % call.control.every == 0:
                    done = self._ask(call, chunk, pre, active, done, tokens, t, rec, reason, n_new)
                    call.note_finished(chunk, active, done, reason)
            if bool(done.all()):
                break
            if self.compact and int(done.sum()) * 4 >= len(done):  # drop finished rows once >= 1/4 are
                keep = (~done).nonzero().squeeze(-1)  # [b']
                self._keep_rows(cache, attn, done.nonzero().squeeze(-1), active, seqs, tokens, fed)
                cache.batch_select_indices(keep)
                active, done, attn, next_pos = active[keep], done[keep], attn[keep], next_pos[keep]
                tok = tok[keep]
            attn = torch.cat([attn, (~done).long()[:, None]], dim=-1)  # [b, T + 1]; finished rows fed pad
            logits, h = self._forward(tok[:, None], attn, next_pos, cache, rec.hidden)  # [b, V]
            self._work["decode_steps"] += 1
            self._work["decode_row_steps"] += len(tok)  # the forward's batch: done rows not yet compacted out too
            if h is not None:
                rec.decode_hidden(h[:, -1], active, done, L[active] + t)  # state at the token just fed
            next_pos = next_pos + 1
        self._keep_rows(cache, attn, torch.arange(len(active), device=dev), active, seqs, tokens, fed)
        self._temperature_sum += temp_sum
        return [self._completion(b, p, tokens, logps, n_new, reason, rec, call.outputs) for b, p in enumerate(pre)]

    def _kept(self, heads: list[list[int]], call: CallState) -> list[int]:
        """How many leading tokens of each prefill row the store holds (all 0 when it is off, or when the call
        records hidden states, which need the full prefill)."""
        hidden = bool(call.outputs and call.outputs.hidden_every) or bool(call.control and call.control.hidden)
        if self.kv_store is None or hidden:
            return [0] * len(heads)
        self._hits = [self.kv_store.lookup(q) for q in heads]
        return [m for _, m in self._hits]

    def _fill_cache(self, cache: Any, heads: list[list[int]], kept: list[int]) -> torch.Tensor:
        """Put the kept rows' keys/values, right-aligned in ``K = max(kept)`` columns, into ``cache``; return
        their mask [U, K] (1 on kept positions)."""
        K, dev = max(kept), self.device
        attn = torch.zeros((len(heads), K), dtype=torch.long)
        layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for u, ((kv, m), _) in enumerate(zip(self._hits, heads)):
            if not m:
                continue
            attn[u, K - m :] = 1
            for li, (k, v) in enumerate(kv):
                if len(layers) <= li:
                    shape = (len(heads), k.shape[1], K, k.shape[3])
                    layers.append((k.new_zeros(shape), v.new_zeros(shape)))
                layers[li][0][u, :, K - m :], layers[li][1][u, :, K - m :] = k[0], v[0]
        for li, (k, v) in enumerate(layers):
            cache.update(k.to(dev), v.to(dev), li)
        return attn

    def _keep_rows(self, cache: Any, attn: torch.Tensor, rows: torch.Tensor, active: torch.Tensor,
                   seqs: list[list[int]], tokens: torch.Tensor, fed: int) -> None:
        """Keep rows ``rows`` (indices into the active batch) of ``cache`` in the store: each row's positions
        where ``attn`` [b, T] is 1, covering its prompt + prefix and the new tokens it fed."""
        if self.kv_store is None or len(rows) == 0 or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return  # only full-attention layers hold every position (a sliding window's slice would be wrong)
        for j in rows.tolist():
            b = int(active[j])
            where = attn[j].nonzero().squeeze(-1)  # [t] real positions of the row
            n_fed = int(attn[j, fed:].sum())
            covered = seqs[b] + tokens[b, :n_fed].tolist()
            kv = [(layer.keys[j : j + 1, :, where].clone(), layer.values[j : j + 1, :, where].clone())
                  for layer in cache.layers]
            self.kv_store.put(covered, kv)

    def _ask(self, call: CallState, chunk: list[int], pre: list[Prefix | None], active: torch.Tensor,
             done: torch.Tensor, tokens: torch.Tensor, t: int, rec: Recorder, reason: torch.Tensor,
             n_new: torch.Tensor) -> torch.Tensor:
        """Show the live rows to the step callback and apply its decisions; return the updated ``done``."""
        live = (~done).nonzero().squeeze(-1)  # [l] indices into the active batch
        if len(live) == 0:
            return done
        by_row = sorted(range(len(live)), key=lambda j: chunk[int(active[live[j]])])  # view rows in row order
        live = live[torch.tensor(by_row, dtype=torch.long, device=live.device)]
        local = active[live]  # [l] chunk rows
        ids = [chunk[b] for b in local.tolist()]
        new = tokens[local, : t + 1].tolist()
        view = StepView(
            step=t + 1, rows=ids, groups=[call.rows[r] for r in ids],
            tokens=[(list(pre[b].token_ids) if pre[b] else []) + n for b, n in zip(local.tolist(), new)],
            finished=dict(call.finished), total_rows=len(call.rows), **rec.view(live))
        answer = call.control.callback(view)
        if answer is Decision.ABORT:
            call.abort_all = True
        decided = resolve_decision(answer, ids)
        unknown = set(decided) - set(ids)
        if unknown:
            raise ValueError(f"step callback decided for rows {sorted(unknown)} that are not live")
        pos = {r: j for j, r in enumerate(ids)}
        for r, d in decided.items():
            b = int(live[pos[r]])
            reason[active[b]] = REASONS.index(d.value)
            n_new[active[b]] = t + 1
            done[b] = True
        return done

    def _completion(self, b: int, prefix: Prefix | None, tokens: torch.Tensor, logps: torch.Tensor,
                    n_new: torch.Tensor, reason: torch.Tensor, rec: Recorder,
                    outputs: OutputSpec | None) -> Completion:
        """Row ``b``'s completion: its prefix (stored logprobs and versions) + the ``n_new[b]`` tokens sampled."""
        n = int(n_new[b])
        new = tokens[b, :n].tolist()
        toks = (list(prefix.token_ids) if prefix else []) + new
        c = Completion(toks, (list(prefix.logprobs) if prefix else []) + logps[b, :n].tolist(),
                       REASONS[int(reason[b])], self._text(toks),
                       (prefix.version_list() if prefix else []) + [self.version] * n,
                       prefix_len=len(toks) - n)
        if outputs is not None:
            rec.fill(c, b, n, outputs)
        return pad_outputs(c, outputs)
