"""Supervised warm start of the embedded model on the procedural tasks (loss on the answer only), cached by
a hash of everything that determines it, so the next run with the same settings reuses it."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rollwise.config import Config
from rollwise.data.tasks import sft_stream
from rollwise.train.model import build_char_tokenizer, build_embedded_model
from rollwise.train.policy import build_seq_batch, compute_logprobs

PACKAGED = Path(__file__).resolve().parent.parent / "assets" / "warmstart"


def warmstart_key(cfg: Config) -> str:
    """Hash of the model shape, SFT settings, task levels and seed: equal keys give identical warm starts."""
    m, w = cfg.model, cfg.warmstart
    blob = {
        "model": [m.layers, m.hidden, m.heads, m.kv_heads, m.intermediate],
        "sft": [w.steps, w.batch_size, w.lr, sorted(w.level_weights.items())],
        "levels": cfg.task.levels, "eval_size": cfg.task.eval_size, "task_seed": cfg.task.seed,
        "seed": w.seed, "v": 1,
    }
    # Options added after v1 enter the key only when they differ from their v1 behaviour, so older keys (the
    # packaged direct-answer warm start) stay valid whatever today's defaults are.
    v1 = [(w, "final_lr_ratio", 0.0), (w, "weight_decay", 0.01), (m, "tie_embeddings", True),
          (cfg.task, "answer_order", "msb"), (cfg.task, "scratchpad", "none")]
    changed = {k: getattr(sec, k) for sec, k, old in v1 if getattr(sec, k) != old}
    if cfg.task.scratchpad == "mixed":
        changed |= {"scratchpad_share": cfg.task.scratchpad_share, "scratchpad_prompted": cfg.task.scratchpad_prompted}
    if changed:
        blob["extra"] = changed
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def find_warmstart(cfg: Config) -> Path | None:
    """An existing warm start for this config: the explicit path, the cache, or the one shipped in the package."""
    if cfg.warmstart.checkpoint:
        p = Path(cfg.warmstart.checkpoint)
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"warmstart.checkpoint {p} has no config.json")
        return p
    key = warmstart_key(cfg)
    for p in (Path(cfg.warmstart.cache_dir) / key, PACKAGED / key):
        if (p / "config.json").is_file():
            return p
    return None


def lr_factor(step: int, steps: int, warmup: int, floor: float) -> float:
    """SFT learning-rate multiplier: linear warm-up, then cosine from 1 down to ``floor`` at ``steps``."""
    cos = 0.5 * (1 + math.cos(math.pi * min(step / max(steps, 1), 1.0)))
    return min((step + 1) / warmup, floor + (1 - floor) * cos)


def train_warmstart(cfg: Config, exclude: set[str], device: torch.device,
                    log: Callable[[dict], None] | None = None) -> Path:
    """Train the embedded model by SFT, save it to the cache and return its directory."""
    w = cfg.warmstart
    torch.manual_seed(w.seed)
    tok = build_char_tokenizer()
    model = build_embedded_model(tok, cfg.model, w.seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=w.lr, weight_decay=w.weight_decay, betas=(0.9, 0.98))
    warm = max(w.steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, w.steps, warm, w.final_lr_ratio))
    stream = sft_stream(w.level_weights, w.seed, exclude, cfg.task.answer_order, cfg.task.scratchpad,
                         cfg.task.scratchpad_share, cfg.task.scratchpad_prompted)
    eos = tok.eos_token_id
    model.train()
    t0 = time.time()
    for step in range(w.steps):
        pairs = [next(stream) for _ in range(w.batch_size)]
        prompts = [tok(p, add_special_tokens=False)["input_ids"] for p, _ in pairs]
        answers = [tok(a, add_special_tokens=False)["input_ids"] + [eos] for _, a in pairs]
        batch = build_seq_batch(prompts, answers, tok.pad_token_id).to(device)
        logp, _ = compute_logprobs(model, batch)
        loss = -(logp.sum() / batch.completion_mask.sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log is not None and (step % 100 == 0 or step == w.steps - 1):
            log({"warmstart/step": step, "warmstart/loss": loss.item(), "perf/seconds": time.time() - t0})
    out = Path(w.cache_dir) / warmstart_key(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "warmstart.json").write_text(json.dumps({"key": warmstart_key(cfg), "seconds": time.time() - t0}))
    return out
