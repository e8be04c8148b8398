"""PivotRL (arXiv 2603.21383) and UI-S1 (arXiv 2509.11543) on the ``chain`` environment (issue 29 items 1, 3).

    python bench/agentic_chain.py [--steps 8] [--turns 512] [--seed 0] [--arms start pivotrl ...]

Every arm starts from the same warm start of ``configs/chain.toml`` (``--warmstart``: a directory; trained from
the config when absent) and is scored on the same held-out tasks (``task.eval_size`` of them, ``--samples``
episodes each): free-running success (the episode played to its end, stopping at the first wrong step) and
semi-online performance (SOP: the expert trajectory with the policy's own history, no patch, stop at the first
mismatch; success and progress). Arms:

- ``start``: the warm start itself.
- ``pivotrl``: ``--recipe=pivotrl`` (K = 8 profiling, lambda_diff 0.75, functional reward), ``--steps`` steps.
- ``pivotrl_exact``: the same with the string-match reward.
- ``pivotrl_nofilter``: the same without the pivot filter (every expert turn).
- ``sft``: SFT on the same expert trajectories (every (context, expert action) pair of the pool), as many
  updates and rows per update as PivotRL's (its groups' rows), the RL learning rate.
- ``e2e``: end-to-end RL on whole episodes (the episode return on each turn) with the same rollout turns as
  PivotRL's training (``--turns`` per step; PivotRL spends steps x batch x G turns, plus its profiling).
- ``e2e_4x``: the same with 4x the rollout turns (the paper's claim: PivotRL competitive at 4x fewer turns).
- ``uis1``: ``--recipe=uis1``, evaluated every ``--eval-every`` steps (SOP vs free-running across checkpoints).

Rollout turns are counted from the ledger (``ledger/rollouts``: turns generated). Results go to
``bench/results/agentic_chain_<start>[_ws<N>].json`` (``--ws-steps N``: configs/chain.toml's warm start trained for
N SFT steps instead of 1,500), one entry per ``--seed``; ``--summary`` adds mean [min-max] per arm over seeds and
Spearman's rho of SOP against free-running success across checkpoints (each ``--curve-arms`` run is scored every
``--eval-every`` steps). docs/benchmarks.md has the table. Timings are not reported (2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def trainer_for(args: argparse.Namespace, name: str, *overrides: str) -> Any:
    from rollwise.config import load_config
    from rollwise.train.trainer import Trainer

    cfg = load_config(ROOT / "configs" / "chain.toml", [
        f"--run.out_dir={args.out}", f"--run.name={name}", f"--run.seed={args.seed}", f"--run.threads={args.threads}",
        f"--warmstart.checkpoint={args.warmstart}", f"--task.train_size={args.pool}", *args.env,
        f"--task.eval_size={args.eval_size}", "--trainer.plots=false", "--trainer.progress=false",
        "--trainer.checkpoint_every=0", "--trainer.eval_every=0", f"--trainer.steps={args.steps}",
        f"--sampler.batch_prompts={args.batch}", "--sampler.group_size=8", *overrides])
    return Trainer(cfg)


def score(t: Any, args: argparse.Namespace) -> dict[str, float]:
    """Free-running success and SOP of the trainer's current weights on the eval set."""
    from rollwise.envs.methods import Uis1Knobs
    from rollwise.envs.semi_online import SemiOnlineCollector
    from rollwise.train.rollout_parts import sampling_params

    params = sampling_params(t.cfg, t.tok, eval_mode=True)
    t.collector.engine.sync_weights(t.model, 10_000)
    coll = SemiOnlineCollector(t.cfg, t.collector.engine, t.task.pool, t.tok, params, **Uis1Knobs().model_dump())
    got = coll.evaluate(t.task.eval_sets, params, args.samples)
    return {k.split("/")[-1]: round(float(v), 4) for k, v in got.items() if k.startswith("eval/mean/")}


