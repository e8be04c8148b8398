"""Warm start of the embedded model on the procedural tasks (loss on the answer only), cached by a hash of
everything that determines it, so the next run with the same settings reuses it.

Two objectives (``warmstart.objective``), on the same data stream, steps, batch and learning-rate schedule, so
their compute is comparable (OTR adds only a multinomial draw over the answer positions):

- ``sft``: cross-entropy on the answer tokens (token mean).
- ``otr``: One-Token Rollout (Ming et al., "One-Token Rollout: Guiding Supervised Fine-Tuning of LLMs with Policy
  Gradient", arXiv:2509.26313). Each answer position t is a one-step episode: from the teacher-forced logits
  (one forward, no generation) K tokens ``a_k ~ pi_theta(. | x, y*_<t)`` are drawn at temperature tau; reward
  ``r_k = 1`` if ``a_k == y*_t`` else ``otr_negative``; advantage ``A_k = r_k - b_t``; loss
  ``-mean_t mean_k A_k log pi_tau(a_k | x, y*_<t)`` (token mean over answer positions, like SFT's).
  Choices the paper leaves open here (the spec marks them unverified), and the ones taken:
  * baseline ``b_t``: the mean reward of position t's K samples (GRPO-like, no std division; ``otr_baseline =
    "none"`` gives the plain REINFORCE estimator). With the mean baseline ``otr_negative`` only rescales the
    advantages by ``1 - otr_negative`` (r = neg + (1 - neg) * hit), so it matters only without a baseline.
  * a position none of whose K samples hit the target (or all of them do) gives no gradient: its expected
    gradient is ``(K - 1) / K * pi(y*) grad log pi(y*)``, the SFT gradient weighted by the target's probability, so
    OTR learns least where the model is most wrong. The target is never injected into the samples.
  * logprobs are taken at temperature tau (the distribution sampled from), as the RL loss does with
    ``generation.temperature``; samples are drawn from the detached logits with the torch RNG seeded by
    ``warmstart.seed``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rollwise.config import Config
from rollwise.data.tasks import sft_stream
from rollwise.envs.base import env_factory
from rollwise.train.model import build_char_tokenizer, build_embedded_model
from rollwise.train.policy import SeqBatch, build_seq_batch, compute_logprobs

PACKAGED = Path(__file__).resolve().parent.parent / "assets" / "warmstart"


def warmstart_key(cfg: Config) -> str:
    """Hash of the model shape, warm-start settings, task levels and seed: equal keys give identical warm starts."""
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
    if w.objective != "sft":  # the objective and its knobs: absent from every SFT key, old or new
        changed |= {k: getattr(w, k) for k in ("objective", "otr_samples", "otr_temperature", "otr_negative",
                                               "otr_baseline")}
    if cfg.task.scratchpad == "mixed":
        changed |= {"scratchpad_share": cfg.task.scratchpad_share, "scratchpad_prompted": cfg.task.scratchpad_prompted}
    if getattr(cfg, "env", None) is not None:  # a multi-turn run warm-starts on its environment's scripted play
        # where the environments run and how slow they are do not change the scripted play
        changed["env"] = cfg.env.model_dump(mode="json", exclude={"workers", "latency_s"})
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


def sample_otr_tokens(logits: torch.Tensor, k: int, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """K tokens per row drawn (with replacement) from ``softmax(logits / temperature)``: [N, V] -> [N, K]."""
    probs = F.softmax(logits.detach().float() / temperature, dim=-1)  # [N, V]
    return torch.multinomial(probs, k, replacement=True, generator=generator)  # [N, K]


def compute_otr_loss(logits: torch.Tensor, samples: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                     temperature: float = 1.0, negative: float = 0.0,
                     baseline: str = "mean") -> tuple[torch.Tensor, dict[str, float]]:
    """One-Token Rollout loss (module docstring) and its stats.

    logits [N, V] at the answer positions (teacher-forced), samples [N, K] drawn from them, targets [N] the
    ground-truth tokens, mask [N] 1 on real answer positions. Returns the token-mean loss and
    ``{"hit_rate": share of samples equal to their target}``."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)  # [N, V]
    logp_a = logp.gather(-1, samples)  # [N, K]
    hit = (samples == targets.unsqueeze(-1)).float()  # [N, K]
    reward = negative + (1.0 - negative) * hit  # [N, K]: 1 on a hit, `negative` otherwise
    if baseline == "mean":
        reward = reward - reward.mean(-1, keepdim=True)  # [N, K]: per-position GRPO-like baseline
    elif baseline != "none":
        raise ValueError(f"otr baseline must be 'mean' or 'none', got {baseline!r}")
    per_pos = -(reward * logp_a).mean(-1)  # [N]
    m = mask.float()
    n = m.sum().clamp(min=1.0)
    return (per_pos * m).sum() / n, {"hit_rate": float((hit.mean(-1) * m).sum() / n)}


