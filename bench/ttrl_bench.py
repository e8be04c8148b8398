"""Label-free test-time RL on the embedded default: TTRL (arXiv:2504.16084) and ETTRL (arXiv:2508.11356) against
GRPO with the true labels (a reference the label-free arms cannot reach), issue 30.

The train pool is small (25 prompts per level, 200) and ``train_eval`` scores exactly those prompts against their
hidden references (the test-time setting: train on unlabeled prompts, report accuracy on them); ``eval`` is the
disjoint held-out split. Per step it keeps the pseudo-label accuracy, the empty-vote rate and the decoded tokens
(``ledger/tokens``, the engine's own count). Restartable per run (a finished run is skipped).

    nice -n 5 python bench/ttrl_bench.py [--steps 40] [--seeds 0 1] [--out bench/results/ttrl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from rollwise.logging import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "ttrl": ["--recipe=ttrl"],  # 16 votes, the first 8 trained
    "ettrl": ["--recipe=ettrl"],  # 15 tree leaves (3 x (1 + 2 x 2)), a random 8 trained, EAR
    "etmr_only": ["--recipe=ettrl", "--algo.shaping=[]"],  # ETMR without EAR (ablation)
    "grpo_labels": [],  # uniform GRPO, 8 rollouts, true labels (not label-free: the ceiling)
}
COMMON = ["--task.train_size=200", "--trainer.train_eval_size=25", "--trainer.eval_every=10",
          "--trainer.checkpoint_every=0", "--trainer.progress=false", "--run.threads=1", "--trainer.plots=false"]
STEP_KEYS = ("label/pseudo_accuracy", "label/empty_vote_rate", "label/empty_win_rate", "label/majority_ratio",
             "label/true_reward_mean", "rollout/reward_mean", "ledger/tokens", "ledger/rollouts",
             "generation/etmr_prefix_share", "loss/ear_group_adv_sum_mean", "perf/generate_seconds")


def run(arm: str, seed: int, steps: int, out: Path) -> Path:
    run_dir = out / f"{arm}_s{seed}"
    if (run_dir / "DONE").exists():
        return run_dir
    cmd = [shutil.which("rollwise") or "rollwise", "train", str(ROOT / "configs" / "tiny.toml"), *ARMS[arm], *COMMON,
           f"--trainer.steps={steps}", f"--run.seed={seed}", f"--run.out_dir={out}", f"--run.name={arm}_s{seed}",
           "--overwrite"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    (run_dir / "DONE").write_text("ok\n")
    return run_dir


def summarise(run_dir: Path) -> dict:
    rows = read_metrics(run_dir)
    steps = [r for r in rows if "rollout/reward_mean" in r]
    evals = [r for r in rows if "eval/mean/pass@1" in r]
    last = steps[-1]
    return {
        "eval_pass1": [(r["step"], r["eval/mean/pass@1"]) for r in evals],
        "train_eval_pass1": [(r["step"], r.get("train_eval/mean/pass@1")) for r in evals],
        "per_step": {k: [r.get(k) for r in steps] for k in STEP_KEYS},
        "tokens_per_rollout": last["ledger/tokens"] / max(last["ledger/rollouts"], 1),
        "seconds": last["ledger/seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ttrl"))
    a = ap.parse_args()
    out = Path(a.out)
    results = {}
    for seed in a.seeds:
        for arm in a.arms:
            results[f"{arm}_s{seed}"] = summarise(run(arm, seed, a.steps, out))
            print(arm, seed, json.dumps({k: v for k, v in results[f"{arm}_s{seed}"].items() if k != "per_step"}),
                  flush=True)
    (out / "summary.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
