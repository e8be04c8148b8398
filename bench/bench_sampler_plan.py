"""Planning cost of every sampler preset on a large pool: the whole planning of one step (``begin_step`` plus
every ``next_request`` until it returns None: later rounds, XRPO phases, refills, in-context seeding) at
256 prompts x G=8 and 512 x 16, over a pool of 10^6 prompts with pre-populated statistics; also
``finalize`` + ``observe`` (choosing the trained groups, replay, the per-step state update).

    PYTHONPATH=src python bench/bench_sampler_plan.py [--pool 1000000] [--sizes 256x8 512x16] [--bare] [--out PATH]

Each preset runs full steps (plan, simulated binary rewards, finalize, observe) under the rollout budget its
own composition needs (``pipe.budget()[0]``), so stateful selectors, the replay buffer and the seeding corpus
evolve as in training; the simulated generation between calls is not timed. Pools carry an opaque payload
and completion texts (so replay and the XRPO corpus fill); ``--bare`` leaves both out (replay then never
buffers, nothing is seeded). Median and max over ``--repeats`` steps after ``--warmup``; the CPU column
(process time, summed over threads) is the cost on an otherwise idle machine when wall time is inflated by
other load. Target: planning < 50 ms per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from rollwise.sampler_tables import build_pipeline
from rollwise.sampling import Budget, GroupObs
from rollwise.sampling.presets import PRESETS

TARGET_MS = 50.0


def populate(pipe, rates: np.ndarray, seen: np.ndarray, group_size: int, rng: np.random.Generator) -> None:
    """Fill the stats store (and VADE / GDRO state) as if ``seen`` prompts had been rolled out before."""
    st = pipe.stats
    n = len(seen)
    st.attempts[seen] = group_size * rng.integers(1, 6, n)
    st.successes[seen] = np.round(st.attempts[seen] * rates[seen])
    st.reward_sum[seen] = st.successes[seen]
    st.ema_pass[seen] = np.clip(rates[seen] + rng.normal(0, 0.1, n), 0, 1)
    st.last_var[seen] = st.ema_pass[seen] * (1 - st.ema_pass[seen])
    st.last_step[seen] = rng.integers(0, 1000, n)
    st.times_seen[seen] = st.attempts[seen] // group_size
    sel = pipe.selector
    if type(sel).__name__ == "VadeSelector":
        c = rng.uniform(0.5, 10.0, n) / group_size  # decayed pseudo-counts from one past group
        wins = rng.binomial(group_size, rates[seen])
        sel.load_state_dict({"size": st.size, "index": seen, "alpha": c * wins, "beta": c * (group_size - wins)})
    if type(sel).__name__ == "GdroSelector":
        for _ in range(10):
            sel.classifier.update(seen, rng.random(n) < 1 - (1 - rates[seen]) ** group_size, st.size)


def generate(req, rates: np.ndarray, pools: dict[int, GroupObs], bare: bool, rng: np.random.Generator) -> None:
    """Simulated generation: binary rewards from the true pass rates, appended to each prompt's pool."""
    r = (rng.random(req.total) < np.repeat(rates[req.prompts], req.counts)).astype(np.float64)
    for p, rr in zip(req.prompts.tolist(), np.split(r, np.cumsum(req.counts)[:-1])):
        old = pools[p].rewards if p in pools else np.zeros(0)
        new = np.concatenate([old, rr])
        extra = {} if bare else {"payload": list(range(len(new))), "texts": ["x = 1"] * len(new)}
        pools[p] = GroupObs(p, new, np.full(len(new), 100, dtype=np.int64), **extra)


