"""Environment workers vs environments in the rollout process, on a slow environment (issue 28 item 6).

    python bench/env_workers.py [--latency 0.02] [--episodes 64] [--workers 0 2 4] [--reps 3] [--seed 0]
    python bench/env_workers.py --trainer [--latency 0.02] [--steps 6]

The embedded multi-turn default (``configs/guess.toml``: guess-the-number, 5 turns at most) with every step of
the environment made ``--latency`` seconds slow (``[env] latency_s``: a sleep, like a remote sandbox or a tool
server; the environment does no CPU work). The policy is the config's model *without* its warm start (random
weights: nearly every guess is invalid, so nearly every episode runs its 5 turns, the same work in every arm).
Each arm plays ``--episodes`` episodes of the first training tasks through the run's own episode collector
(``build_episode_collector``, the trainer's code path): ``--workers 0`` is the turn-by-turn loop in this process
(every environment step, one after another, between two ``generate`` calls), N > 0 the pipelined runner with N
environment workers (Ray actors; Ray is started, and the workers warmed up, before any timing). Arms run
interleaved, ``--reps`` times each; the table gives the median episodes per second, the speed-up over the
in-process arm of the same repetition, and, for the runner, the seconds the engine waited with no episode to
sample (``engine_idle``), spent generating, and the environment workers' seconds in environment calls, summed
(``env_busy``; their idle time is workers x wall-clock minus it). Results go to ``bench/results/env_workers.json``.

``--trainer`` runs the trainer itself (``--steps`` steps of 8 tasks x 4 episodes, no warm start, no eval) in
three arms: sync with the environments in process, sync with 4 environment workers, and async
(``run.mode = "async"``, staleness 1, one rollout worker) with 4 environment workers, and reports the steps'
seconds (``ledger/seconds``) and episodes per second, over all steps and after the first (whose time, in async
mode, includes starting the rollout worker and its environment workers). Results go to
``bench/results/env_workers_trainer.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(workers: int, latency: float, seed: int):
    """(collector, tasks) of guess.toml with ``workers`` environment workers and a slow environment."""
    from rollwise.config import load_config
    from rollwise.envs.collector import build_episode_collector
    from rollwise.train import setup

    cfg = load_config(ROOT / "configs" / "guess.toml", [f"--env.workers={workers}", f"--env.latency_s={latency}",
                                                        "--warmstart.enabled=false", f"--run.seed={seed}",
                                                        "--run.threads=1", "--run.out_dir=/tmp/rollwise_bench"])
    setup.set_threads(cfg)
    task = setup.build_task(cfg)
    model, tok, _ = setup.build_policy(cfg, task)
    engine = setup.build_engine(cfg, model, tok)
    params = setup.sampling_params(cfg, tok)
    return build_episode_collector(cfg, engine, task.pool, tok, params), task.pool, params


def play(collector, pool, params, n: int, seed: int) -> tuple[float, dict]:
    from rollwise.generation.base import SamplingParams

    p = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, params.stop_token_ids, seed)
    before = dict(collector.runner_stats())
    t0 = time.perf_counter()
    episodes = collector.loop.run(pool[:n], list(range(n)), p, 0)
    secs = time.perf_counter() - t0
    after = collector.runner_stats()
    turns = sum(e.num_turns for e in episodes)
    keys = ("engine_idle_seconds", "generate_seconds", "worker_busy_seconds")
    return secs, {"turns": turns, **{k: after[k] - before.get(k, 0) for k in keys if k in after}}


def trainer_arms(args: argparse.Namespace) -> None:
    from rollwise.config import load_config
    from rollwise.logging import read_metrics
    from rollwise.train.trainer import Trainer

    arms = {"sync, in-process": [], "sync, 4 env workers": ["--env.workers=4"],
            "async, 4 env workers": ["--env.workers=4", "--run.mode=async", "--async.max_staleness=1"]}
    table = {}
    for name, extra in arms.items():
        cfg = load_config(ROOT / "configs" / "guess.toml", [
            f"--env.latency_s={args.latency}", "--warmstart.enabled=false", f"--run.seed={args.seed}",
            "--run.threads=1", "--run.out_dir=/tmp/rollwise_bench", f"--run.name=envw{len(table)}",
            f"--trainer.steps={args.steps}", "--trainer.eval_every=0", "--trainer.checkpoint_every=0",
            "--trainer.plots=false", "--trainer.progress=false", "--sampler.batch_prompts=8",
            "--sampler.group_size=4", "--trainer.eval_samples=1", *extra])
        t = Trainer(cfg)
        try:
            t.train(overwrite=True)
        finally:
            t.close()
        rows = [r for r in read_metrics(t.run_dir) if "env/episodes" in r]
        cum = [r["ledger/seconds"] for r in rows]
        step_s = [b - a for a, b in zip([0.0, *cum], cum)]
        episodes = [r["env/episodes"] for r in rows]
        table[name] = {"step_seconds": step_s, "episodes": sum(episodes), "episodes_per_s": sum(episodes) / cum[-1],
                       # steady state: the first step also waits for async's rollout worker to start
                       "episodes_per_s_after_first": sum(episodes[1:]) / sum(step_s[1:]),
                       "turns_mean": sum(r["env/turns_mean"] for r in rows) / len(rows),
                       "stale_max": max(r.get("offpolicy/stale_max", 0) for r in rows)}
        print(name, table[name], flush=True)
    out = Path(args.out).with_name("env_workers_trainer.json")
    out.write_text(json.dumps({"args": vars(args), "table": table}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "env_workers.json"))
    ap.add_argument("--trainer", action="store_true", help="time the trainer's steps, sync and async")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    if args.trainer:
        return trainer_arms(args)
    arms = {w: build(w, args.latency, args.seed) for w in args.workers}
    for coll, pool, params in arms.values():  # start the workers (and Ray) before timing
        play(coll, pool, params, 4, args.seed)
    runs: dict[int, list[dict]] = {w: [] for w in args.workers}
    for rep in range(args.reps):
        for w, (coll, pool, params) in arms.items():
            secs, extra = play(coll, pool, params, args.episodes, args.seed + rep)
            runs[w].append({"seconds": secs, "episodes_per_s": args.episodes / secs, **extra})
            print(f"rep {rep} workers {w}: {secs:.2f} s, {args.episodes / secs:.1f} episodes/s, {extra}", flush=True)
    base = runs[args.workers[0]]
    table = {}
    for w, rs in runs.items():
        table[w] = {"episodes_per_s": statistics.median(r["episodes_per_s"] for r in rs),
                    "speedup": statistics.median(r["episodes_per_s"] / b["episodes_per_s"] for r, b in zip(rs, base)),
                    "turns": statistics.median(r["turns"] for r in rs),
                    **{k: statistics.median(r[k] for r in rs) for k in ("engine_idle_seconds", "generate_seconds",
                                                                          "worker_busy_seconds") if k in rs[0]}}
    print(f"\nlatency {args.latency} s/step, {args.episodes} episodes, median of {args.reps}")
    print("workers  episodes/s  speed-up  turns  engine_idle_s  generate_s  env_busy_s")
    nan = float("nan")
    for w, r in table.items():
        print(f"{w:7d}  {r['episodes_per_s']:10.1f}  {r['speedup']:8.2f}  {r['turns']:5.0f}  "
              f"{r.get('engine_idle_seconds', nan):13.2f}  {r.get('generate_seconds', nan):10.2f}  "
              f"{r.get('worker_busy_seconds', nan):10.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "runs": runs, "table": table}, indent=1))
    for coll, _, _ in arms.values():
        coll.close()


if __name__ == "__main__":
    main()
