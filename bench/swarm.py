"""SAPO's comparison (arXiv:2509.08721): a swarm of nodes training I local + J external groups per step against
the same nodes alone (I + J local, 0 external), at an equal training set per step.

Nodes are trainers of the embedded default with different seeds (shared warm start), stepped in lockstep rounds in
one process through a memory board (the paper's synchronous rounds; `rollwise swarm` runs the same nodes as Ray
actors). Per arm: each node's held-out pass@1 at the end, its cumulative training reward (the paper's measure:
the sum over steps of the mean reward of its own rollouts), generated tokens and wall time.

    python bench/swarm.py --nodes 4 --steps 150 --out bench/results/swarm        # about 20 min on 2 cores
    python bench/swarm.py --quick                                                 # 2 nodes, 20 steps
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np

from rollwise.config import load_config
from rollwise.swarm.board import MemoryBoard
from rollwise.train.trainer import Trainer


def run_arm(args: argparse.Namespace, local: int, external: int, root: Path) -> dict:
    board = f"bench-{uuid.uuid4().hex[:6]}"
    MemoryBoard.clear(board)
    nodes = []
    for k in range(args.nodes):
        over = [f"--run.seed={k}", f"--run.name=l{local}e{external}-node{k}", f"--run.out_dir={root}",
                f"--trainer.steps={args.steps}", "--trainer.eval_every=0", "--trainer.checkpoint_every=0",
                "--trainer.progress=false", "--trainer.plots=false", f"--sampler.batch_prompts={local}",
                f"--swarm.name={board}", f"--swarm.external={external}", f"--swarm.agent=node{k}",
                f"--run.threads={args.threads}", *args.overrides]
        nodes.append(Trainer(load_config(args.config, over)))
    t0 = time.perf_counter()
    start = [n.evaluate()["eval/mean/pass@1"] for n in nodes] if args.start_eval else []
    cum = np.zeros(args.nodes)
    ext_mixed = np.zeros(args.nodes)
    for step in range(args.steps):
        for k, n in enumerate(nodes):  # a round: every node publishes, then reads the others' newest
            t = time.perf_counter()
            row = n.train_step(step)
            n.step_index = step + 1
            n.ledger["ledger/seconds"] += time.perf_counter() - t
            cum[k] += row["rollout/reward_mean"]
            ext_mixed[k] += row.get("swarm/external_mixed", 0)
    final = [n.evaluate() for n in nodes]
    seconds = time.perf_counter() - t0
    out = {"local": local, "external": external, "nodes": args.nodes, "steps": args.steps,
           "final_pass1": [f["eval/mean/pass@1"] for f in final], "start_pass1": start,
           "cumulative_reward": cum.tolist(), "external_mixed_groups": ext_mixed.tolist(),
           "generated_tokens": [n.ledger["ledger/tokens"] for n in nodes],
           "trained_rollouts": [n.ledger["ledger/rollouts_trained"] for n in nodes], "seconds": seconds}
    for n in nodes:
        n.close()
    MemoryBoard.clear(board)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None, help="base config (default: the embedded default)")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--per-step", type=int, default=32, help="groups trained per step (I + J)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--start-eval", action="store_true", help="also evaluate each node before RL")
    ap.add_argument("--quick", action="store_true", help="2 nodes, 20 steps")
    ap.add_argument("--out", default="bench/results/swarm")
    ap.add_argument("overrides", nargs="*", help="extra --key=value config overrides for every node")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.steps = 2, 20
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "runs"
    half = args.per_step // 2
    arms = [run_arm(args, args.per_step, 0, root), run_arm(args, half, args.per_step - half, root)]
    report = {"date": str(date.today()), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "command": "python bench/swarm.py " + " ".join(
                  f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("overrides", "out")),
              "arms": arms}
    (out / "swarm.json").write_text(json.dumps(report, indent=1))
    print(f"{'arm':>10} {'final pass@1 (mean +- sd over nodes)':>38} {'cum. reward':>12} {'gen tokens':>11} {'s':>6}")
    for a in arms:
        f = np.array(a["final_pass1"])
        print(f"{a['local']:>4}/{a['external']:<5} {f.mean():>28.3f} +- {f.std(ddof=1) if len(f) > 1 else 0:.3f} "
              f"{np.mean(a['cumulative_reward']):>12.2f} {np.mean(a['generated_tokens']):>11.0f} {a['seconds']:>6.0f}")


if __name__ == "__main__":
    main()
