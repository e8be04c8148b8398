"""Score a model on the ``ledger`` game's held-out problems (docs/benchmarks.md, the SmolLM2 ledger section).

    python bench/ledger_eval.py configs/smollm2_ledger.toml [--model PATH] [--n 1] [--out FILE.json] [--OVERRIDES]

Plays every held-out task ``n`` times with the config's eval sampling (greedy in the preset) through the same
collector training uses (chat template across turns, the preset's system prompt) and reports what the gain is
made of: success, and the format of the actions apart from it: the share of actions that are a CALC or ANSWER
(``valid``), CALCs the calculator could evaluate, CALCs the functional step check accepts (``useful``), episodes
that answered at all, episodes whose answer was right, actions cut by the token cap (``cut``), turns and tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rollwise.config import load_config
from rollwise.envs.base import env_factory
from rollwise.envs.collector import build_episode_collector, episode_metrics
from rollwise.envs.ledger import CalcError, parse_action, parse_answer, safe_eval
from rollwise.train.rollout_parts import build_engine, build_policy, sampling_params
from rollwise.train.setup import build_task, set_threads


def action_stats(episodes: list, make_env) -> dict[str, float]:
    """Format and play of every action, replayed through the functional step check."""
    acts = valid = calcs = evaluable = useful = answered = right = cut = 0
    for ep in episodes:
        env = make_env()
        env.reset(ep.task)
        for t in ep.turns:
            acts += 1
            cut += t.finish_reason == "length"
            got = parse_action(t.text)
            state = env.snapshot()
            if got is not None and (got[0] == "calc" or parse_answer(got[1]) is not None):
                valid += 1
                if got[0] == "calc":
                    calcs += 1
                    try:
                        safe_eval(got[1])
                        evaluable += 1
                    except CalcError:
                        pass
                    useful += env.action_reward(state, t.text) > 0
                else:
                    answered += 1
                    right += env.action_reward(state, t.text) > 0
            if env.step(t.text).done:
                break
    n, a = max(len(episodes), 1), max(acts, 1)
    return {"actions": acts, "valid_share": valid / a, "calc_per_episode": calcs / n,
            "calc_evaluable_share": evaluable / max(calcs, 1), "calc_useful_share": useful / max(calcs, 1),
            "answered_share": answered / n, "answer_right_given_answered": right / max(answered, 1),
            "cut_share": cut / a}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N held-out tasks only (0 = all)")
    ap.add_argument("--out", default=None)
    args, overrides = ap.parse_known_args(argv)
    if args.model:
        overrides.append(f"--model.path={args.model}")
    cfg = load_config(args.config, overrides)
    set_threads(cfg)
    task = build_task(cfg)
    model, tok, _ = build_policy(cfg, task)
    model.eval()
    engine = build_engine(cfg, model, tok)
    params = sampling_params(cfg, tok, eval_mode=True)
    (name, tasks), = task.eval_sets.items()
    tasks = tasks[:args.limit] if args.limit else tasks
    collector = build_episode_collector(cfg, engine, tasks, tok, params)
    index = [i for i in range(len(tasks)) for _ in range(args.n)]
    t0 = time.perf_counter()
    episodes = collector.loop.run([tasks[i] for i in index], index, params)
    for ep in episodes:
        ep.task = tasks[ep.task_index]
    out = {"model": cfg.model.path, "tasks": len(tasks), "n": args.n, "seconds": round(time.perf_counter() - t0, 1),
           **episode_metrics(episodes, name), **action_stats(episodes, env_factory(cfg.env))}
    for ep in episodes[:3]:
        print("---", ep.task.text, "->", ep.task.reference)
        for t in ep.turns:
            print("  A:", repr(t.text))
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
