"""Measured values for the papers' claims table (docs/benchmarks.md, "The papers' claims, measured"), read
from finished bench grids: per arm, the share of trained groups with mixed rewards (and its complement, groups
trained with zero reward variance), the share of generated prompts whose estimated pass rate is near 1/2,
rollouts generated per prompt by estimated pass rate (hard < 0.25 <= middle <= 0.75 < easy), and the held-out
accuracy after the same number of optimiser steps. Estimates are the sampler's per-prompt pass-rate store
before the step (``trace/alloc``); only the second half of each run counts, when every pool prompt has been
seen (a never-seen prompt sits at the prior).

    python bench/claims.py bench/proving_hard.toml bench/proving_solved.toml --out bench/results/claims.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.bench import load_grid, load_runs
from rollwise.bench_headline import _alloc


def arm_claims(runs: list[list[dict[str, Any]]]) -> dict[str, float]:
    steps = [[r for r in run if "sampler/mixed_share" in r] for run in runs]
    mixed = [r["sampler/mixed_share"] for st in steps for r in st]
    a = _alloc([st[len(st) // 2:] for st in steps])  # the second half of each run
    est, n = a[:, 0], a[:, 1]

    def mean_n(mask: np.ndarray) -> float:
        return float(n[mask].mean()) if mask.any() else float("nan")

    return {"mixed_share": float(np.mean(mixed)), "zero_variance_trained": 1 - float(np.mean(mixed)),
            "near_half_share": float(np.mean((est >= 0.25) & (est <= 0.75))),
            "rpp_hard": mean_n(est < 0.25), "rpp_middle": mean_n((est >= 0.25) & (est <= 0.75)),
            "rpp_easy": mean_n(est > 0.75), "hard_share": float(np.mean(est < 0.25))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("grids", nargs="+")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out: dict[str, Any] = {}
    for path in args.grids:
        g = load_grid(path)
        runs = load_runs(g, finished=True)
        out[g.out.name] = {arm: {"seeds": len(rs), **arm_claims(rs)} for arm, rs in runs.items()}
        print(f"\n{g.out.name}\n| arm | seeds | mixed share | zero-variance trained | prompts near 1/2 | "
              "rollouts/prompt hard / middle / easy | share hard |\n|---|---|---|---|---|---|---|")
        for arm, c in out[g.out.name].items():
            print(f"| {arm} | {c['seeds']} | {c['mixed_share']:.3f} | {c['zero_variance_trained']:.3f} | "
                  f"{c['near_half_share']:.3f} | {c['rpp_hard']:.1f} / {c['rpp_middle']:.1f} / {c['rpp_easy']:.1f} "
                  f"| {c['hard_share']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
