"""Checks per second of the ``gsm8k`` and ``math`` verifiers through ``VerifierPool`` on the real data files.

Workloads (from ``../shared/data``, or ``$ROLLWISE_DATA_DIR``):
  gsm8k: every GSM8K test solution vs its own answer and vs the answer of the next row (half wrong), and the
         same without the ``####`` line (so the last-number fallback runs): 4 x 1,319 = 5,276 checks.
  math:  every MATH-500 solution vs its own answer (mostly the string fast path) and vs the answers of rows
         i+1, i+2, i+3 (the symbolic path, as for wrong rollouts): 4 x 500 = 2,000 checks. References
         repeat, as they do across a rollout group, so math-verify's parse caches help as in training.
Paths: ``pool`` (worker processes, the bounded path), ``inline`` (in-process; gsm8k's default) and
``direct`` (plain calls in this process, no pool: the cost of the verifier alone; its checks per CPU-second
do not depend on other load on the machine, unlike wall-clock rates). Workers are started and
warmed before timing; start-up is reported separately. Best of ``--repeats`` runs (the CPU may be shared).

    PYTHONPATH=src python bench/bench_verifiers.py --out bench/results/verifiers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollwise.data.loaders import load_preset
from rollwise.rewards import VerifierPool, get_verifier


def gsm8k_workload() -> tuple[list[str], list[str]]:
    ex = load_preset("gsm8k:test")
    sols = [e.meta["answer"] for e in ex]
    bare = [s.rsplit("####", 1)[0] for s in sols]
    refs = [e.reference for e in ex]
    nxt = refs[1:] + refs[:1]
    return sols + sols + bare + bare, refs + nxt + refs + nxt


def math_workload() -> tuple[list[str], list[str]]:
    ex = load_preset("math500:test")
    sols = [e.meta["solution"] for e in ex]
    refs = [e.reference for e in ex]
    comps, golds = [], []
    for shift in range(4):
        comps += sols
        golds += refs[shift:] + refs[:shift]
    return comps, golds


def _timed(call: Callable[[], list[float]], repeats: int) -> tuple[float, float, list[float]]:
    """Best wall seconds, best CPU seconds of this process, and the scores of the last run."""
    best, best_cpu, scores = float("inf"), float("inf"), []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        scores = call()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu, scores


def run(
    verifier: str, path: str, workers: int, data: tuple[list[str], list[str]], repeats: int
) -> dict[str, Any]:
    comps, refs = data
    stats: dict[str, int] = {}
    startup = 0.0
    if path == "direct":
        fn = get_verifier(verifier, bounded=False)  # the raw verifier: what a check costs
        best, best_cpu, scores = _timed(lambda: [fn(c, r).score for c, r in zip(comps, refs)], repeats)
    else:
        t0 = time.perf_counter()
        pool = VerifierPool(verifier, workers=workers, inline=(path == "inline"))
        pool.wait_ready()
        startup = time.perf_counter() - t0
        best, best_cpu, scores = _timed(lambda: [r.score for r in pool.score_batch(comps, refs)], repeats)
        stats = dict(pool.stats)
        pool.close()
    return {
        "verifier": verifier,
        "path": path,
        "workers": workers if path == "pool" else 1,
        "checks": len(comps),
        "seconds": round(best, 4),
        "checks_per_s": round(len(comps) / best, 1),
        # CPU of this process only, so meaningful where the checks run here (not for the pool)
        "checks_per_cpu_s": None if path == "pool" else round(len(comps) / best_cpu, 1),
        "startup_s": round(startup, 3),
        "mean_score": round(sum(scores) / len(scores), 4),
        "stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/verifiers.json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    workloads = {"gsm8k": gsm8k_workload(), "math": math_workload()}
    settings = [("gsm8k", "inline"), ("gsm8k", "pool"), ("math", "direct"), ("math", "pool")]
    rows = [run(v, p, args.workers, workloads[v], args.repeats) for v, p in settings]

    cols = ["verifier", "path", "workers", "checks", "best s", "checks/s", "checks/CPU-s", "start-up s"]
    print("| " + " | ".join([*cols, "mean score", "timeouts"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['verifier']} | {r['path']} | {r['workers']} | {r['checks']} | {r['seconds']:.3f} | "
            f"{r['checks_per_s']:.0f} | {r['checks_per_cpu_s'] or '-'} | {r['startup_s']:.2f} | "
            f"{r['mean_score']:.3f} | "
            f"{r['stats'].get('timeouts', 0)} |"
        )
    meta = {
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "repeats": args.repeats,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
