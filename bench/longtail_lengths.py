"""Completion-length distribution of the long-tail testbed (configs/longtail.toml): percentiles of the worked
answers' lengths (the SFT targets, no model needed) and of rollouts sampled from the config's cached warm start.

    python bench/longtail_lengths.py                      # configs/longtail.toml, 32 prompts x 8 per level
    python bench/longtail_lengths.py configs/longtail.toml --prompts 16 -- --warmstart.steps=400
    python bench/longtail_lengths.py configs/smollm2_arith.toml --prompts 8 -- --generation.max_new_tokens=200

Arguments after ``--`` are config overrides. The warm start must exist (``rollwise train configs/longtail.toml``
trains and caches it); without it only the target lengths are printed. A config without a warm start (a
pretrained model) samples the model itself. Lengths are in tokens (= characters for the embedded character
tokenizer), the final eos included.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PCTS = (0, 10, 25, 50, 75, 90, 99, 100)


def describe(name: str, lengths: list[int]) -> str:
    a = np.asarray(lengths)
    q = " ".join(f"p{p}={np.percentile(a, p):.0f}" for p in PCTS)
    return f"{name:<8} n={len(a):<5} mean={a.mean():5.1f}  {q}  p90/p50={np.percentile(a, 90) / np.median(a):.2f}"


def target_lengths(levels: list[str], n: int, seed: int = 0) -> dict[str, list[int]]:
    """Lengths of the worked answers ``<work>|<answer>`` + eos the warm start is trained to write."""
    from rollwise.data.scratch import carry_scratchpad
    from rollwise.data.tasks import LEVELS

    rng = random.Random(seed)
    out = {}
    for name in levels:
        out[name] = [len(carry_scratchpad(*LEVELS[name].make(rng))) + 1 for _ in range(n)]
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs" / "longtail.toml"))
    ap.add_argument("--prompts", type=int, default=32, help="pool prompts per level")
    ap.add_argument("--samples", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--threads", type=int, default=1)
    args, overrides = ap.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]

    import torch

    from rollwise.config import load_config
    from rollwise.data.task import build_task
    from rollwise.data.templates import encode_prompt
    from rollwise.train import setup
    from rollwise.train.warmstart import find_warmstart

    torch.set_num_threads(args.threads)
    cfg = load_config(Path(args.config), overrides)
    levels = list(cfg.task.levels)
    if cfg.task.suite == "arith":  # the procedural suite's worked answers (other suites have no SFT targets)
        print("worked-answer targets (tokens incl. eos):")
        tl = target_lengths(levels, 2000)
        for name in levels:
            print("  " + describe(name, tl[name]))
        print("  " + describe("all", [x for v in tl.values() for x in v]))
    if cfg.warmstart.enabled and find_warmstart(cfg) is None:
        print("no cached warm start for this config: train it with `rollwise train` first", file=sys.stderr)
        return
    task = build_task(cfg)
    model, tok, _ = setup.build_policy(cfg, task)
    engine = setup.build_engine(cfg, model, tok)
    params = setup.sampling_params(cfg, tok)
    verifier = setup.build_verifier(cfg)
    by_level: dict[str, list[int]] = {}
    reward: dict[str, float] = {}
    for li, name in enumerate(levels):
        idx = [i for i in range(len(task.pool)) if int(task.levels[i]) == li][: args.prompts]
        prompts = [encode_prompt(task.pool[i].text, cfg.task, tok) for i in idx]
        res = engine.generate(prompts, [args.samples] * len(prompts), params)
        by_level[name] = [len(c.token_ids) for g in res for c in g]
        scores = verifier.score_batch([c.text for g in res for c in g],
                                      [task.pool[i].reference for i, g in zip(idx, res) for _ in g])
        reward[name] = float(np.mean([s.score for s in scores]))
    source = "warm start" if cfg.warmstart.enabled else "model"
    print(f"rollouts of the {source} (T={params.temperature}, max_new_tokens={params.max_new_tokens}, "
          f"{args.prompts} prompts x {args.samples} per level):")
    for name in levels:
        print("  " + describe(name, by_level[name]) + f"  reward={reward[name]:.2f}")
    print("  " + describe("all", [x for v in by_level.values() for x in v]))


if __name__ == "__main__":
    main(sys.argv[1:])
