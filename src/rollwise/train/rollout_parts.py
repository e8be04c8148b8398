"""The parts of one rollout stack, built from the config: the policy, its engine, the rollout strategy, the
verifier and the reward shaper. The trainer (through ``setup``) and every rollout worker build them the same way;
they live below ``setup`` so a worker needs nothing that knows the whole run (and nothing that imports it back)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from rollwise.config import Config
from rollwise.generation import ENGINES, SamplingParams
from rollwise.train.model import build_char_tokenizer, load_model, resolve_device
from rollwise.train.warmstart import find_warmstart, train_warmstart

if TYPE_CHECKING:
    from rollwise.data.task import TaskData


def build_policy(cfg: Config, task: TaskData | None, log: Any = None) -> tuple[torch.nn.Module, Any, torch.device]:
    """Load ``model.path``, or the embedded model from its (cached, else freshly trained) warm start."""
    device = resolve_device(cfg.run.device)
    dtype = getattr(torch, cfg.model.dtype)
    if cfg.model.path is not None:
        model, tok = load_model(cfg.model.path, dtype=dtype, device=device)
    elif cfg.warmstart.enabled:
        path = find_warmstart(cfg)
        if path is None:
            assert task is not None, "a warm start trains on the task's held-out split"
            path = train_warmstart(cfg, task.heldout, device, log=log)
        model, tok = load_model(path, dtype=dtype, device=device)
    else:
        from rollwise.train.model import build_embedded_model

        tok = build_char_tokenizer()
        model = build_embedded_model(tok, cfg.model, cfg.run.seed).to(device=device, dtype=dtype)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.model.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.model.lora_rank, lora_alpha=cfg.model.lora_alpha,
                                                 target_modules=cfg.model.lora_targets, task_type="CAUSAL_LM"))
    return model, tok, device


def build_engine(cfg: Config, model: torch.nn.Module, tok: Any) -> Any:
    from rollwise.components import knobs

    cls = ENGINES.get(cfg.generation.engine.type)
    return cls(model, tok, batch_size=cfg.generation.batch_size, **knobs(cfg.generation.engine))


def build_strategy(cfg: Config) -> Any:
    """The rollout strategy (``generation.strategy``) with its knobs."""
    from rollwise.components import knobs
    from rollwise.generation import STRATEGIES

    return STRATEGIES.get(cfg.generation.strategy.type)(**knobs(cfg.generation.strategy))


def sampling_params(cfg: Config, tok: Any, eval_mode: bool = False) -> SamplingParams:
    g = cfg.generation
    temp = g.eval_temperature if eval_mode else g.temperature
    return SamplingParams(temperature=temp, top_p=1.0 if eval_mode else g.top_p, max_new_tokens=g.max_new_tokens,
                          stop_token_ids=(tok.eos_token_id,), seed=cfg.run.seed)


def build_verifier(cfg: Config, verifier: str | None = None) -> Any:
    """The task's verifier (or ``verifier``, e.g. an eval's own) in a pool with the task's time limit, reward
    range and out-of-range policy."""
    from rollwise.rewards.pool import VerifierPool

    t = cfg.task
    return VerifierPool(verifier or t.verifier_name(), timeout_s=t.verify_timeout, reward_range=t.reward_range,
                        out_of_range=t.out_of_range)


def build_reward_shaper(cfg: Config) -> Any:
    """The task's reward shaping (``task.reward_shaping``, e.g. FAPO) on the task's reward range, after the
    majority-vote pseudo-labels when ``task.labels = "none"`` (TTRL); None if neither."""
    spec = cfg.task.reward_shaping
    shaper = None
    if spec is not None:
        from rollwise.components import knobs
        from rollwise.rewards.shaping import REWARD_SHAPERS, check_reward_shaping

        check_reward_shaping(cfg.task)
        shaper = REWARD_SHAPERS.get(spec.type)(reward_range=cfg.task.reward_range, **knobs(spec))
    if cfg.task.labels == "none":
        from rollwise.rewards.ttrl import PseudoLabelShaper

        shaper = PseudoLabelShaper(cfg.task.empty_vote, reward_range=cfg.task.reward_range, then=shaper)
    return shaper