def run_rl(args: argparse.Namespace, name: str, *overrides: str, every: int = 0) -> dict[str, Any]:
    t = trainer_for(args, name, *overrides)
    curve, row = [], {}
    try:
        for s in range(t.cfg.trainer.steps):
            row = t.train_step(s)
            t.step_index = s + 1
            if every and (s + 1) % every == 0:
                curve.append({"step": s + 1, "turns": int(t.ledger["ledger/rollouts"]), **score(t, args)})
        # the last checkpoint's scores when the curve has them (the eval is seeded: the same numbers again)
        final = {k: v for k, v in curve[-1].items() if k not in ("step", "turns")} \
            if curve and curve[-1]["step"] == t.cfg.trainer.steps else score(t, args)
        out = {"turns": int(t.ledger["ledger/rollouts"]), **final,
               **{k: v for k, v in row.items() if k.startswith(("pivot/", "uis1/"))}}
        if curve:
            out["curve"] = curve
    finally:
        t.close()
    return out


def run_sft(args: argparse.Namespace) -> dict[str, Any]:
    """SFT on the pool's expert (context, action) pairs: steps x (batch x 8) rows, the RL learning rate."""
    import torch

    from rollwise.envs.base import check_messages, env_factory
    from rollwise.train.policy import build_seq_batch, compute_logprobs

    t = trainer_for(args, "sft")
    env = env_factory(t.cfg.env)()
    pairs = []
    for task in t.task.pool:
        ctx = env.reset(task)
        for a in env.expert(task):
            pairs.append((ctx, a))
            # the environment's answer after the action, as the agent loop's context has it
            ctx += a + "".join(m["content"] for m in check_messages(env.step(a).observation))
    rng = random.Random(args.seed)
    opt = torch.optim.AdamW([p for p in t.model.parameters() if p.requires_grad], lr=t.cfg.algo.lr,
                            weight_decay=t.cfg.algo.weight_decay, betas=(0.9, 0.99))
    tok = t.tok
    try:
        t.model.train()
        for _ in range(args.steps):
            rows = [pairs[rng.randrange(len(pairs))] for _ in range(args.batch * 8)]
            prompts = [tok(c, add_special_tokens=False)["input_ids"] for c, _ in rows]
            answers = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, a in rows]
            batch = build_seq_batch(prompts, answers, tok.pad_token_id).to(t.device)
            logp, _ = compute_logprobs(t.model, batch)
            loss = -(logp.sum() / batch.completion_mask.sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), 1.0)
            opt.step()
        t.model.eval()
        return {"turns": 0, "expert_pairs": len(pairs), **score(t, args)}
    finally:
        t.close()


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return round(float(spearmanr(x, y).statistic), 4)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per arm over seeds: mean, min and max of each metric; and Spearman's rho of SOP (success, progress)
    against free-running success across checkpoints: each seed's UI-S1 run (the start, then every scored step),
    those pooled over seeds, and every checkpoint of the file (every arm's final weights and curve points)."""
    seeds = sorted(k for k in results if k.isdigit())
    arms: dict[str, Any] = {}
    for arm in dict.fromkeys(a for s in seeds for a in results[s]):
        rows = [results[s][arm] for s in seeds if arm in results[s]]
        arms[arm] = {"seeds": len(rows), **{k: {"mean": round(sum(r[k] for r in rows) / len(rows), 4),
                                                "min": min(r[k] for r in rows), "max": max(r[k] for r in rows)}
                                            for k in ("turns", "success", "sop_success", "sop_progress",
                                                      "turns_mean")}}
    points: dict[str, list[dict[str, Any]]] = {"all": []}
    for s in seeds:
        start = results[s].get("start")
        for arm, r in results[s].items():
            points["all"].append({"seed": int(s), "arm": arm, "step": "final", **r})
            # a curve's last point is the final weights (--eval-every divides --steps)
            points["all"] += [{"seed": int(s), "arm": arm, **c} for c in r.get("curve", [])[:-1]]
        if "uis1" in results[s]:
            curve = ([{"step": 0, **start}] if start else []) + results[s]["uis1"].get("curve", [])
            points[f"uis1_seed{s}"] = [{"seed": int(s), **c} for c in curve]
    points["uis1_pooled"] = [c for k, v in points.items() if k.startswith("uis1_seed") for c in v]
    rho = {}
    for name, pts in points.items():
        free = [p["success"] for p in pts]
        rho[name] = {"n": len(pts), **{f"rho_{k}": spearman([p[k] for p in pts], free)
                                       for k in ("sop_success", "sop_progress")}}
        if name.startswith("uis1_seed"):
            rho[name] |= {k: [p[k] for p in pts] for k in ("step", "success", "sop_success", "sop_progress")}
    return {"seeds": seeds, "arms": arms, "spearman": rho}


def prepare(args: argparse.Namespace) -> str:
    """The start policy: the packaged long-tail warm start (``configs/longtail.toml``: running totals of the arith
    chain level written in one go) fine-tuned by SFT on the chain environment's scripted play (one total per
    turn, closed by the end-of-sequence token; skips 15%, slips 10%), ``--prep-steps`` steps of 64 pairs."""
    import torch
    from transformers import AutoModelForCausalLM

    from rollwise.config import load_config
    from rollwise.envs.chain import ChainSum
    from rollwise.train.policy import build_seq_batch, compute_logprobs
    from rollwise.train.warmstart import find_warmstart

    out = Path(args.warmstart)
    if (out / "config.json").is_file():
        return str(out)
    src = find_warmstart(load_config(ROOT / "configs" / "longtail.toml"))
    if src is None:
        raise SystemExit("the long-tail warm start is missing: run `rollwise train configs/longtail.toml` once")
    from rollwise.train.model import build_char_tokenizer

    tok = build_char_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(src)
    torch.manual_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    stream = ChainSum(2, args.max_terms, 29).sft_pairs(args.seed, 10)
    model.train()
    for _ in range(args.prep_steps):
        pairs = [next(stream) for _ in range(64)]
        batch = build_seq_batch([tok(c, add_special_tokens=False)["input_ids"] for c, _ in pairs],
                                [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, a in pairs],
                                tok.pad_token_id)
        logp, _ = compute_logprobs(model, batch)
        loss = -(logp.sum() / batch.completion_mask.sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"start policy: {src} + {args.prep_steps} SFT steps on chain play (last loss {loss.item():.3f}) -> {out}")
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16, help="pivots (tasks) per step; x 8 actions each")
    ap.add_argument("--pool", type=int, default=128, help="train tasks (their expert turns are the candidates)")
    ap.add_argument("--eval-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", choices=["chain", "longtail"], default="chain",
                    help="chain: configs/chain.toml's warm start (--warmstart, else trained from the config); "
                         "longtail: the packaged long-tail warm start fine-tuned on chain play (prepare())")
    ap.add_argument("--warmstart", default=str(ROOT / ".cache" / "warmstart" / "chain_ws"),
                    help="the start policy's directory (longtail: made by prepare() when absent)")
    ap.add_argument("--prep-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (run.threads; 0 = every core: two threads "
                    "on a shared 2-core machine ran the warm start ~10x slower than one)")
    ap.add_argument("--ws-steps", type=int, default=0,
                    help="chain: SFT steps of configs/chain.toml's warm start (0 = the config's 1,500 and "
                         "--warmstart); else that warm start is trained once with these steps (seeded by "
                         "warmstart.seed, cached by its key) and results go to agentic_chain_chain_ws<N>.json")
    ap.add_argument("--lr", type=float, default=0.0, help="algo.lr of every arm (SFT's too; 0 = the config's "
                    "5e-4); a non-default value is part of the results file's name")
    ap.add_argument("--curve-arms", nargs="*", default=["uis1"],
                    help="RL arms scored every --eval-every steps (SOP vs free-running across checkpoints)")
    ap.add_argument("--summary", action="store_true", help="only summarise the results file (mean [min-max] per "
                    "arm over seeds, Spearman of SOP vs free-running success across checkpoints)")
    ap.add_argument("--max-terms", type=int, default=6)
    ap.add_argument("--out", default="/tmp/rollwise_agentic_chain")
    ap.add_argument("--arms", nargs="+", default=["start", "pivotrl", "pivotrl_exact", "pivotrl_nofilter", "sft",
                                                  "e2e", "uis1"])
    args = ap.parse_args()
    if args.start == "longtail":
        args.warmstart = prepare(args)
        args.env = ["--env.max_term=29", f"--env.max_terms={args.max_terms}"]
    elif args.ws_steps:  # configs/chain.toml's warm start with more SFT steps, built by the first arm's trainer
        args.warmstart, args.env = "", [f"--warmstart.steps={args.ws_steps}"]
    else:  # configs/chain.toml's own warm start (SFT from scratch on the scripted play; its terms and model)
        args.warmstart = args.warmstart if Path(args.warmstart, "config.json").is_file() else ""
        args.env = []
    tag = f"_ws{args.ws_steps}" if args.start == "chain" and args.ws_steps else ""
    if args.lr:
        args.env.append(f"--algo.lr={args.lr}")
        tag += f"_lr{args.lr:g}"
    res_path = ROOT / "bench" / "results" / f"agentic_chain_{args.start}{tag}.json"
    results: dict[str, Any] = json.loads(res_path.read_text()) if res_path.is_file() else {}
    if args.summary:
        results["summary"] = summarise(results)
        print(json.dumps(results["summary"], indent=1))
        res_path.write_text(json.dumps(results, indent=1))
        return
    pivot_turns = args.steps * args.batch * 8

    def every(arm: str) -> int:
        return args.eval_every if arm in args.curve_arms else 0

    arms = {
        "start": lambda: run_rl(args, "start", "--trainer.steps=0"),
        "pivotrl": lambda: run_rl(args, "pivotrl", "--recipe=pivotrl", every=every("pivotrl")),
        "pivotrl_exact": lambda: run_rl(args, "pivotrl_exact", "--recipe=pivotrl", "--agentic.reward=exact"),
        "pivotrl_nofilter": lambda: run_rl(args, "pivotrl_nofilter", "--recipe=pivotrl", "--agentic.filter=false"),
        "sft": lambda: run_sft(args),
        # episodes of ~3.5 turns: budgeted in turns through the token ledger is not possible, so episodes per
        # step = PivotRL's turns per step / mean turns of the start policy's episodes (measured, printed)
        "e2e": lambda: run_rl(args, "e2e", f"--sampler.batch_prompts={max(1, round(args.batch / args.e2e_turns))}",
                              every=every("e2e")),
        # the paper's cost claim: PivotRL competitive with e2e RL given 4x PivotRL's rollout turns
        "e2e_4x": lambda: run_rl(args, "e2e_4x",
                                 f"--sampler.batch_prompts={max(1, round(4 * args.batch / args.e2e_turns))}",
                                 every=every("e2e_4x")),
        "uis1": lambda: run_rl(args, "uis1", "--recipe=uis1", every=every("uis1")),
    }
    args.e2e_turns = 1.0
    for arm in args.arms:
        if arm.startswith("e2e") and "start" in results.get(str(args.seed), {}):
            args.e2e_turns = max(1.0, results[str(args.seed)]["start"].get("turns_mean", 1.0))
        got = arms[arm]()
        got["pivot_train_turns"] = pivot_turns
        results.setdefault(str(args.seed), {})[arm] = got
        print(arm, json.dumps(got))
        res_path.parent.mkdir(parents=True, exist_ok=True)
        res_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
