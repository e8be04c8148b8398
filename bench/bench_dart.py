"""DART's curation (arXiv:2509.23866) on and off, and each part taken out, on the guess environment
(configs/guess.toml: multi-turn episodes, each turn a step sample of its task's group), same seeds and steps.

    nice -n 5 python bench/bench_dart.py --steps 40 --seeds 0

Arms: ``plain`` (the config's GRPO), ``off`` (DART's loss shape with every curation part off), ``dart`` (the
recipe), and ``dart`` minus one part: ``-alloc`` (fixed n), ``-inject`` (no store injection), ``-entropy`` (every
step sample trained), ``-tis`` (the IS cap lifted to 1e6); ``dart@0.6`` reduces n from s >= 0.6. A 32-task
pool, 16 tasks per step, so tasks recur and the per-task parts can act. Per run: episodes generated, episodes
per successful episode, episodes per task-visit after a visit with a success and after one without (the dynamic-n
signature), the share of trained groups with zero variance, injections, and held-out success at the end (every
secret, 8 sampled episodes).
Results: bench/results/dart/<arm>_s<seed>.json and a table on stdout.
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
OFF = ["--sampler.allocator=fixed", "--sampler.transform=none", "--algo.correction=none"]
ARMS = {
    "plain": [],
    "off": ["--recipe=dart", *OFF],
    "dart": ["--recipe=dart"],
    "-alloc": ["--recipe=dart", "--sampler.allocator=fixed"],
    "-inject": ["--recipe=dart", "--sampler.transform=none"],
    "-entropy": ["--recipe=dart", "--algo.correction.entropy_keep=1.0"],
    "-tis": ["--recipe=dart", "--algo.correction.is_cap=1e6"],
    # the dynamic n from s >= 0.6 (where floor(9/s - 7) meets 8) instead of the code's 1.0: solved-ish tasks get 2-7
    "dart@0.6": ["--recipe=dart", "--sampler.allocator.threshold=0.6"],
}


def run(arm: str, seed: int, steps: int, out: Path, extra: list[str]) -> dict:
    cfg = load_config(ROOT / "configs" / "guess.toml", [
        f"--run.seed={seed}", f"--run.name=dart_{arm}_s{seed}", f"--run.out_dir={out / 'runs'}",
        f"--trainer.steps={steps}", f"--trainer.eval_every={steps}", "--trainer.checkpoint_every=0",
        "--trainer.progress=false", "--run.threads=1", "--task.train_size=32", "--sampler.batch_prompts=16",
        *ARMS[arm], *extra])
    t = Trainer(cfg)
    visits: list[tuple[int, int, bool]] = []  # (task, episodes, solved on its previous visit)
    last: dict[int, bool] = {}
    finalize = t.pipeline.finalize

    def spy(pools, step=None):  # episodes per task visit, against whether the task was solved last time
        for p, pool in pools.items():
            rows = pool.own_rewards if pool.own_rewards is not None else pool.rewards  # the policy's own turns
            # an injection replaces one trajectory under its id: the distinct ids are the episodes generated
            episodes = len(np.unique(pool.traj)) if pool.traj is not None else len(rows)
            if p in last:
                visits.append((p, episodes, last[p]))
            last[p] = bool((rows > 0.5).any())
        return finalize(pools, step)

    t.pipeline.finalize = spy
    t0 = time.perf_counter()
    try:
        t.train(overwrite=True)
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "rollout/reward_mean" in r]
    final = rows[-1]
    episodes = sum(r["env/episodes"] for r in rows)
    solved = sum(r["env/success"] * r["env/episodes"] for r in rows)
    after_solved = [e for _, e, s in visits if s]
    after_failed = [e for _, e, s in visits if not s]
    res = {
        "arm": arm, "seed": seed, "steps": steps, "seconds": time.perf_counter() - t0,
        "episodes": episodes, "episodes_per_success": episodes / max(solved, 1e-9),
        "episodes_per_visit_after_solved": float(np.mean(after_solved)) if after_solved else 0.0,
        "episodes_per_visit_after_failed": float(np.mean(after_failed)) if after_failed else 0.0,
        "zero_var_share": float(np.mean([1 - r["sampler/mixed_share"] for r in rows])),
        "injected": final.get("sampler/transform/injected_total", 0.0),
        "train_success": float(np.mean([r["env/success"] for r in rows])),
        "eval_success": final.get("eval/mean/success"),
        "turns_trained": final.get("ledger/rollouts_trained"),
    }
    (out / f"{arm}_s{seed}.json").write_text(json.dumps(res, indent=1))
    return res


KEYS = ["episodes", "episodes_per_success", "episodes_per_visit_after_solved", "episodes_per_visit_after_failed",
        "zero_var_share", "injected", "train_success", "eval_success", "seconds"]


def summarize(out: Path, arms: list[str]) -> None:
    """A markdown table over every result in ``out`` (mean over seeds)."""
    print("| arm | seeds | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 2) + "|")
    for arm in arms:
        rs = [json.loads(f.read_text()) for f in sorted(out.glob(f"{arm}_s*.json"))]
        if rs:
            cells = " | ".join(f"{np.mean([r[k] or 0 for r in rs]):.3f}" for k in KEYS)
            print(f"| {arm} | {len(rs)} | {cells} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dart"))
    ap.add_argument("overrides", nargs="*", help="extra --key=value overrides for every arm")
    ap.add_argument("--summarize", action="store_true", help="only print the table of the results in --out")
    a = ap.parse_args()
    out = Path(a.out)
    if a.summarize:
        summarize(out, a.arms)
        return
    out.mkdir(parents=True, exist_ok=True)
    results = [run(arm, s, a.steps, out, a.overrides) for s in a.seeds for arm in a.arms]
    print("arm      " + " ".join(f"{k[:14]:>14}" for k in KEYS))
    for arm in a.arms:
        rs = [r for r in results if r["arm"] == arm]
        print(f"{arm:8} " + " ".join(f"{np.mean([r[k] or 0 for r in rs]):14.3f}" for k in KEYS))


if __name__ == "__main__":
    main()
