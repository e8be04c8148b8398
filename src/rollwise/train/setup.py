"""Builds every part of a run from its config. This module and ``trainer.py`` are the only places that
know all layers (data, model, generation, rewards, sampling, algos)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rollwise.config import Config
from rollwise.data.task import TaskData, build_task, train_eval_sets  # noqa: F401 - part of setup's API
from rollwise.envs.collector import build_episode_collector
from rollwise.sampling.presets import build_pipeline
from rollwise.train.rollout import RolloutCollector
from rollwise.train.rollout_parts import (  # noqa: F401 - part of setup's API
    build_engine,
    build_policy,
    build_reward_shaper,
    build_strategy,
    build_verifier,
    sampling_params,
)
from rollwise.train.sources import build_rollouts  # noqa: F401 - part of setup's API


def set_threads(cfg: Config) -> None:
    n = cfg.run.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)


def build_estimator(cfg: Config) -> Any:
    """The configured advantage estimator as the sampler's numpy callable: each whole pool's advantages (and
    the estimator's own row exclusions), one vectorised call over all pools of the step."""
    from rollwise.algos import ADVANTAGES, AdvantageContext
    from rollwise.components import knobs

    adv_cfg = cfg.algo.advantage
    fn, params = ADVANTAGES.get(adv_cfg.type), knobs(adv_cfg)

    def estimate(pools: list, baselines: list) -> list[tuple[np.ndarray, np.ndarray]]:
        if not pools:
            return []
        sizes = [p.n for p in pools]
        rewards = torch.tensor(np.concatenate([p.rewards for p in pools]), dtype=torch.float32)  # [R]
        group_index = torch.repeat_interleave(torch.arange(len(pools)), torch.tensor(sizes))  # [R]
        base = None
        if any(b is not None for b in baselines):
            base = torch.tensor([b if b is not None else float(p.rewards.mean()) for p, b in zip(pools, baselines)],
                                dtype=torch.float32)  # [G]
        lp = [p.mean_logprob if p.mean_logprob is not None else np.zeros(p.n) for p in pools]
        seq_lp = torch.tensor(np.concatenate(lp), dtype=torch.float32)  # [R]
        lengths = torch.tensor(np.concatenate([p.lengths for p in pools]), dtype=torch.float32)  # [R]
        out = fn(rewards, group_index, AdvantageContext(len(pools), base, seq_lp, lengths, params=params))
        keep = out.keep if out.keep is not None else torch.ones(len(rewards), dtype=torch.bool)
        cuts = np.cumsum(sizes)[:-1]
        return list(zip(np.split(out.advantages.double().numpy(), cuts), np.split(keep.numpy(), cuts)))

    return estimate


def build_sampler(cfg: Config, task: TaskData, model: torch.nn.Module | None = None, tok: Any = None,
                  verifier: Any = None, encode: Any = None) -> Any:
    """The sampler pipeline, with the configured advantage estimator injected and what the rescue transforms
    borrow from the task (traces, hints, reference answers) and, given the policy, the hint-reliance scorer;
    with a ``[swarm]`` section it also trains the other nodes' groups (SAPO, ``train/swarm.py``)."""
    from rollwise.train.rescue import build_rescue_sources
    from rollwise.train.swarm import wrap_swarm

    inner = build_pipeline(cfg.sampler, pool_size=len(task.pool), total_steps=cfg.trainer.steps,
                           seed=cfg.run.seed + 1, levels=task.levels, estimate=build_estimator(cfg),
                           sources=build_rescue_sources(cfg, task, model, tok))
    return wrap_swarm(cfg, inner, pool=task.pool, encode=encode, tok=tok, verifier=verifier, model=model)


def build_collector(cfg: Config, engine: Any, verifier: Any, task: TaskData, tok: Any, encode: Any) -> Any:
    """What turns a step's sampler requests into rollouts, chosen once: single-turn prompts generated and
    verified (:class:`RolloutCollector`), or with an ``[env]`` section episodes of the environment whose turns
    come back as each task's group (:class:`rollwise.envs.collector.EpisodeCollector`)."""
    params = sampling_params(cfg, tok)
    if cfg.env is not None and cfg.agentic is not None:  # a step-level method on the env's expert trajectories
        from rollwise.envs.methods import build_agentic_collector

        return build_agentic_collector(cfg, engine, task.pool, tok, params)
    if cfg.env is not None:
        return build_episode_collector(cfg, engine, task.pool, tok, params)
    return RolloutCollector(engine, verifier, task.pool, encode, params, max_failure_share=cfg.task.max_verify_failures,
                            encode_raw=lambda s: tok(s, add_special_tokens=False)["input_ids"],
                            reward_shaper=build_reward_shaper(cfg), strategy=build_strategy(cfg))


def build_scorer(collector: Any, single_turn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """How eval sets are scored, ``(sets, params, n, prefix) -> metrics``: the collector's own episodes (an
    ``[env]`` run: success, turns), else ``single_turn`` (pass@k of verified completions)."""
    return getattr(collector, "evaluate", None) or single_turn


# torch AdamW's three implementations of one update (equal to float rounding, tests/train/test_update_speed.py):
# a Python loop over parameters, one multi-tensor kernel per op, one fused kernel (CPU and CUDA since torch 2.4)
OPTIMIZER_IMPLS: dict[str, dict[str, bool]] = {"loop": {"foreach": False, "fused": False},
                                               "foreach": {"foreach": True, "fused": False},
                                               "fused": {"foreach": False, "fused": True}}


def build_optimizer(cfg: Config, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    a = cfg.algo
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.99),
                            **OPTIMIZER_IMPLS[a.optimizer_impl])
    warm = max(a.warmup_steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 1.0))
    return opt, sched
