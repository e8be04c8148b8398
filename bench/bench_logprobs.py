"""The update's log-prob forward + backward: ``compute_logprobs`` (each length bucket reduced to [b, c] log-probs
before assembly) against the assembly it replaced (every bucket's [b, c, V] logits padded, concatenated,
re-indexed, then log-softmaxed at full size), on one SmolLM2-sized batch, interleaved, one thread.

    python bench/bench_logprobs.py --model models/smollm2 --reps 3

Prints seconds per arm and repetition and whether the log-probs and the gradients agree bitwise.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from rollwise.train import policy
from rollwise.train.policy import build_seq_batch, compute_logprobs, length_buckets_of


def assembled_logprobs(model: torch.nn.Module, batch: policy.SeqBatch, buckets_n: int) -> torch.Tensor:
    """The replaced path: [B, C, V] logits assembled from the buckets, then one log-softmax ([B, C] log-probs)."""
    buckets = length_buckets_of(batch.completion_mask.sum(-1).long().tolist(), buckets_n)
    parts = policy._shared_prefix_logits(model, batch, buckets)
    C = batch.completion_ids.shape[1]
    rows = torch.cat([r for r, _ in buckets])
    padded = torch.cat([F.pad(p, (0, 0, 0, C - p.shape[1])) for p in parts])  # [B, C, V]
    inverse = torch.empty_like(rows)
    inverse[rows] = torch.arange(len(rows))
    logp_all = F.log_softmax(padded[inverse].float(), dim=-1)  # [B, C, V]
    return logp_all.gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1) * batch.completion_mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/smollm2")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).train()
    V = model.config.vocab_size
    prompts, comps = [], []
    for _ in range(8):  # 8 prompts x 8 completions of 12-64 tokens, as a SmolLM2 GRPO step
        p = [rng.randrange(V) for _ in range(60)]
        for _ in range(8):
            prompts.append(p)
            comps.append([rng.randrange(V) for _ in range(rng.choice([12, 20, 30, 64]))])
    batch = build_seq_batch(prompts, comps, 0)
    arms = {"assembled [B, C, V]": lambda: assembled_logprobs(model, batch, 3),
            "per bucket (now)": lambda: compute_logprobs(model, batch, 1.0, share_prefix=True, length_buckets=3)[0]}
    out: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}
    for rep in range(a.reps):
        for name, fn in arms.items():
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            lp = fn()
            lp.sum().backward()
            secs = time.perf_counter() - t
            out[name] = (lp.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
            print(f"rep {rep} {name}: {secs:.2f} s", flush=True)
    (la, ga), (lb, gb) = out.values()
    print("log-probs bitwise equal:", torch.equal(la, lb),
          "| gradients bitwise equal:", all(torch.equal(x, y) for x, y in zip(ga, gb, strict=True)))


if __name__ == "__main__":
    main()
