"""SCOPE (arXiv:2602.24110) vs plain GRPO vs whole-trace replacement (the LUFFY-like control), on the long-tail
testbed (configs/longtail.toml: worked answers, the packaged warm start), same seeds, same steps.

    nice -n 5 python bench/bench_scope.py --steps 30 --seeds 0 1 2

Per arm and seed: the salvage rate (salvaged / failed rollouts, summed over steps), groups trained per step, the
correct rollouts the update saw per step and how many of them were *distinct* completions per group (rectified
ones included), the policy's own distinct correct completions per group, and held-out pass@1 at the end.
Results: bench/results/scope/<arm>_s<seed>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rollwise.config import load_config
from rollwise.logging import read_metrics
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "grpo": [],
    "scope": ["--recipe=scope"],
    "whole": ["--recipe=scope", "--sampler.transform.splice=whole"],
}


def run(arm: str, seed: int, steps: int, out: Path, extra: list[str], eval_n: int) -> dict:
    cfg = load_config(ROOT / "configs" / "longtail.toml", [
        f"--run.seed={seed}", f"--run.name=scope_{arm}_s{seed}", f"--run.out_dir={out / 'runs'}",
        f"--trainer.steps={steps}", f"--trainer.eval_every={steps}", "--trainer.checkpoint_every=0",
        "--trainer.progress=false", "--run.threads=1", *ARMS[arm], *extra])
    t = Trainer(cfg)
    # held-out eval on the first ``eval_n`` prompts of each level (task.eval_size would change the warm start's key)
    t.task.eval_sets = {k: v[:eval_n] for k, v in t.task.eval_sets.items()}
    per_step: list[dict] = []
    finalize = t.pipeline.finalize

    def spy(pools, step=None):  # what the update receives: correct rollouts and distinct completions per group
        plan = finalize(pools, step)
        correct = distinct = own_distinct = rectified = 0
        for g in plan.groups:
            good = [r for r in g.rollouts if r.reward > 0.5]
            correct += len(good)
            distinct += len({r.text for r in good})
            own_distinct += len({r.text for r in good if not r.off_policy_mask})
            rectified += sum(bool(r.off_policy_mask) for r in g.rollouts)
        per_step.append({"groups": len(plan.groups), "correct": correct, "distinct": distinct,
                         "own_distinct": own_distinct, "rectified": rectified})
        return plan

    t.pipeline.finalize = spy
    t0 = time.perf_counter()
    try:
        t.train(overwrite=True)
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    final = rows[-1]
    failed = sum(r.get("sampler/transform/failed", 0) for r in rows)
    salvaged = sum(r.get("sampler/transform/salvaged", 0) for r in rows)
    res = {
        "arm": arm, "seed": seed, "steps": steps, "seconds": time.perf_counter() - t0,
        "salvage_rate": salvaged / failed if failed else 0.0, "salvaged": salvaged, "failed": failed,
        "groups_per_step": float(np.mean([s["groups"] for s in per_step])),
        "correct_per_step": float(np.mean([s["correct"] for s in per_step])),
        "distinct_correct_per_step": float(np.mean([s["distinct"] for s in per_step])),
        "own_distinct_correct_per_step": float(np.mean([s["own_distinct"] for s in per_step])),
        "rectified_per_step": float(np.mean([s["rectified"] for s in per_step])),
        "reward_mean": float(np.mean([r["rollout/reward_mean"] for r in rows])),
        "eval_pass1": final.get("eval/mean/pass@1"), "eval_chain": final.get("eval/chain/pass@1"),
        "tokens": final.get("ledger/tokens"),
    }
    (out / f"{arm}_s{seed}.json").write_text(json.dumps(res, indent=1))
    return res


def summarize(out: Path, arms: list[str]) -> None:
    """A markdown table over every result in ``out`` (mean and min-max over seeds), with two counters read back
    from the runs' metrics: all-failed groups made mixed per step, and the share of trained groups with mixed
    rewards."""
    rows = []
    for arm in arms:
        rs = [json.loads(f.read_text()) for f in sorted(out.glob(f"{arm}_s*.json"))]
        if not rs:
            continue
        for r in rs:  # read from the run's metrics (git-ignored) once, then kept in the result's JSON
            run_dir = out / "runs" / f"scope_{arm}_s{r['seed']}"
            if "mixed_share" not in r and run_dir.exists():
                m = [x for x in read_metrics(run_dir) if "rollout/reward_mean" in x]
                r["unlocked_per_step"] = float(np.mean([x.get("sampler/transform/groups_unlocked", 0) for x in m]))
                r["mixed_share"] = float(np.mean([x["sampler/mixed_share"] for x in m]))
                (out / f"{arm}_s{r['seed']}.json").write_text(json.dumps(r, indent=1))
        keys = ["salvage_rate", "unlocked_per_step", "mixed_share", "correct_per_step", "distinct_correct_per_step",
                "reward_mean", "eval_pass1", "eval_chain", "seconds"]
        cells = []
        for k in keys:
            v = [r[k] or 0.0 for r in rs]
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" if len(v) > 1 else f"{v[0]:.3f}")
        rows.append(f"| {arm} | {len(rs)} | " + " | ".join(cells) + " |")
    print("| arm | seeds | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--eval-n", type=int, default=50, help="held-out prompts per level at the end")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scope"))
    ap.add_argument("overrides", nargs="*", help="extra --key=value overrides for every arm")
    ap.add_argument("--summarize", action="store_true", help="only print the table of the results in --out")
    a = ap.parse_args()
    out = Path(a.out)
    if a.summarize:
        summarize(out, a.arms)
        return
    out.mkdir(parents=True, exist_ok=True)
    results = [run(arm, s, a.steps, out, a.overrides, a.eval_n) for s in a.seeds for arm in a.arms]
    keys = ["salvage_rate", "groups_per_step", "correct_per_step", "distinct_correct_per_step",
            "own_distinct_correct_per_step", "reward_mean", "eval_pass1", "eval_chain", "seconds"]
    print("arm    " + " ".join(f"{k[:14]:>14}" for k in keys))
    for arm in a.arms:
        rs = [r for r in results if r["arm"] == arm]
        print(f"{arm:6} " + " ".join(f"{np.mean([r[k] or 0 for r in rs]):14.3f}" for k in keys))


if __name__ == "__main__":
    main()
