"""PROPS (arXiv:2311.08290) on the embedded default: does the behaviour policy lower sampling error, and does
the learner gain from it at equal rollouts?

1. Sampling error at the state every group shares (its prompt): for each of ``--prompts`` held-out prompts, a
   group of G = 8 sampled by PROPS (4 rounds of 2) and by i.i.d. sampling (1 round), with the warm-started
   policy; the measure is the total variation between the group's first-token frequencies and pi_theta's
   first-token distribution, averaged over groups (lower = closer to on-policy in aggregate).
2. Learning at equal rollouts: the default config trained with ``--recipe=props`` and without, same seeds;
   held-out pass@1 at the end and generated tokens.

    python bench/props.py --seeds 0 1 --out bench/results/props
    python bench/props.py --quick
    python bench/props.py --skip-sampling-error --seeds 0 --props-lr=1e-5   # learning only, phi at lr 1e-5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from rollwise.config import load_config
from rollwise.generation.props import PropsStrategy
from rollwise.generation.strategy import CountingEngine
from rollwise.train.rollout_parts import sampling_params
from rollwise.train.trainer import Trainer


def sampling_error(args: argparse.Namespace, root: Path) -> dict:
    t = Trainer(load_config(args.config, [f"--run.out_dir={root}", "--run.name=props-se", *args.overrides]))
    t.model.eval()
    prompts = [t.encode(p.text) for sets in t.task.eval_sets.values() for p in sets][: args.prompts]
    params = sampling_params(t.cfg, t.tok)
    out = {}
    for name, rounds in (("iid", 1), ("props", 4)):
        s = PropsStrategy(rounds=rounds, lr=args.props_lr, target_kl=args.props_target_kl, epochs=args.props_epochs)
        tvs = []
        t0 = time.perf_counter()
        for i in range(0, len(prompts), 16):  # 16 groups per call: PROPS's buffer is the call's samples
            chunk = prompts[i : i + 16]
            p = dataclasses.replace(params, seed=args.seed + i)
            s.generate(CountingEngine(t.engine), list(range(len(chunk))), chunk, [8] * len(chunk), p, step=0)
            m = s.metrics()
            tvs.append(m["props_first_token_tv"])
        out[name] = {"first_token_tv": float(np.mean(tvs)), "seconds": time.perf_counter() - t0,
                     "groups": len(prompts)}
    t.close()
    return out


def learning(args: argparse.Namespace, root: Path) -> dict:
    arms = {}
    for arm, extra in (("plain", []), ("props", ["--recipe=props", f"--generation.strategy.lr={args.props_lr}",
                                                  f"--generation.strategy.target_kl={args.props_target_kl}",
                                                  f"--generation.strategy.epochs={args.props_epochs}"])):
        rows = []
        for seed in args.seeds:
            cfg = load_config(args.config, [f"--run.out_dir={root}", f"--run.name=props-{arm}-{seed}",
                                            f"--run.seed={seed}", f"--trainer.steps={args.steps}",
                                            "--trainer.progress=false", "--trainer.plots=false",
                                            "--trainer.checkpoint_every=0", "--run.threads=1", *extra,
                                            *args.overrides])
            t = Trainer(cfg)
            t0 = time.perf_counter()
            final = t.train(overwrite=True)
            rows.append({"seed": seed, "pass1": final["eval/mean/pass@1"], "tokens": t.ledger["ledger/tokens"],
                         "rollouts": t.ledger["ledger/rollouts"], "seconds": time.perf_counter() - t0})
            t.close()
        arms[arm] = rows
    return arms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None, help="base config (default: the embedded default)")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--skip-learning", action="store_true")
    ap.add_argument("--skip-sampling-error", action="store_true")
    ap.add_argument("--props-lr", type=float, default=1e-3, help="phi's Adam lr in part 1 (the recipe's: 1e-3)")
    ap.add_argument("--props-target-kl", type=float, default=0.01, help="phi's early-stop KL in part 1")
    ap.add_argument("--props-epochs", type=int, default=16, help="phi's Adam steps per round in part 1")
    ap.add_argument("--quick", action="store_true", help="64 prompts, 1 seed, 20 steps")
    ap.add_argument("--out", default="bench/results/props")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.seeds, args.steps = 64, [0], 20
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"date": str(date.today()), "machine": platform.machine(), "args": {k: v for k, v in vars(args).items()}}
    if not args.skip_sampling_error:
        report["sampling_error"] = sampling_error(args, out / "runs")
        print(json.dumps(report["sampling_error"], indent=1))
    if not args.skip_learning:
        report["learning"] = learning(args, out / "runs")
        for arm, rows in report["learning"].items():
            p = np.array([r["pass1"] for r in rows])
            print(f"{arm:>6}: pass@1 {p.mean():.3f} (seeds {[round(x, 3) for x in p]}), "
                  f"tokens {np.mean([r['tokens'] for r in rows]):.0f}, s {np.mean([r['seconds'] for r in rows]):.0f}")
    (out / "props.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
