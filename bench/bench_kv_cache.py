"""What the HF engine's cross-call KV cache (``kv_cache_mb``) saves, engine calls only, arms interleaved: the
call patterns of APRIL (resume aborted rows), LATR/ROSE (branch rows from a parent's prefix) and a multi-turn
episode (the next turn's context starts with the last one), each timed with the cache off and on.

    python bench/bench_kv_cache.py --out bench/results/kv_cache.json
    python bench/bench_kv_cache.py --rows 256 --abort-at 24 --max-new 48 --reps 5

The model is the embedded default's shape (4 layers, hidden 128, random init, character tokenizer); prompts are
``--prompt-len`` characters. Per rep and pattern: a first call (not timed) generates ``--rows`` rows and stops
them at ``--abort-at`` tokens, then the timed call continues: APRIL resumes every row from its partial; LATR
branches every row at half its partial with another token; a turn appends 8 tokens of "environment reply" to
prompt + partial and generates again. Both engines see the same calls (greedy, so the same tokens); the cached
engine's store is cleared before each rep. Reported: median seconds of the timed call per arm, their ratio,
completion tokens per second, and the store's hits / misses / tokens served.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from rollwise.generation.base import Decision, Prefix, SamplingParams, StepControl
from rollwise.generation.hf import HFEngine
from rollwise.train.model import build_char_tokenizer, build_tiny_model

PATTERNS = ("april_resume", "latr_branch", "episode_turn")


def follow_up(pattern: str, prompts: list[list[int]], parts: list[list[int]], tok) -> tuple[list, list]:
    """The timed call's prompts and prefixes for ``pattern`` after a first call that left ``parts``."""
    if pattern == "april_resume":
        return prompts, [Prefix(p, [0.0] * len(p)) for p in parts]
    if pattern == "latr_branch":
        cut = [p[: len(p) // 2] + [(p[len(p) // 2] + 1) % 90 + 3] for p in parts]
        return prompts, [Prefix(c, [0.0] * len(c)) for c in cut]
    reply = tok(" wrong, again:", add_special_tokens=False)["input_ids"]
    return [q + p + reply for q, p in zip(prompts, parts)], [None] * len(prompts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=24)
    ap.add_argument("--abort-at", type=int, default=24, help="tokens the first call decodes per row")
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0)
    g = torch.Generator().manual_seed(0)
    alphabet = "0123456789+-*= abcdefghij"
    prompts = ["".join(alphabet[int(i)] for i in torch.randint(0, len(alphabet), (args.prompt_len,), generator=g))
               for _ in range(args.rows)]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    params = SamplingParams(temperature=0.0, max_new_tokens=args.max_new, stop_token_ids=())
    engines = {"off": HFEngine(model, tok, batch_size=args.rows),
               "on": HFEngine(model, tok, batch_size=args.rows, kv_cache_mb=1024)}
    stop = StepControl(lambda v: Decision.ABORT if v.step >= args.abort_at else None)
    out: dict = {"args": vars(args), "load_avg": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
                 "patterns": {}}
    for pattern in PATTERNS:
        secs: dict[str, list[float]] = {"off": [], "on": []}
        tokens: dict[str, int] = {}
        same = True
        for _ in range(args.reps):
            got = {}
            for arm, eng in engines.items():  # interleaved: contention hits both alike
                if eng.kv_store is not None:
                    eng.kv_store.clear()
                first = eng.generate(ids, [1] * len(ids), params, control=stop)
                parts = [cs[0].token_ids for cs in first]
                p2, pre = follow_up(pattern, ids, parts, tok)
                before = dict(eng.kv_store.counters) if eng.kv_store is not None else {}
                t0 = time.perf_counter()
                res = eng.generate(p2, [1] * len(p2), params, prefixes=pre)
                secs[arm].append(time.perf_counter() - t0)
                tokens[arm] = sum(len(c.token_ids) - c.prefix_len for cs in res for c in cs)
                got[arm] = [cs[0].token_ids for cs in res]
                if eng.kv_store is not None:
                    after = eng.kv_store.counters
                    counters = {k: after[k] - before.get(k, 0) for k in ("hits", "misses", "hit_tokens")}
            same = same and got["off"] == got["on"]
        off, on = statistics.median(secs["off"]), statistics.median(secs["on"])
        out["patterns"][pattern] = {"seconds_off": off, "seconds_on": on, "ratio_on_off": on / off,
                                    "tok_per_s_off": tokens["off"] / off, "tok_per_s_on": tokens["on"] / on,
                                    "completion_tokens": tokens["on"], "same_tokens": same, **counters}
        print(pattern, json.dumps(out["patterns"][pattern]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
