"""Teacher-forced scoring of the same completions under two prompts: HiLL's hint reliance.

Delta(y) = mean_t log pi(y_t | x, y_<t) - mean_t log pi(y_t | x + h, y_<t), computed under the current policy
with no gradient (the hinter's reward, arXiv:2604.00698). Negative when the completion is much likelier with
the hint: the answer leans on it and is less likely to transfer to the plain prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rollwise.train.policy import build_seq_batch, compute_logprobs


def compute_mean_logprobs(model: torch.nn.Module, prompts_a: Sequence[list[int]], prompts_b: Sequence[list[int]],
                          completions: Sequence[list[int]], pad_id: int,
                          temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Length-normalised log pi(completion | prompt) of each completion under ``prompts_a`` and ``prompts_b``
    (one forward over both, [n] each); an empty completion scores 0. The model's train/eval mode is kept."""
    n = len(completions)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    batch = build_seq_batch([list(p) for p in prompts_a] + [list(p) for p in prompts_b],
                            [list(c) for c in completions] * 2, pad_id)  # [2n, P + C]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logp, _ = compute_logprobs(model, batch.to(device), temperature)  # [2n, C]
    finally:
        model.train(was_training)
    mask = batch.completion_mask.to(logp.device)  # [2n, C]
    mean = (logp.sum(-1) / mask.sum(-1).clamp(min=1)).double().cpu().numpy()  # [2n]
    return mean[:n], mean[n:]


def build_reliance(model: torch.nn.Module, pad_id: int, encode: Callable[[str], list[int]], texts: Sequence[str],
                   temperature: float = 1.0) -> Callable[[int, list[Any]], np.ndarray]:
    """``reliance(prompt, rollouts) -> [n] Delta``: each rollout's completion scored under the plain prompt
    ``encode(texts[prompt])`` and under the prompt it was sampled with (``rollout.prompt_ids``)."""

    def reliance(prompt: int, rollouts: list[Any]) -> np.ndarray:
        plain = encode(texts[prompt])
        a, b = compute_mean_logprobs(model, [plain] * len(rollouts), [r.prompt_ids for r in rollouts],
                                     [r.completion_ids for r in rollouts], pad_id, temperature)
        return a - b

    return reliance
