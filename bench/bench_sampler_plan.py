"""Planning cost of every sampler preset on a large pool: time ``begin_step`` (one step, 256 prompts x G=8)
over a pool of 10^6 prompts with pre-populated statistics; also ``observe`` (the per-step state update).

    PYTHONPATH=src python bench/bench_sampler_plan.py [--pool 1000000] [--seen 1.0] [--out PATH]

Each preset runs full steps (plan, simulated rewards, finalize, observe) so stateful selectors evolve as in
training; only ``begin_step`` and ``observe`` are timed. Median (and max) over ``--repeats`` steps after
``--warmup``; the CPU column (process time, summed over threads) is the cost on an otherwise idle machine
when wall time is inflated by other load. Target: begin_step < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rollwise.sampling import Budget, GroupObs, Replayed
from rollwise.sampling.presets import PRESETS, build_pipeline

TARGET_MS = 50.0


def populate(pipe, rates: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the stats store (and VADE / GDRO state) as if ``seen`` prompts had been rolled out before."""
    st = pipe.stats
    n = len(seen)
    st.attempts[seen] = 8 * rng.integers(1, 6, n)
    st.successes[seen] = np.round(st.attempts[seen] * rates[seen])
    st.reward_sum[seen] = st.successes[seen]
    st.ema_pass[seen] = np.clip(rates[seen] + rng.normal(0, 0.1, n), 0, 1)
    st.last_var[seen] = st.ema_pass[seen] * (1 - st.ema_pass[seen])
    st.last_step[seen] = rng.integers(0, 1000, n)
    st.times_seen[seen] = st.attempts[seen] // 8
    sel = pipe.selector
    if type(sel).__name__ == "VadeSelector":
        c = rng.uniform(0.5, 10.0, n) / 8  # decayed pseudo-counts from one past group of 8
        wins = rng.binomial(8, rates[seen])
        sel.load_state_dict({"size": st.size, "index": seen, "alpha": c * wins, "beta": c * (8 - wins)})
    if type(sel).__name__ == "GdroSelector":
        for _ in range(10):
            sel.classifier.update(seen, rng.random(n) < 1 - (1 - rates[seen]) ** 8, st.size)


def run_preset(name: str, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    rates = rng.beta(0.6, 0.6, args.pool)  # true pass rates, U-shaped like real math sets
    levels = np.minimum((1 - rates) * 5, 4).astype(np.int64)
    pipe, _ = build_pipeline(preset=name, pool_size=args.pool, group_size=args.group_size,
                             batch_prompts=args.batch, total_steps=10_000, seed=0, levels=levels)
    seen = np.sort(rng.choice(args.pool, int(args.seen * args.pool), replace=False))
    populate(pipe, rates, seen, rng)
    plan_ms, plan_cpu_ms, obs_ms = [], [], []
    for step in range(args.warmup + args.repeats):
        budget = Budget(args.batch * args.group_size * 4)
        t0, c0 = time.perf_counter(), time.process_time()
        req = pipe.begin_step(1000 + step, budget)
        t1, c1 = time.perf_counter(), time.process_time()
        pools: dict[int, GroupObs] = {}
        while req is not None and len(req):
            r = (rng.random(req.total) < np.repeat(rates[req.prompts], req.counts)).astype(np.float64)
            for p, rr in zip(req.prompts.tolist(), np.split(r, np.cumsum(req.counts)[:-1])):
                old = pools[p].rewards if p in pools else np.zeros(0)
                new = np.concatenate([old, rr])
                pools[p] = GroupObs(p, new, np.full(len(new), 100, dtype=np.int64))
            budget.charge(req.total, 100 * req.total)
            req = pipe.next_request(pools)
        groups = pipe.finalize(pools)
        pipe.replay_draw()
        pipe.replay_push([Replayed(g.prompt, [SimpleNamespace(reward=float(x)) for x in
                                              pools[g.prompt].rewards[g.keep]], step) for g in groups])
        t2 = time.perf_counter()
        pipe.observe(pools, groups)
        t3 = time.perf_counter()
        if step >= args.warmup:
            plan_ms.append(1e3 * (t1 - t0))
            plan_cpu_ms.append(1e3 * (c1 - c0))
            obs_ms.append(1e3 * (t3 - t2))
    comps = PRESETS.get(name)
    med = float(np.median(plan_ms))
    return {"preset": name, "selector": comps.selector, "allocator": comps.allocator,
            "begin_step_ms_median": med, "begin_step_ms_max": float(np.max(plan_ms)),
            "begin_step_cpu_ms_median": float(np.median(plan_cpu_ms)),
            "observe_ms_median": float(np.median(obs_ms)), "meets_target": med < TARGET_MS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--seen", type=float, default=1.0, help="share of the pool with prior statistics")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--presets", nargs="*", default=None, help="default: every preset that builds")
    ap.add_argument("--out", default="bench/results/sampler_plan.json")
    args = ap.parse_args()
    rows = []
    for name in args.presets or PRESETS.names():
        try:
            rows.append(run_preset(name, args))
        except (ImportError, KeyError) as exc:
            print(f"skip {name}: {exc}")
    print(f"\npool {args.pool:,}, seen {args.seen:.0%}, batch {args.batch} x G={args.group_size}, "
          f"median of {args.repeats} after {args.warmup} warm-up, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| preset | selector | allocator | begin_step median ms | max ms | CPU ms (all threads) "
          "| observe median ms | < 50 ms |")
    print("|---|---|---|---:|---:|---:|---:|:---:|")
    for r in rows:
        ok = "yes" if r["meets_target"] else "NO"
        print(f"| {r['preset']} | {r['selector']} | {r['allocator']} | {r['begin_step_ms_median']:.1f} | "
              f"{r['begin_step_ms_max']:.1f} | {r['begin_step_cpu_ms_median']:.1f} | "
              f"{r['observe_ms_median']:.1f} | {ok} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"pool": args.pool, "seen": args.seen, "batch": args.batch, "group_size": args.group_size,
            "repeats": args.repeats, "warmup": args.warmup, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "target_ms": TARGET_MS}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
