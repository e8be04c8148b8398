"""HiLL's LM hinter measured on a small recurring pool (issue 26 item 7): no-hint pass rate of every pool prompt
before and after RL (k samples at T = 1, the same seed, so both see the same random numbers), which prompts were
hinted, the hinted rollouts' success share, reliance, the gates and the hinter's updates.

    python bench/hill_lm.py bench/hill_lm.toml --arm hill_lm [--seed 0] [--k 16] [--out DIR] [overrides...]

The grid file gives the base config, its overrides and the arm's (as ``rollwise bench`` reads them). Writes
``OUT/ARM.json`` (the run itself under ``OUT/ARM/seedS``, as ``rollwise bench`` lays it out) and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rollwise.bench import load_grid
from rollwise.config import load_config
from rollwise.generation import SamplingParams
from rollwise.train.trainer import Trainer


def no_hint_pass_rates(trainer: Trainer, k: int, seed: int) -> np.ndarray:
    """[N] share of ``k`` sampled replies (T = 1, no hint) to each pool prompt that the verifier accepts."""
    pool, cfg = trainer.task.pool, trainer.cfg
    params = SamplingParams(temperature=1.0, max_new_tokens=cfg.generation.max_new_tokens,
                            stop_token_ids=(trainer.tok.eos_token_id,), seed=seed)
    outs = trainer.engine.generate([trainer.encode(p.text) for p in pool], [k] * len(pool), params)
    texts = [c.text for cs in outs for c in cs]
    refs = [p.reference for p in pool for _ in range(k)]
    scores = np.array([r.score for r in trainer.verifier.score_batch(texts, refs)]).reshape(len(pool), k)
    return (scores > cfg.sampler.positive_threshold).mean(axis=1)


def summarise(rows: list[dict]) -> dict[str, float]:
    """Totals over the run's steps of what the hill transform logged."""
    key = "sampler/transform/"
    steps = [r for r in rows if key + "hinted" in r]
    tot = {m: float(sum(r[key + m] for r in steps)) for m in ("hinted", "hinted_rollouts", "hinted_correct",
                                                                 "leak_rejections", "unwritable", "overlong",
                                                                 "reliance_scored")}
    rel = [(r[key + "reliance_mean"], r[key + "reliance_scored"]) for r in steps if r[key + "reliance_scored"]]
    last = steps[-1]
    return tot | {
        "hinted_correct_share": tot["hinted_correct"] / tot["hinted_rollouts"] if tot["hinted_rollouts"] else 0.0,
        "reliance_mean": float(np.average([m for m, _ in rel], weights=[w for _, w in rel])) if rel else 0.0,
        "hinted_pools_with_a_success": float(sum(r[key + "hint_success_rate"] * r[key + "hinted"] for r in steps)),
        "hinter_drafts": float(last.get(key + "hinter_drafts", 0.0)),
        "hinter_updates": float(last.get(key + "hinter_updates", 0.0)),
        "ever_stuck": float(last[key + "ever_stuck"]), "rescued": float(last[key + "rescued"]),
        "unstuck": float(last[key + "unstuck"]),
        "reward_mean": float(np.mean([r["rollout/reward_mean"] for r in steps if "rollout/reward_mean" in r])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("grid")
    ap.add_argument("--arm", default="hill_lm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="default: the grid's out")
    ap.add_argument("--k", type=int, default=16, help="no-hint samples per pool prompt, before and after")
    args, overrides = ap.parse_known_args()
    grid = load_grid(args.grid)
    arm = next(a for a in grid.arms if a.name == args.arm)
    out = Path(args.out) if args.out else grid.out
    run = out / args.arm / f"seed{args.seed}"
    cfg = load_config(grid.base, [*grid.overrides, *arm.overrides, *overrides, f"--run.seed={args.seed}",
                                  f"--run.out_dir={run.parent}", f"--run.name={run.name}", "--trainer.progress=false",
                                  "--trainer.plots=false"])
    t0 = time.time()
    trainer = Trainer(cfg)
    before = no_hint_pass_rates(trainer, args.k, seed=12345)
    trainer.train(overwrite=True)
    after = no_hint_pass_rates(trainer, args.k, seed=12345)
    state = trainer.pipeline.transform.state_dict()
    trainer.close()
    hinted = sorted(int(p) for p in state.get("ever_hinted", []))
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    result = {
        "arm": args.arm, "grid": args.grid, "seed": args.seed, "overrides": overrides, "k": args.k,
        "seconds": time.time() - t0,
        "prompts": [p.text for p in trainer.task.pool], "references": [p.reference for p in trainer.task.pool],
        "no_hint_before": before.tolist(), "no_hint_after": after.tolist(), "hinted_prompts": hinted,
        "no_hint_before_hinted": float(before[hinted].mean()) if hinted else None,
        "no_hint_after_hinted": float(after[hinted].mean()) if hinted else None,
        "no_hint_before_pool": float(before.mean()), "no_hint_after_pool": float(after.mean()),
        **summarise(rows),
    }
    (out / f"{args.arm}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("prompts", "references")}, indent=1))


if __name__ == "__main__":
    main()