def timed(fn, *args):
    """(result, wall ms, CPU ms) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)


def spec_name(spec) -> str:
    return spec if isinstance(spec, str) else str(spec["type"])


def run_preset(name: str, batch: int, group_size: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    rates = rng.beta(0.6, 0.6, args.pool)  # true pass rates, U-shaped like real math sets
    levels = np.minimum((1 - rates) * 5, 4).astype(np.int64)
    pipe = build_pipeline(preset=name, pool_size=args.pool, group_size=group_size, batch_prompts=batch,
                          total_steps=10_000, seed=0, levels=levels)
    seen = np.sort(rng.choice(args.pool, int(args.seen * args.pool), replace=False))
    populate(pipe, rates, seen, group_size, rng)
    need = pipe.budget()[0]
    plan_ms, plan_cpu, calls, rollouts, after_ms = [], [], [], [], []
    for step in range(args.warmup + args.repeats):
        budget = Budget(need)
        req, wall, cpu = timed(pipe.begin_step, 1000 + step, budget)
        pools: dict[int, GroupObs] = {}
        n_calls = 0
        while req is not None and len(req):
            generate(req, rates, pools, args.bare, rng)
            budget.charge(req.total, 100 * req.total)
            n_calls += 1
            req, w, c = timed(pipe.next_request, pools)
            wall, cpu = wall + w, cpu + c
        t0 = time.perf_counter()
        plan = pipe.finalize(pools)
        pipe.observe(pools, plan.groups)
        t1 = time.perf_counter()
        if step >= args.warmup:
            plan_ms.append(wall)
            plan_cpu.append(cpu)
            calls.append(n_calls)
            rollouts.append(budget.spent_rollouts)
            after_ms.append(1e3 * (t1 - t0))
    p = PRESETS.get(name)
    med = float(np.median(plan_ms))
    return {"preset": name, "batch": batch, "group_size": group_size, "selector": spec_name(p.selector),
            "allocator": spec_name(p.allocator), "budget": need, "rollouts_median": float(np.median(rollouts)),
            "generation_calls_median": float(np.median(calls)), "plan_ms_median": med,
            "plan_ms_max": float(np.max(plan_ms)), "plan_cpu_ms_median": float(np.median(plan_cpu)),
            "plan_cpu_ms_max": float(np.max(plan_cpu)), "finalize_observe_ms_median": float(np.median(after_ms)),
            "meets_target": med < TARGET_MS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--sizes", nargs="+", default=["256x8", "512x16"], help="PROMPTSxG per step")
    ap.add_argument("--seen", type=float, default=1.0, help="share of the pool with prior statistics")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--presets", nargs="*", default=None, help="default: every registered preset")
    ap.add_argument("--bare", action="store_true", help="pools without payload or texts")
    ap.add_argument("--out", default="bench/results/sampler_plan.json")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    rows: list[dict] = []
    errors: list[dict] = []
    for batch, g in sizes:
        for name in args.presets or PRESETS.names():
            try:
                r = run_preset(name, batch, g, args)
            except Exception as exc:  # a preset broken elsewhere is reported, the others still run
                errors.append({"preset": name, "batch": batch, "group_size": g, "error": repr(exc)})
                print(f"FAILED {name} {batch}x{g}: {exc!r}", flush=True)
                continue
            rows.append(r)
            print(f"{name} {batch}x{g}: plan {r['plan_ms_median']:.1f} ms (max {r['plan_ms_max']:.1f})", flush=True)
    print(f"\npool {args.pool:,}, seen {args.seen:.0%}, {'bare pools, ' if args.bare else ''}median of "
          f"{args.repeats} steps after {args.warmup} warm-up, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| preset | P x G | selector | allocator | calls | plan median ms | max ms | CPU median ms | CPU max ms "
          "| finalize+observe ms | < 50 ms |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        ok = "yes" if r["meets_target"] else "NO"
        print(f"| {r['preset']} | {r['batch']} x {r['group_size']} | {r['selector']} | {r['allocator']} | "
              f"{r['generation_calls_median']:.0f} | {r['plan_ms_median']:.1f} | {r['plan_ms_max']:.1f} | "
              f"{r['plan_cpu_ms_median']:.1f} | {r['plan_cpu_ms_max']:.1f} | "
              f"{r['finalize_observe_ms_median']:.1f} | {ok} |")
    for e in errors:
        print(f"| {e['preset']} | {e['batch']} x {e['group_size']} | failed: {e['error']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"pool": args.pool, "seen": args.seen, "sizes": args.sizes, "bare": args.bare,
            "repeats": args.repeats, "warmup": args.warmup, "timed": "begin_step + every next_request",
            "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "target_ms": TARGET_MS}
    out.write_text(json.dumps({"meta": meta, "results": rows, "errors": errors}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
