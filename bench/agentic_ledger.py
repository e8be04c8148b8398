"""PivotRL (arXiv 2603.21383) and UI-S1 (arXiv 2509.11543) on SmolLM2's calculator game, ``ledger`` (issue 29).

    OMP_NUM_THREADS=1 nice -n 5 python bench/agentic_ledger.py [--steps 6] [--batch 8] [--pool 24] \\
        [--sop-size 40] [--free 12] [--eval-every 3] [--lr 2e-5] [--temperature 0.7] [--seed 0] [--arms start ...]

The 2026-12-07 results (``agentic_s0.json``) are these defaults, every arm in one process; UI-S1 was rerun alone
with ``--eval-every 6 --arms uis1`` after its first run stopped on four steps that trained nothing (every task
filtered; such steps are now allowed).

The arms of ``bench/agentic_chain.py`` (its ``run_rl`` loop, with this file's trainer and scorer) on
``configs/smollm2_ledger.toml`` (SmolLM2-135M-Instruct, the chat template opened by the preset's system prompt,
4 turns per episode, ``--run.threads=1``), every arm from the pretrained model, the same train pool (``--pool``
problems: PivotRL's candidates, SFT's pairs, UI-S1's trajectories, e2e RL's tasks), the same rollout temperature
(``--temperature``) and learning rate (``--lr``, no warm-up):

- ``start``: the pretrained model.
- ``pivotrl``: ``--recipe=pivotrl`` (K = 8 profiling at every expert turn of the pool, lambda_diff 0.75, G = 8,
  functional reward), ``--steps`` steps of ``--batch`` pivots.
- ``pivotrl_exact``: the same with the exact-match reward (the action parsed out of the reply must equal the
  expert's, ``Ledger.canonical_action``); it reuses ``pivotrl``'s pivot table when that ran first in this process
  (profiling is seeded and functional in both: the same table), else profiles again.
- ``sft``: SFT on the pool's expert (context, action) pairs in the chat format, as many updates and rows per update
  as PivotRL (``--batch`` x 8).
- ``e2e``: end-to-end RL on whole episodes (the config's GRPO, the episode return on each turn), episodes per step
  = PivotRL's turns per step / the start model's mean episode length, so ~equal rollout turns.
- ``uis1``: ``--recipe=uis1`` (8 rollouts per task, patch budget 2), tasks per step = ``--batch`` / 3 (the
  expert's 3 steps), so ~equal turns; scored every ``--eval-every`` steps (SOP vs free-running across checkpoints).

Scores (greedy): SOP on the first ``--sop-size`` held-out problems (the expert trajectory with the policy's own
history, no patch, stop at the first mismatch: success and progress; beside them the share of SOP step actions
that are an action at all (``sop_valid_share``, format) and that the functional step check accepts
(``sop_functional_share``)), and free-running success on the first ``--free`` of them (4 turns), with
``bench/ledger_eval.py``'s format/play counters (``valid_share``, ``calc_useful_share``, ...). Counters: pivots
kept, patches applied, rollout turns generated (``turns``, the trainer's ledger; PivotRL's profiling apart).
Results: ``bench/results/ledger/agentic_s<seed>.json`` (one entry per arm, written after each); run directories go
to ``--out`` (/tmp). Timings are wall seconds on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import agentic_chain  # noqa: E402  (the arms' loop: run_rl)
from ledger_eval import action_stats  # noqa: E402  (format and play of free-running actions)

_PIVOTS: dict[str, Any] = {}  # the pivot table of this process's first PivotRL run (its collector's state)


def trainer_for(args: argparse.Namespace, name: str, *overrides: str) -> Any:
    """A trainer on the ledger preset; a PivotRL run reuses a pivot table profiled earlier in this process."""
    from rollwise.config import load_config
    from rollwise.train.trainer import Trainer

    cfg = load_config(ROOT / "configs" / "smollm2_ledger.toml", [
        f"--run.out_dir={args.out}", f"--run.name={name}", f"--run.seed={args.seed}", "--run.threads=1",
        f"--task.train_size={args.pool}", f"--task.eval_size={args.sop_size}", "--env.max_turns=4",
        "--trainer.plots=false", "--trainer.progress=false", "--trainer.checkpoint_every=0",
        "--trainer.eval_every=0", f"--trainer.steps={args.steps}", f"--sampler.batch_prompts={args.batch}",
        "--sampler.group_size=8", f"--generation.temperature={args.temperature}", f"--algo.lr={args.lr}",
        "--algo.warmup_steps=0", "--algo.micro_batch=8",
        *overrides])
    t = Trainer(cfg)
    if cfg.agentic is not None and cfg.agentic.type == "pivotrl" and _PIVOTS:
        c = t.collector
        c.pivots, c.by_task, c.profile = _PIVOTS["pivots"], _PIVOTS["by_task"], dict(_PIVOTS["profile"])
        c.profile["pivot/profile_reused"] = 1
    return t


def sop_counters(coll: Any, rolls: list[Any], tasks: list[Any]) -> dict[str, float]:
    """Format and functional accuracy of every SOP step action (its state is the expert's at that step: SOP
    stops at the first mismatch, and a match plays the expert's action)."""
    valid = functional = n = 0
    for ro in rolls:
        env = coll.make_env()
        env.reset(tasks[ro.task_index])
        expert = env.expert(tasks[ro.task_index])
        for s in ro.steps:
            n += 1
            valid += coll.canon(s.text) is not None
            functional += coll.checker.action_reward(env.snapshot(), s.text) > 0
            env.step(expert[s.step])
    return {"sop_steps": n, "sop_valid_share": valid / max(n, 1), "sop_functional_share": functional / max(n, 1)}


def score(t: Any, args: argparse.Namespace) -> dict[str, Any]:
    """SOP on ``--sop-size`` held-out problems and free-running play on the first ``--free`` (greedy)."""
    from rollwise.envs.collector import episode_metrics
    from rollwise.envs.methods import Uis1Knobs
    from rollwise.envs.semi_online import SemiOnlineCollector, play_semi_online, sop_metrics
    from rollwise.train.rollout_parts import sampling_params

    if t.cfg.agentic is not None and t.cfg.agentic.type == "pivotrl" and not _PIVOTS and t.collector.pivots:
        _PIVOTS.update(pivots=t.collector.pivots, by_task=t.collector.by_task, profile=t.collector.profile)
    t0 = time.perf_counter()
    params = sampling_params(t.cfg, t.tok, eval_mode=True)
    t.collector.engine.sync_weights(t.model, 10_000)
    coll = SemiOnlineCollector(t.cfg, t.collector.engine, t.task.pool, t.tok, params, **Uis1Knobs().model_dump())
    (_, tasks), = t.task.eval_sets.items()
    rolls = play_semi_online(coll, tasks, list(range(len(tasks))), params, 0, params.seed)
    out: dict[str, Any] = {k.split("/")[-1]: v for k, v in sop_metrics(rolls, "sop").items()}
    out |= sop_counters(coll, rolls, tasks)
    t1 = time.perf_counter()
    free = tasks[:args.free]
    episodes = coll.base.loop.run(free, list(range(len(free))), params)
    for ep in episodes:
        ep.task = free[ep.task_index]
    got = episode_metrics(episodes, "free") | action_stats(episodes, coll.make_env)
    keep = ("success", "turns_mean", "return_mean", "tokens_mean", "valid_share", "calc_per_episode",
            "calc_useful_share", "answered_share", "answer_right_given_answered", "cut_share")
    out |= {k.split("/")[-1]: v for k, v in got.items() if k.split("/")[-1] in keep}
    out |= {"sop_seconds": t1 - t0, "free_seconds": time.perf_counter() - t1}
    return {k: round(float(v), 4) for k, v in out.items()}


def run_sft(args: argparse.Namespace) -> dict[str, Any]:
    """SFT on the pool's expert (context, action) pairs, in the chat format PivotRL's candidates use (the action
    closed by the template's end-of-turn token): ``--steps`` updates of ``--batch`` x 8 rows, the RL lr."""
    import torch

    from rollwise.envs.methods import StepCollectorBase
    from rollwise.envs.pivot import expert_candidates
    from rollwise.train.policy import build_seq_batch, compute_logprobs
    from rollwise.train.rollout_parts import sampling_params

    t = trainer_for(args, "sft")
    try:
        coll = StepCollectorBase(t.cfg, t.collector.engine, t.task.pool, t.tok, sampling_params(t.cfg, t.tok))
        end = getattr(coll.fmt, "end_of_turn", [t.tok.eos_token_id])[0]
        pairs = [(c.context, coll.encode(c.expert) + [end])
                 for c in expert_candidates(coll, t.task.pool, list(range(len(t.task.pool))))]
        rng = random.Random(args.seed)
        opt = torch.optim.AdamW([p for p in t.model.parameters() if p.requires_grad], lr=t.cfg.algo.lr,
                                weight_decay=t.cfg.algo.weight_decay, betas=(0.9, 0.99))
        t.model.train()
        losses = []
        for _ in range(args.steps):
            rows = [pairs[rng.randrange(len(pairs))] for _ in range(args.batch * 8)]
            opt.zero_grad(set_to_none=True)
            tokens = sum(len(a) for _, a in rows)
            for k in range(0, len(rows), 8):  # micro-batches of 8, the loss a token mean over the whole batch
                part = rows[k:k + 8]
                batch = build_seq_batch([c for c, _ in part], [a for _, a in part], t.tok.pad_token_id).to(t.device)
                logp, _ = compute_logprobs(t.model, batch)
                loss = -(logp * batch.completion_mask).sum() / tokens
                loss.backward()
                losses.append(loss.item() * tokens / batch.completion_mask.sum().item())
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.algo.grad_clip)
            opt.step()
        t.model.eval()
        return {"turns": 0, "expert_pairs": len(pairs), "sft_rows": args.steps * len(rows),
                "sft_first_nll": round(losses[0], 4), "sft_last_nll": round(losses[-1], 4), **score(t, args)}
    finally:
        t.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8, help="pivots per step (x 8 actions): the turn budget per step")
    ap.add_argument("--pool", type=int, default=24, help="train problems (their expert turns are the candidates)")
    ap.add_argument("--sop-size", type=int, default=40, help="held-out problems scored by SOP")
    ap.add_argument("--free", type=int, default=12, help="of them, played free-running (4 turns)")
    ap.add_argument("--eval-every", type=int, default=3, help="UI-S1's curve: scored every N steps")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--temperature", type=float, default=0.7, help="rollout temperature of every arm (profiling "
                    "too; the start model at 1.0 writes prose: 1 right action in 72 samples at 0.7, see the docs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/rollwise_agentic_ledger")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "ledger"))
    ap.add_argument("--arms", nargs="+", default=["start", "pivotrl", "pivotrl_exact", "sft", "e2e", "uis1"])
    args = ap.parse_args()
    agentic_chain.trainer_for, agentic_chain.score = trainer_for, score  # run_rl's trainer and scorer
    res_path = Path(args.results) / f"agentic_s{args.seed}.json"
    results: dict[str, Any] = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("arms", "out", "results")}
    pivot_turns = args.steps * args.batch * 8
    run_rl = agentic_chain.run_rl
    arms = {
        "start": lambda: run_rl(args, "start", "--trainer.steps=0"),
        "pivotrl": lambda: run_rl(args, "pivotrl", "--recipe=pivotrl"),
        "pivotrl_exact": lambda: run_rl(args, "pivotrl_exact", "--recipe=pivotrl", "--agentic.reward=exact"),
        "sft": lambda: run_sft(args),
        "e2e": lambda: run_rl(args, "e2e", f"--sampler.batch_prompts={max(1, round(args.batch / e2e_turns))}"),
        # an all-filtered step (no task with std(G_0) > 0.3) trains nothing: allowed, counted
        "uis1": lambda: run_rl(args, "uis1", "--recipe=uis1", "--trainer.max_empty_steps=100",
                               f"--sampler.batch_prompts={max(1, round(args.batch / 3))}", every=args.eval_every),
    }
    e2e_turns = max(1.0, results.get("start", {}).get("turns_mean", 4.0))
    for arm in args.arms:
        t0 = time.perf_counter()
        try:
            got = arms[arm]()
        except ValueError as e:  # e.g. PivotRL with no candidate of mixed outcomes: recorded, the grid goes on
            got = {"error": str(e)}
        got |= {"pivot_train_turns": pivot_turns, "seconds": round(time.perf_counter() - t0, 1),
                "finished": time.strftime("%H:%M:%S", time.gmtime())}
        results[arm] = got
        if arm == "start":
            e2e_turns = max(1.0, got.get("turns_mean", 4.0))
        print(arm, json.dumps(got), flush=True)
        res_path.parent.mkdir(parents=True, exist_ok=True)
        res_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
