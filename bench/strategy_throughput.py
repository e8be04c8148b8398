"""Rollout throughput of a rollout strategy vs plain generation, generation only (no update: the weights stay
those of the start model, so every strategy samples the same policy and the numbers isolate generation).

Each strategy runs ``--calls`` consecutive steps of the config's sampler (the trainer's own collector: same
prompts, budget, charging); per step it records the decoded tokens charged, the tokens and rollouts returned,
the generation seconds and the length of what came back. APRIL is run with ``sampler.batch_prompts`` x
``over_sample`` requested prompts per step (it trains the first ``batch_prompts`` groups that finish); the first
step of APRIL has no buffer yet, so the steady state is the later steps (reported apart).

    python bench/strategy_throughput.py configs/smollm2_arith.toml --calls 6 -- --generation.max_new_tokens=200
    python bench/strategy_throughput.py configs/longtail.toml --calls 20
    python bench/strategy_throughput.py configs/longtail.toml --calls 6 --arms plain april april_kv latr latr_kv
    python bench/strategy_throughput.py configs/smollm2_arith.toml --train --calls 4 --arms plain april april_kv

With ``--train`` each call is a whole training step (generate, verify, update, weight sync): the weights change
at every step, so APRIL's buffered partials resume under newer weights and the KV cache is cleared at each sync;
the generation seconds and tokens are the step's rollout phase, the update's seconds are recorded beside them.

An arm ending in ``_kv`` is the same strategy with the HF engine's KV cache kept across calls (``kv_cache_mb``).
The calls run round by round across arms (every arm's step 0, then every arm's step 1, ...; each arm keeps its own
trainer), so a load that shifts during the run falls on all arms alike; ``--no-interleave`` runs arm after arm.
The JSON is rewritten after every call, with the load average at the start and after the latest call.

Writes ``--out`` (JSON, default bench/results/strategy_throughput_<config>.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OVER_SAMPLE = 2  # APRIL's requested prompts per trained group (its paper's setting)
KV = '--generation.engine={type="hf",kv_cache_mb=1024}'  # the HF engine's cross-call KV cache (1 GiB, LRU)
ARMS = {"plain": [], "april": [f'--generation.strategy={{type="april",over_sample={OVER_SAMPLE}}}'],
        "latr": ['--generation.strategy={type="latr",lookahead=[3,5,8]}'],
        "rose": ['--generation.strategy={type="rose"}', '--algo.shaping=["rose_segments"]']}
ARMS |= {f"{arm}_kv": [*o, KV] for arm, o in list(ARMS.items())}  # the same with the cache kept across calls


class Arm:
    """One strategy's trainer, kept alive across its calls (APRIL's buffer and the KV cache carry over)."""

    def __init__(self, config: str, overrides: list[str], batch_prompts: int | None, train: bool = False) -> None:
        from rollwise.config import load_config
        from rollwise.train.trainer import Trainer

        self._tmp = tempfile.TemporaryDirectory()
        cfg = load_config(Path(config), [*overrides, f"--run.out_dir={self._tmp.name}", "--trainer.progress=false",
                                         "--trainer.plots=false",
                                         *([f"--sampler.batch_prompts={batch_prompts}"] if batch_prompts else [])])
        self.trainer = Trainer(cfg)
        self.rows: list[dict[str, Any]] = []
        self.train = train
        self._got: list[Any] = []
        if train:  # keep each step's StepRollouts: the trainer's step collects through this
            collect = self.trainer.rollouts.collect
            self.trainer.rollouts.collect = lambda *a, **k: self._got.append(collect(*a, **k)) or self._got[-1]

    def call(self, step: int) -> dict[str, Any]:
        tr = self.trainer
        t0 = time.perf_counter()
        if self.train:
            stats = tr.train_step(step)  # collect + update + publish the new weights (clears the KV cache)
            tr.step_index = step + 1
            got = self._got.pop()
        else:
            got = tr.rollouts.collect(tr.pipeline, step, version=step)  # version = step: APRIL resumes next step
            stats = {}
        wall = time.perf_counter() - t0
        rs = [r for v in got.rollouts.values() for r in v]
        row = {"step": step, "gen_seconds": got.gen_seconds, "wall_seconds": wall,
               "decoded_tokens": got.decoded_tokens,
               "returned_tokens": sum(r.num_tokens for r in rs), "rollouts": len(rs),
               "groups": len(got.rollouts), "length_mean": float(np.mean([r.num_tokens for r in rs])),
               "truncated_share": float(np.mean([r.finish_reason == "length" for r in rs])),
               "reward_mean": float(np.mean([r.reward for r in rs])), "load_avg_1m": os.getloadavg()[0],
               "train_seconds": stats.get("perf/train_seconds", 0.0),
               **{k: v for k, v in tr.collector.metrics().items() if isinstance(v, int | float)}}
        self.rows.append(row)
        return row

    def close(self) -> None:
        self._tmp.cleanup()


def schedule(arms: list[str], calls: int, interleave: bool) -> list[tuple[str, int]]:
    """The (arm, step) order of the calls: round by round (every arm's step 0, then every arm's step 1, ...) when
    interleaved, so that a load that shifts during the run falls on every arm alike; else arm after arm."""
    if interleave:
        return [(arm, step) for step in range(calls) for arm in arms]
    return [(arm, step) for arm in arms for step in range(calls)]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    secs = sum(r["gen_seconds"] for r in rows)
    return {"steps": len(rows), "gen_seconds": secs, "groups_per_step": float(np.mean([r["groups"] for r in rows])),
            "decoded_tok_per_s": sum(r["decoded_tokens"] for r in rows) / secs,
            "returned_tok_per_s": sum(r["returned_tokens"] for r in rows) / secs,
            "groups_per_min": 60 * sum(r["groups"] for r in rows) / secs,
            "gen_s_per_step": secs / len(rows),
            "length_mean": float(np.mean([r["length_mean"] for r in rows])),
            "truncated_share": float(np.mean([r["truncated_share"] for r in rows]))}


def ratios(out: dict[str, Any], ref: str = "plain") -> dict[str, dict[str, Any]]:
    """Each arm's tokens per second over ``ref``'s in the same round (the calls of one round ran minutes apart, so
    the load they met was alike): per round, and the median and range over the rounds after the first."""
    base = {r["step"]: r for r in out["arms"].get(ref, {}).get("rows", [])}
    res: dict[str, dict[str, Any]] = {}
    for arm, d in out["arms"].items():
        rows = [r for r in d["rows"] if r["step"] in base and arm != ref]
        if not rows:
            continue
        res[arm] = {}
        for key in ("decoded_tokens", "returned_tokens"):
            per = [r[key] / r["gen_seconds"] / (base[r["step"]][key] / base[r["step"]]["gen_seconds"]) for r in rows]
            late = per[1:] or per
            res[arm][key] = {"per_round": per, "median_after_first": float(np.median(late)),
                             "min_after_first": min(late), "max_after_first": max(late)}
    return res


def _table(out: dict[str, Any]) -> str:
    lines = ["| strategy | steps | groups/step | decoded tok/s | returned tok/s | groups/min | gen s/step | length | "
             "truncated |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, d in out["arms"].items():
        for tag in ("all", "after_first"):
            s = d.get(tag)
            if s is None:
                continue
            lines.append(f"| {arm} ({tag.replace('_', ' ')}) | {s['steps']} | {s['groups_per_step']:.1f} | "
                         f"{s['decoded_tok_per_s']:.0f} | {s['returned_tok_per_s']:.0f} | {s['groups_per_min']:.1f} | "
                         f"{s['gen_s_per_step']:.1f} | {s['length_mean']:.1f} | {s['truncated_share']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--calls", type=int, default=6, help="consecutive steps per strategy")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=True,
                    help="run the calls round by round across arms (default) instead of arm after arm")
    ap.add_argument("--train", action="store_true",
                    help="each call is a whole training step (the weights change; the update is timed apart)")
    ap.add_argument("--out", default=None)
    args, overrides = ap.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    from rollwise.config import load_config

    base = load_config(Path(args.config), overrides)
    default = ROOT / "bench" / "results" / f"strategy_throughput_{Path(args.config).stem}.json"
    path = Path(args.out) if args.out else default
    out: dict[str, Any] = {"config": args.config, "overrides": overrides, "calls": args.calls,
                           "interleave": args.interleave, "train": args.train,
                           "machine": platform.processor() or platform.machine(),
                           "load_avg": os.getloadavg(), "load_avg_after": None,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "order": [], "arms": {}}
    arms: dict[str, Arm] = {}
    try:
        for name, step in schedule(args.arms, args.calls, args.interleave):
            if name not in arms:
                bp = base.sampler.batch_prompts * OVER_SAMPLE if name.startswith("april") else None
                arms[name] = Arm(args.config, [*overrides, *ARMS[name]], bp, train=args.train)
            row = arms[name].call(step)
            print(f"  {name} step {step}: {row['groups']} groups, {row['decoded_tokens']} tokens in "
                  f"{row['gen_seconds']:.1f} s", file=sys.stderr)
            out["order"].append([name, step])
            rows = arms[name].rows
            out["arms"][name] = {"rows": rows, "all": summary(rows),
                                 **({"after_first": summary(rows[1:])} if len(rows) > 1 else {})}
            out["ratios_vs_plain"] = ratios(out)
            out["load_avg_after"] = os.getloadavg()
            path.write_text(json.dumps(out, indent=1))  # after every call: a stopped run keeps what finished
    finally:
        for arm in arms.values():
            arm.close()
    print(_table(out))


if __name__ == "__main__":
    main(sys.argv[1:])
