"""Teacher-forced log-probabilities over completions, batched the same way the engine decodes.

Layout of a batch row: ``[pad.. prompt | completion pad..]`` (prompts left-padded, completions right-padded),
with position ids counted from the first real token, exactly as the engine's left-padded decoding sees it.
Only the completion slice of the logits is materialised (``logits_to_keep``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SeqBatch:
    """Prompt+completion token batch for a teacher-forced forward."""

    input_ids: torch.Tensor  # [B, P + C]
    attention_mask: torch.Tensor  # [B, P + C]
    position_ids: torch.Tensor  # [B, P + C]
    completion_ids: torch.Tensor  # [B, C]
    completion_mask: torch.Tensor  # [B, C] float, 1 on real completion tokens

    def to(self, device: torch.device) -> SeqBatch:
        return SeqBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids,
                                                self.completion_ids, self.completion_mask)))

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum().item())


def build_seq_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> SeqBatch:
    """Left-pad prompts, right-pad completions, derive masks and position ids."""
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
    return SeqBatch(ids, attn, pos, ids[:, P:].clone(), cmask)


def compute_logprobs(model: torch.nn.Module, batch: SeqBatch, temperature: float = 1.0,
                     with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(y_t | s_t) of every completion token ([B, C]) and optionally the full-vocabulary entropy."""
    C = batch.completion_ids.shape[1]
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=batch.position_ids, use_cache=False, logits_to_keep=C + 1)
    logits = out.logits[:, :-1, :].float()  # [B, C, V]: position t predicts completion token t
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)  # [B, C, V]
    logp = logp_all.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)  # [B, C]
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # [B, C]
    return logp * batch.completion_mask, entropy
