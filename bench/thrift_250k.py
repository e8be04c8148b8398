"""thrift at the proving ground's full 250k-token budget against the proving ground's uniform GRPO: per seed, the
generated tokens (and projected GPU seconds) at which thrift's held-out accuracy first reaches 90% and 100% of
uniform's mean gain (linear interpolation between evals, as ``bench/combined_report.py``).

The runs are ``bench/combined.toml``'s thrift arm (its base, overrides and ``--recipe=thrift``) with the budget
raised to 250k (docs/benchmarks.md section 25, "At the full 250k budget"), one per seed:

    for s in 0 1 2; do rollwise train configs/tiny.toml --recipe=thrift --run.seed=$s --run.name=seed$s \
        --run.out_dir=/tmp/thrift_250k --task.levels="['add3','add4','mul2','sum3']" \
        --warmstart.checkpoint=src/rollwise/assets/warmstart/c587ab2eeaa128fe --task.train_size=1024 \
        --task.eval_size=100 --trainer.steps=3000 --trainer.max_tokens=250000 --trainer.eval_every=20 \
        --trainer.checkpoint_every=50 --trainer.progress=false --run.threads=1; done
    python bench/thrift_250k.py /tmp/thrift_250k/seed* --reference bench/proving_hard.toml \
        --out bench/results/combined/thrift_250k.json

``--reference`` reads the grid's reference arm's finished runs (the proving ground's uniform, 5 seeds); without
its run directories, ``--reference-json`` takes the reference numbers of an earlier output. ``--check JSON``
recomputes every crossing from the curves stored in an output and fails if one differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rollwise.bench import _curve, _tokens_to_reach, load_grid, load_runs
from rollwise.bench_cost import PROJECTED, price_runs
from rollwise.logging import read_metrics

METRIC = "eval/mean/pass@1"
COST = {"setup": "h100-vllm-fsdp", "model": "tiny"}  # bench/combined.toml's pricing


def reference(grid_path: str) -> dict[str, Any]:
    """The reference arm's mean gain and its mean tokens to 90% / 100% of that gain (seeds that reach it)."""
    grid = load_grid(grid_path)
    runs = load_runs(grid, finished=True)[grid.reference]
    curves = [_curve(r, METRIC) for r in runs]
    start = float(np.mean([a[0] for _, a in curves]))
    gain = float(np.mean([a[-1] for _, a in curves])) - start
    out: dict[str, Any] = {"reference": f"{Path(grid_path).stem} {grid.reference} ({len(runs)} seeds)",
                           "ref_gain": gain}
    for frac, key in ((0.9, "ref_tokens_to_90"), (1.0, "ref_tokens_to_100")):
        hits = [_tokens_to_reach(t, a, a[0] + frac * gain, True) for t, a in curves]
        out[key] = float(np.nanmean(hits)) if not all(math.isnan(h) for h in hits) else math.nan
    return out


def seed_row(name: str, run: list[dict[str, Any]], gain: float) -> dict[str, Any]:
    """One thrift run: final and best accuracy, tokens, and its crossings of 90% / 100% of ``gain``."""
    tokens, acc = _curve(run, METRIC)
    gpu, _ = _curve(run, METRIC, PROJECTED)
    row: dict[str, Any] = {"run": name, "final_acc": float(acc[-1]), "max_acc": float(acc.max()),
                           "steps": int(run[-1]["step"]), "tokens_final": float(run[-1]["ledger/tokens"])}
    row |= crossings(tokens, acc, gain)
    for frac, key in ((0.9, "gpu_s_to_90"), (1.0, "gpu_s_to_100")):
        row[key] = _tokens_to_reach(gpu, acc, acc[0] + frac * gain, True)
    row["curve"] = [[float(t), float(a)] for t, a in zip(tokens, acc, strict=True)]
    return row


def crossings(tokens: np.ndarray, acc: np.ndarray, gain: float) -> dict[str, float]:
    return {"tokens_to_90": _tokens_to_reach(tokens, acc, acc[0] + 0.9 * gain, True),
            "tokens_to_100": _tokens_to_reach(tokens, acc, acc[0] + gain, True)}


def check(path: str) -> list[str]:
    """Every stored crossing recomputed from the stored curve; the differences, one line each."""
    d = json.loads(Path(path).read_text())
    bad = []
    for s in d["seeds"]:
        t, a = (np.array(c, float) for c in zip(*s["curve"], strict=True))
        for key, v in crossings(t, a, d["ref_gain"]).items():
            if not (math.isclose(v, s[key], rel_tol=1e-9) or (math.isnan(v) and math.isnan(s[key]))):
                bad.append(f"{s['run']} {key}: stored {s[key]}, recomputed {v}")
    return bad


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="thrift run directories (each with metrics.jsonl)")
    ap.add_argument("--reference", default="bench/proving_hard.toml", help="grid whose reference arm is the baseline")
    ap.add_argument("--reference-json", help="take the reference numbers from an earlier output instead")
    ap.add_argument("--check", help="recompute the crossings stored in this output and compare")
    ap.add_argument("--out", default="bench/results/combined/thrift_250k.json")
    args = ap.parse_args(argv)
    if args.check:
        bad = check(args.check)
        print("\n".join(bad) or f"{args.check}: every crossing recomputes")
        sys.exit(1 if bad else 0)
    if args.reference_json:
        ref = {k: v for k, v in json.loads(Path(args.reference_json).read_text()).items() if k != "seeds"}
    else:
        ref = reference(args.reference)
    runs = price_runs({"thrift": [read_metrics(Path(r)) for r in args.runs]}, COST)["thrift"]
    out = {**ref, "seeds": [seed_row(Path(r).name, run, ref["ref_gain"]) for r, run in zip(args.runs, runs,
                                                                                             strict=True)]}
    Path(args.out).write_text(json.dumps(out, indent=1))
    for s in out["seeds"]:
        print(f"{s['run']}: final {s['final_acc']:.4f}, tokens to 90% {s['tokens_to_90']:.0f} "
              f"({s['tokens_to_90'] / ref['ref_tokens_to_90']:.2f}x), to 100% {s['tokens_to_100']:.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
