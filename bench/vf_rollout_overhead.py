"""What playing episodes through Prime Intellect's ``verifiers`` rollout loop costs over rollwise's own agent loop.

The same tiny embedded model (HF engine, CPU) plays guess-the-number (secrets 1..15, 5 turns, 64 episodes a
call) twice per repeat, interleaved: rollwise's :class:`AgentLoop` with :class:`GuessNumber`, and
:class:`VerifiersLoop` with the default verifiers environment (the same game as a ``vf.MultiTurnEnv``), whose
model calls go through the in-process OpenAI-compatible client (``envs/openai_shim.py``). Reported per arm:
median seconds per call, generate calls, episodes, turns and decoded tokens (the arms sample with different
seeds, so turns differ a little: compare seconds per decoded token too).

Run (needs the verifiers extra, e.g. in its own venv):
    nice -n 5 python bench/vf_rollout_overhead.py --repeats 3 --out bench/results/vf_rollout_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rollwise.envs.guess import GuessKnobs, GuessNumber
from rollwise.envs.loop import AgentLoop, PlainFormat
from rollwise.envs.verifiers_env import VerifiersEnv, VerifiersKnobs, VerifiersLoop
from rollwise.generation import SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.train.model import build_char_tokenizer, build_tiny_model


class Counting:
    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, 0

    def generate(self, *a, **kw):
        self.calls += 1
        return self.engine.generate(*a, **kw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, layers=2, hidden=64, heads=4, kv_heads=2, intermediate=192).eval()
    fmt = PlainFormat(lambda s: tok.encode(s, add_special_tokens=False), (tok.eos_token_id,))
    params = SamplingParams(temperature=1.0, max_new_tokens=4, stop_token_ids=(tok.eos_token_id,), seed=0)
    guess = GuessNumber(n=15)
    vf_env = VerifiersEnv(env_args={"n": 15, "max_turns": 5})
    tasks = {"rollwise": guess.tasks("train", args.episodes, 0), "verifiers": vf_env.tasks("train", args.episodes, 0)}
    rows: dict[str, list[dict[str, float]]] = {"rollwise": [], "verifiers": []}
    for rep in range(args.repeats):
        for arm in ("rollwise", "verifiers"):
            engine = Counting(HFEngine(model, tok, batch_size=64))
            if arm == "rollwise":
                loop = AgentLoop(engine, lambda: GuessNumber(n=15), fmt, GuessKnobs())
            else:
                loop = VerifiersLoop(engine, vf_env, fmt, VerifiersKnobs(max_turns=5))
            p = SamplingParams(params.temperature, params.top_p, params.max_new_tokens, params.stop_token_ids, rep)
            t0 = time.perf_counter()
            eps = loop.run(tasks[arm], list(range(args.episodes)), p)
            dt = time.perf_counter() - t0
            tokens = sum(len(t.action_ids) for e in eps for t in e.turns)
            rows[arm].append({"seconds": dt, "calls": engine.calls, "episodes": len(eps),
                              "turns": sum(e.num_turns for e in eps), "tokens": tokens,
                              "faults": sum(e.fault is not None for e in eps)})
    out = {}
    for arm, rs in rows.items():
        med = statistics.median(r["seconds"] for r in rs)
        out[arm] = {"median_seconds": med, "runs": rs,
                    "median_ms_per_token": statistics.median(1000 * r["seconds"] / r["tokens"] for r in rs)}
        print(f"{arm:10s} median {med:.2f} s/call, {out[arm]['median_ms_per_token']:.2f} ms/decoded token; runs: "
              + "; ".join(f"{r['seconds']:.2f}s {r['calls']} calls {r['turns']} turns {r['tokens']} tok "
                          f"{r['faults']} faults" for r in rs))
    out["ratio_seconds"] = out["verifiers"]["median_seconds"] / out["rollwise"]["median_seconds"]
    print(f"verifiers / rollwise seconds: {out['ratio_seconds']:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
