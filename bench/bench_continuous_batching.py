"""rollwise's HF engine vs transformers' own continuous batching (``model.generate_batch``: paged KV cache, rows
that finish free their slot), the same rows, sampled at temperature 1, interleaved repetitions.

    python bench/bench_continuous_batching.py --model models/smollm2 --new 48 --reps 3 \
        --out bench/results/continuous_batching.json

The paged cache is sized explicitly (``--blocks`` pages of ``--page`` tokens): left to itself, transformers sizes
it from the free memory, which on this 24 GiB machine took 17 GiB and was killed by the kernel. Its first call
warms up (``warmup=True``) and is reported, not discarded; compare the later repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

from rollwise.generation.base import SamplingParams
from rollwise.generation.hf import HFEngine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/smollm2")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--new", type=int, default=48, help="max new tokens")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--page", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=96)
    ap.add_argument("--out", default="bench/results/continuous_batching.json")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa").eval()
    prompts = [tok.encode(f"<|im_start|>user\nWhat is {i} + {2 * i + 7} - 13? Think step by step.<|im_end|>\n"
                          "<|im_start|>assistant\n") for i in range(a.prompts)]
    rows = [p for p in prompts for _ in range(a.samples)]
    gen_cfg = GenerationConfig(max_new_tokens=a.new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id or 0)
    cb_cfg = ContinuousBatchingConfig(page_size=a.page, num_blocks=a.blocks, max_batch_tokens=2048,
                                      max_memory_percent=0.05)
    engine = HFEngine(model, tok, batch_size=len(rows))
    params = SamplingParams(1.0, 1.0, a.new, (), seed=0)
    reps = []
    for rep in range(a.reps):
        t = time.perf_counter()
        engine.generate(prompts, [a.samples] * a.prompts, params)
        te, ne = time.perf_counter() - t, engine.last_stats.completion_tokens
        t = time.perf_counter()
        out = model.generate_batch(rows, generation_config=gen_cfg, continuous_batching_config=cb_cfg,
                                   progress_bar=False, warmup=rep == 0)
        tc, nc = time.perf_counter() - t, sum(len(o.generated_tokens) for o in out.values())
        reps.append({"engine_tok_s": ne / te, "engine_tokens": ne, "generate_batch_tok_s": nc / tc,
                     "generate_batch_tokens": nc, "ratio": (nc / tc) / (ne / te), "load_avg_1m": os.getloadavg()[0]})
        print(reps[-1], flush=True)
    res = {"args": vars(a), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "reps": reps}
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
