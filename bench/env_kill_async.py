"""SIGKILL every environment worker of an async ``[env]`` run on a real local Ray, mid-run, and check that no
episode is lost or handed to the trainer twice (issue 28 item 6; the tests do this on an in-process Ray
stand-in, and once on a real Ray in sync mode).

    python bench/env_kill_async.py [--steps 4] [--out /tmp/rollwise_env_kill]

``configs/guess.toml`` shrunk (1 layer, 3 secrets, 4 tasks x 4 episodes a step), ``run.mode = "async"`` at
staleness 1, 2 environment workers and a 50 ms environment step. Once the first step is handed over, every
``ray::EnvWorker`` process that descends from this one (the rollout worker's, and the trainer's own used for
evaluation) is SIGKILLed. Prints, per step, the episodes handed over, ``env/worker_restarts`` and
``env/replayed_episodes``, and whether every episode id was handed over once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def descends_from_me(pid: int) -> bool:
    me = os.getpid()
    while pid > 1:
        if pid == me:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def main() -> None:
    from rollwise.config import load_config
    from rollwise.logging import read_metrics
    from rollwise.train.trainer import Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="/tmp/rollwise_env_kill")
    args = ap.parse_args()
    shutil.rmtree(Path(args.out) / "guess", ignore_errors=True)
    cfg = load_config(ROOT / "configs" / "guess.toml", [
        "--model.layers=1", "--model.hidden=32", "--model.heads=2", "--model.kv_heads=1", "--model.intermediate=64",
        "--warmstart.steps=60", "--warmstart.batch_size=32", "--warmstart.lr=1e-2", "--task.train_size=64",
        "--env.n=3", "--sampler.batch_prompts=4", "--sampler.group_size=4", "--trainer.eval_every=0",
        "--trainer.checkpoint_every=0", "--trainer.plots=false", "--trainer.progress=false", "--run.threads=1",
        "--algo.lr=1e-2", "--trainer.eval_samples=1", "--algo.mini_batches=1", f"--run.out_dir={args.out}",
        f"--warmstart.cache_dir={args.out}/ws", "--run.mode=async", "--async.max_staleness=1", "--env.workers=2",
        "--env.latency_s=0.05", f"--trainer.steps={args.steps}"])
    t = Trainer(cfg)
    handed: list[list[tuple[str, int]]] = []
    collect = t.rollouts.collect

    def spy(*a, **k):
        got = collect(*a, **k)
        handed.append([(r.verify_info["episode"], r.verify_info["turn"]) for rs in got.rollouts.values() for r in rs])
        return got

    t.rollouts.collect = spy
    killed: list[int] = []

    def killer() -> None:
        for _ in range(1500):
            time.sleep(0.2)
            out = subprocess.run(["pgrep", "-f", "ray::EnvWorker"], capture_output=True, text=True).stdout
            pids = [p for p in map(int, out.split()) if descends_from_me(p)]
            if len(pids) >= 4 and handed:  # the trainer's 2 (evaluation) and the rollout worker's 2
                for p in pids:
                    os.kill(p, signal.SIGKILL)
                killed.extend(pids)
                return

    threading.Thread(target=killer, daemon=True).start()
    try:
        t.train()
    finally:
        t.close()
    rows = [r for r in read_metrics(t.run_dir) if "env/success" in r]
    eps = [sorted({u for u, _ in s}) for s in handed]
    every = [u for e in eps for u in e]
    print(f"SIGKILLed {len(killed)} environment worker processes after step {1 if killed else '-'}")
    print("step  episodes  env/worker_restarts  env/replayed_episodes  stale_max")
    for r in rows:
        print(f"{r['step']:4d}  {r['env/episodes']:8d}  {r['env/worker_restarts']:19d}  "
              f"{r['env/replayed_episodes']:21d}  {r['offpolicy/stale_max']:9d}")
    print(f"episodes handed over per step: {[len(e) for e in eps]}; each once: {len(every) == len(set(every))}")


if __name__ == "__main__":
    main()
