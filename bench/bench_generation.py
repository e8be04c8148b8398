"""Throughput of HFEngine vs ``model.generate`` on the default tiny model (CPU).

Each setting decodes ``batch`` sequences (``batch // 8`` prompts of ~8 chars, 8 samples each) at
temperature 1, top-p 1, in one engine chunk of ``batch`` rows. Tokens/s counts completion tokens (stop token
included); the best of ``--repeats`` runs after a warm-up, the methods interleaved (the CPU may be shared).
"no shared prefill" prefills every row's own copy of its prompt (the engine's default shares one prefill per
distinct prompt). In "ragged" settings rows also stop on the eight digits 0-7 (~8%/step on the random-init
model), so rows finish at very different lengths: the case that batch compaction targets.

    PYTHONPATH=src python bench/bench_generation.py --out bench/results/generation.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from rollwise.generation.base import SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.train.model import build_char_tokenizer, build_tiny_model

WORDS = ["12+34=", "abc def", "7*8 is ", "hello w", "x = 3; ", "sum 1 2", "Q: 9-4?", "reverse"]
SAMPLES = 8


def make_prompts(tokenizer: Any, n: int) -> list[list[int]]:
    return [tokenizer.encode(f"{WORDS[i % len(WORDS)]}{i % 10}") for i in range(n)]


def run_engine(engine: HFEngine, prompts: list[list[int]], max_new: int, stops: tuple[int, ...],
               seed: int) -> tuple[float, int]:
    """Seconds and completion tokens of one seeded engine call."""
    engine.generate(prompts, [SAMPLES] * len(prompts), SamplingParams(1.0, 1.0, max_new, stops, seed=seed))
    return engine.last_stats.seconds, engine.last_stats.completion_tokens


def run_hf_generate(model: Any, tokenizer: Any, prompts: list[list[int]], max_new: int,
                    stops: tuple[int, ...], seed: int) -> tuple[float, int]:
    """Seconds and completion tokens (up to and including the first stop token) of one ``model.generate``."""
    rows = [p for p in prompts for _ in range(SAMPLES)]
    P = max(len(p) for p in rows)
    ids = torch.full((len(rows), P), tokenizer.pad_token_id, dtype=torch.long)  # [B, P]
    attn = torch.zeros_like(ids)
    for b, p in enumerate(rows):
        ids[b, P - len(p) :], attn[b, P - len(p) :] = torch.tensor(p), 1
    stop_ids = [tokenizer.eos_token_id, *stops]
    torch.manual_seed(seed)
    model.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=attn, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=stop_ids)[:, P:]  # [B, <= max_new]
        secs = time.perf_counter() - t0
    is_stop = torch.isin(out, torch.tensor(stop_ids)).long()  # [B, C]
    return secs, int(((is_stop.cumsum(-1) - is_stop) == 0).sum())


def bench_setting(model: Any, tok: Any, batch: int, max_new: int, stops: tuple[int, ...],
                  repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` tokens/s of each method, runs interleaved so they share the machine's load."""
    prompts = make_prompts(tok, batch // SAMPLES)
    runners = {
        "engine": lambda k: run_engine(HFEngine(model, tok, batch_size=batch), prompts, max_new, stops, k),
        "engine_nocompact": lambda k: run_engine(HFEngine(model, tok, batch_size=batch, compact=False),
                                                 prompts, max_new, stops, k),
        "engine_noshare": lambda k: run_engine(HFEngine(model, tok, batch_size=batch, share_prefill=False),
                                               prompts, max_new, stops, k),
        "hf_generate": lambda k: run_hf_generate(model, tok, prompts, max_new, stops, k),
    }
    best = {name: (float("inf"), 0) for name in runners}
    for k in range(-1, repeats):  # k = -1 is the warm-up
        for name, run in runners.items():
            secs, n = run(k)
            if k >= 0 and secs < best[name][0]:
                best[name] = (secs, n)
    row: dict[str, Any] = {"batch": batch, "max_new_tokens": max_new, "ragged": bool(stops)}
    for name, (secs, n) in best.items():
        row[f"{name}_tok_s"], row[f"{name}_tokens"] = round(n / secs), n
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/generation.json")
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--max-new", default="8,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-ragged", action="store_true", help="skip the ragged-length (compaction) settings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok)
    digits = tuple(tok.convert_tokens_to_ids(list("01234567")))
    batches = [int(x) for x in args.batches.split(",")]
    settings = [(b, m, ()) for m in map(int, args.max_new.split(",")) for b in batches]
    if not args.no_ragged:
        settings += [(b, 32, digits) for b in batches]
    rows = []
    for batch, max_new, stops in settings:
        rows.append(bench_setting(model, tok, batch, max_new, stops, args.repeats))
        print(rows[-1], flush=True)
    print(f"\ntorch threads = {args.threads}\n")
    print("| batch | max_new | ragged | engine tok/s | no compaction | no shared prefill | HF generate tok/s "
          "| engine/HF |")
    print("|---:|---:|:---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['max_new_tokens']} | {'yes' if r['ragged'] else 'no'} | "
              f"{r['engine_tok_s']:,} | {r['engine_nocompact_tok_s']:,} | {r['engine_noshare_tok_s']:,} | "
              f"{r['hf_generate_tok_s']:,} | "
              f"{r['engine_tok_s'] / r['hf_generate_tok_s']:.2f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "model": "build_tiny_model defaults (4 layers, hidden 128)", "repeats": args.repeats,
            "samples_per_prompt": SAMPLES}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
