"""What does RL change on the embedded default? Split held-out accuracy into "shows its working" and "gets the
working right" for one or more checkpoints of the mixed warm start (``task.scratchpad = 'mixed'``).

Per level and checkpoint: greedy pass@1; the share of greedy answers that start with '#' (a scratchpad);
greedy pass@1 when the '#' is forced (the prompt ends in '#', as in the warm start's prompted demonstrations)
and when a direct answer is forced (the first token may not be '#'); and at temperature 1 (8 samples per
prompt, seeded) the share of '#' rollouts and the accuracy of each kind.

    python bench/probe_working.py src/rollwise/assets/warmstart/c587ab2eeaa128fe \\
        bench/results/default/seed0/checkpoints/step_000150 --out bench/results/working.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rollwise.config import load_config
from rollwise.data.tasks import build_suite
from rollwise.generation.base import SamplingParams
from rollwise.generation.hf import HFEngine
from rollwise.rewards.synthetic import verify_mixed
from rollwise.train.model import load_model


def probe(path: str, cfg, samples: int) -> dict:
    model, tok = load_model(path, device=torch.device("cpu"))
    model.eval()
    marker = tok.convert_tokens_to_ids("#")
    engine = HFEngine(model, tok)
    suite = build_suite(cfg.task.levels, cfg.task.train_size, cfg.task.eval_size, cfg.task.seed)
    M = cfg.generation.max_new_tokens

    def run(prompts, suffix: str, temperature: float, n: int, ban_marker: bool = False):
        ids = [tok(p.text + suffix, add_special_tokens=False)["input_ids"] for p in prompts]
        params = SamplingParams(temperature=temperature, max_new_tokens=M, seed=1)
        if ban_marker:  # one greedy step without '#', then continue greedily from that token
            with torch.inference_mode():
                first = []
                for i in range(0, len(ids), 256):
                    chunk = ids[i:i + 256]
                    width = max(map(len, chunk))
                    x = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in chunk])
                    logits = model(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).logits[:, -1]
                    logits[:, marker] = float("-inf")
                    first += logits.argmax(-1).tolist()
            heads = [tok.decode([f]) for f in first]
            ids = [r + [f] for r, f in zip(ids, first)]
            outs = engine.generate(ids, [n] * len(ids), params)
            return [[(h + c.text, verify_mixed(h + c.text, p.reference).score) for c in cs]
                    for p, h, cs in zip(prompts, heads, outs)]
        outs = engine.generate(ids, [n] * len(ids), params)
        return [[(suffix + c.text, verify_mixed(suffix + c.text, p.reference).score) for c in cs]
                for p, cs in zip(prompts, outs)]

    def mean(xs):
        return sum(s for _, s in xs) / len(xs) if xs else float("nan")

    out = {}
    for name, prompts in suite.eval_sets.items():
        greedy = [x for row in run(prompts, "", 0.0, 1) for x in row]
        forced = [x for row in run(prompts, "#", 0.0, 1) for x in row]
        direct = [x for row in run(prompts, "", 0.0, 1, ban_marker=True) for x in row]
        sampled = [x for row in run(prompts, "", 1.0, samples) for x in row]
        worked = [x for x in sampled if x[0].startswith("#")]
        plain = [x for x in sampled if not x[0].startswith("#")]
        out[name] = {"greedy": mean(greedy), "greedy_working_share": sum(t.startswith("#") for t, _ in greedy)
                     / len(greedy), "forced_working": mean(forced), "forced_direct": mean(direct),
                     "sampled": mean(sampled), "sampled_working_share": len(worked) / len(sampled),
                     "sampled_working_acc": mean(worked), "sampled_direct_acc": mean(plain)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_config(None, [])
    result = {p: probe(p, cfg, args.samples) for p in args.checkpoints}
    cols = list(next(iter(next(iter(result.values())).values())))
    for path, rows in result.items():
        print(path)
        print("| level | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for lv, r in rows.items():
            print(f"| {lv} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