def answer_logits(model: torch.nn.Module, batch: SeqBatch) -> torch.Tensor:
    """[B, C, V] teacher-forced logits: position t predicts answer token t (the SFT forward, logits kept)."""
    C = batch.completion_ids.shape[1]
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False, logits_to_keep=C + 1)
    return out.logits[:, :-1, :]


def _sft_loss(model: torch.nn.Module, batch: SeqBatch, w: Any) -> tuple[torch.Tensor, dict[str, float]]:
    logp, _ = compute_logprobs(model, batch)
    return -(logp.sum() / batch.completion_mask.sum()), {}


def _otr_loss(model: torch.nn.Module, batch: SeqBatch, w: Any) -> tuple[torch.Tensor, dict[str, float]]:
    logits = answer_logits(model, batch)
    V = logits.shape[-1]
    flat, mask = logits.reshape(-1, V), batch.completion_mask.reshape(-1)  # [B*C, V], [B*C]
    samples = sample_otr_tokens(flat, w.otr_samples, w.otr_temperature)
    return compute_otr_loss(flat, samples, batch.completion_ids.reshape(-1), mask, w.otr_temperature,
                            w.otr_negative, w.otr_baseline)


OBJECTIVES: dict[str, Callable[[torch.nn.Module, SeqBatch, Any], tuple[torch.Tensor, dict[str, float]]]] = {
    "sft": _sft_loss, "otr": _otr_loss}
"""``warmstart.objective`` -> loss of one batch (and its stats): one lookup, the loop is shared."""


def warmstart_pairs(cfg: Config, exclude: set[str]) -> Iterator[tuple[str, str]]:
    """The warm start's endless (prompt, answer) pairs: the procedural task levels', or with an ``[env]`` section
    the environment's scripted player's (context, action) pairs (``env.sft_pairs``)."""
    w, t = cfg.warmstart, cfg.task
    if getattr(cfg, "env", None) is None:
        return sft_stream(w.level_weights, w.seed, exclude, t.answer_order, t.scratchpad, t.scratchpad_share,
                          t.scratchpad_prompted)
    env = env_factory(cfg.env)()
    if not hasattr(env, "sft_pairs"):
        raise ValueError(f"environment {cfg.env.type!r} has no scripted player to warm-start the embedded model "
                         "(sft_pairs); set warmstart.enabled = false or model.path")
    return env.sft_pairs(w.seed, cfg.env.max_turns)


def train_warmstart(cfg: Config, exclude: set[str], device: torch.device,
                    log: Callable[[dict], None] | None = None) -> Path:
    """Train the embedded model with the warm-start objective, save it to the cache and return its directory."""
    w = cfg.warmstart
    objective = OBJECTIVES[w.objective]
    torch.manual_seed(w.seed)
    tok = build_char_tokenizer()
    model = build_embedded_model(tok, cfg.model, w.seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=w.lr, weight_decay=w.weight_decay, betas=(0.9, 0.98))
    warm = max(w.steps // 20, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, w.steps, warm, w.final_lr_ratio))
    stream = warmstart_pairs(cfg, exclude)
    eos = tok.eos_token_id
    model.train()
    t0 = time.time()
    for step in range(w.steps):
        pairs = [next(stream) for _ in range(w.batch_size)]
        prompts = [tok(p, add_special_tokens=False)["input_ids"] for p, _ in pairs]
        answers = [tok(a, add_special_tokens=False)["input_ids"] + [eos] for _, a in pairs]
        batch = build_seq_batch(prompts, answers, tok.pad_token_id).to(device)
        loss, stats = objective(model, batch, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log is not None and (step % 100 == 0 or step == w.steps - 1):
            log({"warmstart/step": step, "warmstart/loss": loss.item(),
                 **{f"warmstart/{k}": v for k, v in stats.items()}, "perf/seconds": time.time() - t0})
    out = Path(w.cache_dir) / warmstart_key(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "warmstart.json").write_text(json.dumps({"key": warmstart_key(cfg), "objective": w.objective,
                                                    "seconds": time.time() - t0}))
    return out
