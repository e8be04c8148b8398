"""HF transformers engine: a custom KV-cached sampling loop batched across prompts, with exact behaviour
logprobs and chunk-invariant seeded sampling.

Every requested sequence is a *row* with a global index (prompt ``i``'s ``j``-th sample comes after all
samples of prompts ``< i``). Rows are sorted by prompt length and decoded in chunks of ``batch_size``. The
randomness of row ``r`` at step ``t`` is the uniform ``u[r, t]`` of one ``[rows, max_new_tokens]`` draw from
a per-call ``torch.Generator``, consumed by inverse-CDF sampling, so a seeded call returns the same tokens
whatever the chunking or the order in which rows are decoded.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from rollwise.generation.base import Completion, GenerateStats, SamplingParams, check_request, distinct_rows


def compute_sample(logits: torch.Tensor, u: torch.Tensor, temperature: float,
                   top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from ``logits`` [B, V] with uniforms ``u`` [B]; return (tokens, logprobs) [B].

    The logprob is log_softmax(logits / T) of the sampled token before top-p truncation (T = 1 when greedy).
    """
    if temperature <= 0.0:
        logp = F.log_softmax(logits, dim=-1)  # [B, V]
        tok = logits.argmax(-1)  # [B]
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)
    logp = F.log_softmax(logits / temperature, dim=-1)  # [B, V]
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)  # [B, V]
        probs = sorted_logp.exp()
        # keep the smallest prefix whose mass reaches top_p (the top token is always kept)
        probs = probs * ((probs.cumsum(-1) - probs) < top_p)
    else:
        order, probs = None, logp.exp()
    cdf = probs.cumsum(-1)  # [B, V], unnormalised
    idx = torch.searchsorted(cdf, (u.to(cdf.dtype) * cdf[:, -1])[:, None], right=True)  # [B, 1]
    last = (probs > 0).cumsum(-1).argmax(-1, keepdim=True)  # [B, 1]: rounding never picks a zero-mass token
    idx = torch.minimum(idx, last)
    tok = (order.gather(-1, idx) if order is not None else idx).squeeze(-1)  # [B]
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


