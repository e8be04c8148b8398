"""Teacher-forced log-probabilities over completions, batched the same way the engine decodes.

Layout of a batch row: ``[pad.. prompt | completion pad..]`` (prompts left-padded, completions right-padded),
with position ids counted from the first real token, exactly as the engine's left-padded decoding sees it.
Only the completion slice of the logits is materialised (``logits_to_keep``).

A GRPO batch repeats every prompt G times. With ``share_prefix`` the forward runs each distinct prompt once,
expands its KV cache to the rows that share it, and runs only the completion tokens on top: the same
function of the weights (equal up to float rounding, gradients included), with about B/G * P + B * C tokens
of work instead of B * (P + C). With ``length_buckets`` > 1 the completion pass is split into up to that many
groups of rows of similar completion length, each cut to its own longest completion, so short answers stop
paying for the padding of long ones (also exact; one more forward per bucket, so buckets are only made where
they save more than ``BUCKET_OVERHEAD_TOKENS`` padded tokens each).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from rollwise.generation.base import distinct_rows

BUCKET_OVERHEAD_TOKENS = 128  # padded [row, position] cells one extra forward must save to be worth making


@dataclass
class SeqBatch:
    """Prompt+completion token batch for a teacher-forced forward."""

    input_ids: torch.Tensor  # [B, P + C]
    attention_mask: torch.Tensor  # [B, P + C]
    position_ids: torch.Tensor  # [B, P + C]
    completion_ids: torch.Tensor  # [B, C]
    completion_mask: torch.Tensor  # [B, C] float, 1 on real completion tokens
    prefix_rows: torch.Tensor | None = None  # [U]: first row of each distinct prompt
    prefix_index: torch.Tensor | None = None  # [B]: row -> its distinct prompt (0..U-1)

    def to(self, device: torch.device) -> SeqBatch:
        return SeqBatch(*(None if (t := getattr(self, f.name)) is None else t.to(device) for f in fields(self)))

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum().item())

    def select(self, keep: torch.Tensor) -> SeqBatch:
        """Rows ``keep`` ([k] long) of this batch, columns unchanged; the distinct-prompt map is rebuilt over
        them (a prompt whose rows are all dropped is gone)."""
        index = rows = None
        if self.prefix_index is not None:
            _, index = torch.unique(self.prefix_index[keep], return_inverse=True)  # [k] -> 0..U'-1
            first = torch.full((int(index.max()) + 1 if len(index) else 0,), len(index), dtype=torch.long)
            rows = first.scatter_reduce(0, index, torch.arange(len(index)), reduce="amin")  # [U'] first row each
        return SeqBatch(self.input_ids[keep], self.attention_mask[keep], self.position_ids[keep],
                        self.completion_ids[keep], self.completion_mask[keep], rows, index)

    @property
    def num_distinct_prompts(self) -> int:
        return len(self.prefix_rows) if self.prefix_rows is not None else self.input_ids.shape[0]


def build_seq_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> SeqBatch:
    """Left-pad prompts, right-pad completions, derive masks, position ids and the distinct-prompt map."""
    B = len(prompts)
    P = max((len(p) for p in prompts), default=0)
    C = max(max((len(c) for c in completions), default=0), 1)
    ids = torch.full((B, P + C), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + C), dtype=torch.long)
    cmask = torch.zeros((B, C), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        ids[i, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
        attn[i, P - len(p) : P + len(c)] = 1
        cmask[i, : len(c)] = 1.0
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    heads, index = distinct_rows(prompts)
    first = {u: i for i, u in reversed(list(enumerate(index)))}
    rows = torch.tensor([first[u] for u in range(len(heads))], dtype=torch.long)
    return SeqBatch(ids, attn, pos, ids[:, P:].clone(), cmask, rows, torch.tensor(index, dtype=torch.long))


def compute_logprobs(model: torch.nn.Module, batch: SeqBatch, temperature: float = 1.0,
                     with_entropy: bool = False,
                     share_prefix: bool = False,
                     length_buckets: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(y_t | s_t) of every completion token ([B, C]) and optionally the full-vocabulary entropy.

    Each length bucket's logits ([b, c, V]) are reduced to its tokens' log-probs ([b, c]) before the buckets are
    put back in row order: the [B, C, V] tensor is never assembled (at a 49k vocabulary it is ~800 MB a copy).
    """
    parts = None
    buckets = length_buckets_of(batch.completion_mask.sum(-1).long().tolist(), length_buckets)
    checkpointing = model.training and getattr(model, "is_gradient_checkpointing", False)  # keeps no cache
    if share_prefix and not checkpointing and batch.num_distinct_prompts < batch.input_ids.shape[0]:
        parts = _shared_prefix_logits(model, batch, buckets)
    if parts is None:
        P = batch.input_ids.shape[1] - batch.completion_ids.shape[1]
        parts = []
        for rows, c in buckets:
            out = model(input_ids=batch.input_ids[rows, : P + c], attention_mask=batch.attention_mask[rows, : P + c],
                        position_ids=batch.position_ids[rows, : P + c], use_cache=False, logits_to_keep=c + 1)
            parts.append(out.logits[:, :-1, :])  # [b, c, V]: position t predicts completion token t
    C = batch.completion_ids.shape[1]
    logps, ents = [], []
    for (rows, c), logits in zip(buckets, parts, strict=True):
        lp, ent = _token_logprobs(logits, batch.completion_ids[rows, :c], temperature, with_entropy)
        logps.append(lp)
        ents.append(ent)
    logp = _assemble(logps, buckets, C)  # [B, C]
    entropy = _assemble(ents, buckets, C) if with_entropy else None
    return logp * batch.completion_mask, entropy


