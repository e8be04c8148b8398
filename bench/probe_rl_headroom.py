"""Diagnostic for issue 2: can the embedded warm start be improved, and by what?

Starts from the direct-answer warm start (``configs/direct.toml``, the default until 2026-11-30), restricts
training to some levels, and runs either supervised
fine-tuning on the reference answers (``mode=sft``: the ceiling of what the model can still learn) or plain
group-normalised REINFORCE (``mode=rl``: the trainer's on-policy GRPO step without the framework around
it), or REINFORCE with random zero-mean group advantages (``mode=noise``: what the update noise alone does).
Prints greedy held-out pass@1 of the chosen levels at the start and three times during training
(``mode=perturb``: after isotropic Gaussian weight noise of growing size instead of training).

    python bench/probe_rl_headroom.py levels=add2 mode=sft lr=1e-3 P=256 steps=300
    python bench/probe_rl_headroom.py levels=add2 mode=rl lr=1e-4 steps=300
    python bench/probe_rl_headroom.py mode=rl lr=1e-4 warmup=30 P=64 steps=300      # all levels
    python bench/probe_rl_headroom.py mode=rl lr=1e-4 warmup=30 P=64 steps=300 pos=1
    python bench/probe_rl_headroom.py mode=rl opt=sgd lr=3e-3 steps=150           # SGD with momentum 0.9
    python bench/probe_rl_headroom.py levels=sub2 mode=noise lr=3e-5 steps=60 freeze=embed_tokens
    python bench/probe_rl_headroom.py levels=add1,add2,sub2,mul1,sum3 mode=perturb  # weight-noise sharpness
    python bench/probe_rl_headroom.py --warmstart.final_lr_ratio=0.04 mode=rl lr=2e-4 steps=150
      (``--key=value`` arguments are config overrides, e.g. another warm start; ``opt=sgd|adam``,
      ``eps=`` Adam epsilon, ``pool=N`` trains on N fixed prompts,
      ``reward=digits`` gives per-position digit credit instead of 0/1, ``freeze=`` comma-separated
      parameter-name substrings kept fixed)
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import torch

from rollwise.config import load_config
from rollwise.data.scratch import carry_scratchpad
from rollwise.generation import SamplingParams
from rollwise.train import setup
from rollwise.train.evaluate import evaluate
from rollwise.train.policy import build_seq_batch, compute_logprobs
from rollwise.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]

def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if not a.startswith("--"))
    overrides = [a for a in sys.argv[1:] if a.startswith("--")]  # config overrides, e.g. the warm start
    levels = args.get("levels", "add1,add2,sub2,add3,mul1,add4,sum3,mul2").split(",")
    mode, lr, steps = args.get("mode", "rl"), float(args.get("lr", 1e-4)), int(args.get("steps", 300))
    P, G, warmup = int(args.get("P", 32)), int(args.get("G", 8)), int(args.get("warmup", 0))
    cfg = load_config(ROOT / "configs" / "direct.toml", ["--run.out_dir=/tmp/rollwise_probe", "--run.name=probe",
                                                         "--trainer.plots=false",
                             *overrides])
    tr = Trainer(cfg)
    pool = [p for p in tr.task.pool if p.meta["level"] in levels]
    if "pool" in args:  # a small fixed training set: can RL fit the prompts it trains on?
        pool = random.Random(1).sample(pool, int(args["pool"]))
    evs = {k: v for k, v in tr.task.eval_sets.items() if k in levels}
    frozen = [f for f in args.get("freeze", "").split(",") if f]  # parameter-name substrings kept fixed
    for name, prm in tr.model.named_parameters():
        prm.requires_grad_(not any(f in name for f in frozen))
    params = [prm for prm in tr.model.parameters() if prm.requires_grad]
    if args.get("opt", "adam") == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    else:
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), eps=float(args.get("eps", 1e-8)))
    cosine = args.get("decay") == "cosine"  # anneal to 0 over the run (else constant after warm-up)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min((i + 1) / max(warmup, 1), 1.0) * (
        0.5 * (1 + math.cos(math.pi * min(i / steps, 1.0))) if cosine else 1.0))
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    eos = tr.tok.eos_token_id

    def ev() -> dict[str, float]:
        tr.model.eval()
        g = evaluate(tr.engine, tr.verifier, evs, tr.encode, setup.sampling_params(cfg, tr.tok, eval_mode=True))
        return {k.split("/")[1]: round(v, 3) for k, v in g.items() if "pass@1" in k}

    print(mode, levels, lr, "start", ev(), flush=True)
    if mode == "perturb":  # isotropic Gaussian noise of std sigma on every weight, from the warm start
        base = {n: prm.detach().clone() for n, prm in tr.model.named_parameters()}
        for sigma in (1e-4, 3e-4, 1e-3, 3e-3):
            with torch.no_grad():
                for n, prm in tr.model.named_parameters():
                    prm.copy_(base[n] + sigma * torch.randn(prm.shape, generator=gen))
            print("sigma", sigma, ev(), flush=True)
        tr.close()
        return
    rewards: list[float] = []

    def scores(texts: list[str], refs: list[str]) -> list[float]:
        """The configured verifier's 0/1 score, or per-position digit credit with ``reward=digits``."""
        if args.get("reward") != "digits":
            return [r.score for r in tr.verifier.score_batch(texts, refs)]
        return [sum(a == b for a, b in zip(t, r)) / max(len(t), len(r), 1) for t, r in zip(texts, refs)]

    def target(p) -> str:  # the warm start's SFT target: the answer, or the carry scratchpad and the answer
        return carry_scratchpad(p.text, int(p.reference)) if cfg.task.scratchpad == "carries" else p.reference

    for s in range(steps):
        ps = rng.sample(pool, P)
        if mode == "sft":
            b = build_seq_batch([tr.encode(p.text) for p in ps],
                                [tr.tok(target(p), add_special_tokens=False)["input_ids"] + [eos] for p in ps],
                                tr.tok.pad_token_id)
            w = torch.ones(P)  # [P]
        else:
            tr.model.eval()
            comps = tr.engine.generate([tr.encode(p.text) for p in ps], [G] * P,
                                       SamplingParams(1.0, 1.0, cfg.generation.max_new_tokens, (eos,), seed=s))
            R = torch.tensor(scores([c.text.strip() for cs in comps for c in cs],
                                    [p.reference for p in ps for _ in range(G)])).view(P, G)  # [P, G]
            A = torch.randn(P, G, generator=gen) if mode == "noise" else R
            A = (A - A.mean(1, keepdim=True)) / (A.std(1, keepdim=True) + 1e-6)  # [P, G]
            if args.get("pos") == "1":  # positive advantages only: fine-tune on own correct rollouts
                A = A.clamp(min=0)
            b = build_seq_batch([tr.encode(p.text) for p in ps for _ in range(G)],
                                [c.token_ids for cs in comps for c in cs], tr.tok.pad_token_id)
            w = A.flatten()  # [P*G]
            rewards.append(R.mean().item())
        tr.model.train()
        lp, _ = compute_logprobs(tr.model, b)  # [B, C]
        loss = -(w[:, None] * lp).sum() / b.completion_mask.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (s + 1) % max(steps // 3, 1) == 0:
            tail = rewards[-20:]
            print(s + 1, ev(), "sampled_reward(last 20 steps)", round(sum(tail) / max(len(tail), 1), 3), flush=True)
    tr.close()


if __name__ == "__main__":
    main()