class HFEngine:
    """Generates with any HF causal LM in-process; shares the learner's module (no weight copy)."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 256,
                 device: str | torch.device | None = None, compact: bool = True, share_prefill: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.batch_size, self.compact = model, tokenizer, batch_size, compact
        self.share_prefill = share_prefill  # rows with the same prompt (a group) share one prefill
        self._device = torch.device(device) if device is not None else None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.version = 0
        self._stats = GenerateStats()

    @property
    def device(self) -> torch.device:
        """The given device, else wherever the model's weights are now."""
        return self._device if self._device is not None else next(self.model.parameters()).device

    @property
    def last_stats(self) -> GenerateStats:
        return self._stats

    def sync_weights(self, model: Any, version: int) -> None:
        """The engine decodes with the learner's own module; only the version is recorded."""
        self.version = version

    def generate(self, prompts: list[list[int]], counts: list[int],
                 params: SamplingParams) -> list[list[Completion]]:
        """Return ``counts[i]`` completions per prompt, in input order."""
        check_request(prompts, counts, params)
        t0 = time.perf_counter()
        rows = [i for i, c in enumerate(counts) for _ in range(c)]  # global row -> prompt index
        M = params.max_new_tokens
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand((len(rows), max(M, 0)), generator=gen)  # [N, M]: u[row, step], chunk-independent
        stop = sorted({*params.stop_token_ids, *([self.eos_id] if self.eos_id is not None else [])})
        order = sorted(range(len(rows)), key=lambda r: len(prompts[rows[r]]))
        results: list[tuple[list[int], list[float], str]] = [([], [], "length")] * len(rows)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(order), self.batch_size):
                    chunk = order[s : s + self.batch_size]
                    outs = self._decode([prompts[rows[r]] for r in chunk], noise[chunk], params, stop)
                    for r, out in zip(chunk, outs):
                        results[r] = out
        finally:
            self.model.train(was_training)
        completions: list[list[Completion]] = [[] for _ in prompts]
        for r, (toks, lps, reason) in enumerate(results):
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            completions[rows[r]].append(Completion(toks, lps, reason, text))
        self._stats = GenerateStats(
            sequences=len(rows), prompt_tokens=sum(len(prompts[i]) for i in rows),
            completion_tokens=sum(len(t) for t, _, _ in results), seconds=time.perf_counter() - t0,
            extra={"policy_version": self.version},
        )
        return completions

    def _decode(self, prompts: list[list[int]], noise: torch.Tensor, params: SamplingParams,
                stop: list[int]) -> list[tuple[list[int], list[float], str]]:
        """KV-cached sampling of one chunk: left-padded prompts, position ids counted from the mask.

        Rows with the same prompt (a GRPO group) share one prefill: the cache is gathered to the rows after it.
        """
        B, M, dev = len(prompts), params.max_new_tokens, self.device
        if M <= 0:
            return [([], [], "length") for _ in range(B)]
        P = max(len(p) for p in prompts)
        heads, index = distinct_rows(prompts) if self.share_prefill else (prompts, list(range(B)))
        index = torch.tensor(index, device=dev)  # [B] row -> its prefill row
        ids = torch.full((len(heads), P), self.pad_id, dtype=torch.long)  # [U, P]
        attn = torch.zeros((len(heads), P), dtype=torch.long)
        for u, p in enumerate(heads):
            ids[u, P - len(p) :] = torch.tensor(p, dtype=torch.long)
            attn[u, P - len(p) :] = 1
        ids, attn, noise = ids.to(dev), attn.to(dev), noise.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [U, P]
        next_pos = attn.sum(-1, keepdim=True)[index]  # [B, 1]: position of the first completion token
        stop_t = torch.tensor(stop, dtype=torch.long, device=dev)
        tokens = torch.full((B, M), self.pad_id, dtype=torch.long, device=dev)  # [B, M]
        logps = torch.zeros((B, M), device=dev)  # [B, M]
        lengths = torch.full((B,), M, dtype=torch.long, device=dev)  # completion length per row
        stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        active = torch.arange(B, device=dev)  # rows still in the (compacted) batch
        done = torch.zeros(B, dtype=torch.bool, device=dev)  # per active row
        cache = DynamicCache(config=self.model.config)
        out = self.model(ids, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True,
                         logits_to_keep=1)
        logits = out.logits[:, -1][index]  # [B, V]
        cache.reorder_cache(index)  # [U, ..] -> [B, ..]
        attn = attn[index]  # [B, P]
        for t in range(M):
            tok, lp = compute_sample(logits.float(), noise[active, t], params.temperature,
                                     params.top_p)  # [b]
            tok = tok.masked_fill(done, self.pad_id)
            tokens[active, t], logps[active, t] = tok, lp
            hit = torch.isin(tok, stop_t) & ~done  # [b]
            lengths[active[hit]] = t + 1
            stopped[active[hit]] = True
            done = done | hit
            if t == M - 1 or bool(done.all()):
                break
            if self.compact and int(done.sum()) * 4 >= len(done):  # drop finished rows once >= 1/4 are
                keep = (~done).nonzero().squeeze(-1)  # [b']
                cache.batch_select_indices(keep)
                active, done, attn, next_pos = active[keep], done[keep], attn[keep], next_pos[keep]
                tok = tok[keep]
            attn = torch.cat([attn, (~done).long()[:, None]], dim=-1)  # [b, T + 1]; finished rows fed pad
            logits = self.model(tok[:, None], attention_mask=attn, position_ids=next_pos, past_key_values=cache,
                                use_cache=True).logits[:, -1]  # [b, V]
            next_pos = next_pos + 1
        toks, lps, lens, stp = tokens.tolist(), logps.tolist(), lengths.tolist(), stopped.tolist()
        return [(toks[b][: lens[b]], lps[b][: lens[b]], "stop" if stp[b] else "length") for b in range(B)]