def _token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float,
                    with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[b, c, V] logits, [b, c] token ids -> the tokens' log-probs [b, c] and optionally the entropies [b, c]."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)  # [b, c, V]
    logp = logp_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [b, c]
    entropy = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else None  # [b, c]
    return logp, entropy


def length_buckets_of(lengths: list[int], max_buckets: int,
                      overhead: int | None = None) -> list[tuple[torch.Tensor, int]]:
    """Split rows into at most ``max_buckets`` groups of similar length: [(rows, longest length)].

    Rows are sorted by length and cut where the padded cells (rows x longest) plus ``overhead`` (default
    ``BUCKET_OVERHEAD_TOKENS``) per bucket are smallest: an exact dynamic programme over the points where the
    length changes. One bucket keeps the rows in their order.
    """
    overhead = BUCKET_OVERHEAD_TOKENS if overhead is None else overhead
    n = len(lengths)
    whole = [(torch.arange(n), max(max(lengths, default=0), 1))]
    if max_buckets <= 1 or n == 0 or min(lengths) == max(lengths):
        return whole
    order = sorted(range(n), key=lambda i: lengths[i])
    srt = [max(lengths[i], 1) for i in order]
    pts = [0] + [i for i in range(1, n) if srt[i] != srt[i - 1]] + [n]
    inf = float("inf")
    cost = [[inf] * len(pts) for _ in range(max_buckets + 1)]  # cost[k][j]: rows [0, pts[j]) in k buckets
    back = [[0] * len(pts) for _ in range(max_buckets + 1)]
    cost[0][0] = 0.0
    for k in range(1, max_buckets + 1):
        for j in range(1, len(pts)):
            for i in range(j):
                c = cost[k - 1][i] + (pts[j] - pts[i]) * srt[pts[j] - 1] + overhead
                if c < cost[k][j]:
                    cost[k][j], back[k][j] = c, i
    k = min(range(1, max_buckets + 1), key=lambda k: cost[k][-1])
    if k == 1:
        return whole
    out, j = [], len(pts) - 1
    for kk in range(k, 0, -1):
        i = back[kk][j]
        out.append((torch.tensor(order[pts[i] : pts[j]], dtype=torch.long), srt[pts[j] - 1]))
        j = i
    return out[::-1]


def _assemble(parts: list[torch.Tensor], buckets: list[tuple[torch.Tensor, int]], C: int) -> torch.Tensor:
    """Per-bucket values [b, c] -> [B, C] in the batch's row order (zeros past each bucket's length)."""
    if len(parts) == 1 and parts[0].shape[1] == C:
        return parts[0]
    rows = torch.cat([r for r, _ in buckets])
    padded = torch.cat([F.pad(p, (0, C - p.shape[1])) for p in parts])
    inverse = torch.empty_like(rows)
    inverse[rows] = torch.arange(len(rows))
    return padded[inverse]


def _shared_prefix_logits(model: torch.nn.Module, batch: SeqBatch,
                          buckets: list[tuple[torch.Tensor, int]]) -> list[torch.Tensor] | None:
    """Each bucket's completion logits ([b, c, V]) with one prompt forward per distinct prompt; None if the model
    keeps no cache.

    The prompt pass fills a KV cache for the U distinct prompts ([U, P]); each length bucket gathers it to its
    rows (autograd sums the rows' gradients back into each prompt); the completion pass ([b, c]) attends to
    it. The last prompt position predicts completion token 0, completion position t predicts token t + 1.
    """
    C = batch.completion_ids.shape[1]
    P = batch.input_ids.shape[1] - C
    rows, index = batch.prefix_rows, batch.prefix_index
    cache = DynamicCache(config=model.config)
    head = model(input_ids=batch.input_ids[rows, :P], attention_mask=batch.attention_mask[rows, :P],
                 position_ids=batch.position_ids[rows, :P], past_key_values=cache, use_cache=True,
                 logits_to_keep=1)
    if cache.get_seq_length() != P:  # a model that ignores the cache
        return None
    parts = []
    for rows_b, c in buckets:  # each bucket gathers its rows' prompt cache and runs its own c columns
        at = index[rows_b]
        kv = DynamicCache(config=model.config)
        for li, layer in enumerate(cache.layers):
            kv.update(layer.keys.index_select(0, at), layer.values.index_select(0, at), li)
        tail = model(input_ids=batch.completion_ids[rows_b, :c], attention_mask=batch.attention_mask[rows_b, : P + c],
                     position_ids=batch.position_ids[rows_b, P : P + c], past_key_values=kv, use_cache=True,
                     logits_to_keep=c)
        parts.append(torch.cat([head.logits[at, -1:], tail.logits[:, :-1]], dim=1))  # [b, c, V]
    return parts
