"""Teacher-forced log-probabilities over completions, batched the same way the engine decodes.

Layout of a batch row: ``[pad.. prompt | completion pad..]`` (prompts left-padded, completions right-padded),
with position ids counted from the first real token, exactly as the engine's left-padded decoding sees it.
Only the completion slice of the logits is materialised (``logits_to_keep``).

A GRPO batch repeats every prompt G times. With ``share_prefix`` the forward runs each distinct prompt once,
expands its KV cache to the rows that share it, and runs only the completion tokens on top: the same
function of the weights (equal up to float rounding, gradients included), with about B/G * P + B * C tokens
of work instead of B * (P + C).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from rollwise.generation.base import distinct_rows


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
                     share_prefix: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(y_t | s_t) of every completion token ([B, C]) and optionally the full-vocabulary entropy."""
    logits = None
    checkpointing = model.training and getattr(model, "is_gradient_checkpointing", False)  # keeps no cache
    if share_prefix and not checkpointing and batch.num_distinct_prompts < batch.input_ids.shape[0]:
        logits = _shared_prefix_logits(model, batch)
    if logits is None:
        C = batch.completion_ids.shape[1]
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids, use_cache=False, logits_to_keep=C + 1)
        logits = out.logits[:, :-1, :]  # [B, C, V]: position t predicts completion token t
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)  # [B, C, V]
    logp = logp_all.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)  # [B, C]
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # [B, C]
    return logp * batch.completion_mask, entropy


def _shared_prefix_logits(model: torch.nn.Module, batch: SeqBatch) -> torch.Tensor | None:
    """[B, C, V] completion logits with one prompt forward per distinct prompt; None if the model keeps no cache.

    The prompt pass fills a KV cache for the U distinct prompts ([U, P]); ``reorder_cache`` gathers it to the
    B rows (autograd sums the rows' gradients back into each prompt); the completion pass ([B, C]) attends to
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
    cache.reorder_cache(index)
    tail = model(input_ids=batch.completion_ids, attention_mask=batch.attention_mask,
                 position_ids=batch.position_ids[:, P:], past_key_values=cache, use_cache=True, logits_to_keep=C)
    return torch.cat([head.logits[:, -1:][index], tail.logits[:, :-1]], dim=1)  # [B, C, V]
