"""Checks across config sections (a verifier that reads the task's answers, a loss that feeds the engine's
adaptive temperature, ...), run after every section validated on its own; each failure is one line naming a key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollwise.algos.catalog import ENTROPY_STATS_LOSSES
from rollwise.rewards.shaping import check_reward_shaping

if TYPE_CHECKING:
    from rollwise.config_models import Config

ARITH_VERIFIERS = {"none": "synthetic_int", "carries": "synthetic_scratch", "mixed": "synthetic_mixed"}


def check_cross_sections(cfg: Config) -> None:
    """Raise ValueError on a combination of sections that cannot run."""
    if cfg.model.heads % cfg.model.kv_heads:
        raise ValueError("model.heads must be a multiple of model.kv_heads")
    if cfg.model.hidden % cfg.model.heads:
        raise ValueError("model.hidden must be a multiple of model.heads")
    verifier = cfg.task.verifier_name()
    if cfg.task.answer_order == "lsb" and verifier == "synthetic_int":
        raise ValueError("task.verifier: synthetic_int compares integers and would accept lsb answers without "
                         "their leading zeros; use task.verifier = 'exact' (or 'auto') with answer_order = 'lsb'")
    if cfg.task.scratchpad != "none" and cfg.task.answer_order == "lsb":
        raise ValueError(f"task.scratchpad: {cfg.task.scratchpad!r} writes answers msb first; set "
                         "task.answer_order = 'msb' or task.scratchpad = 'none'")
    want = ARITH_VERIFIERS[cfg.task.scratchpad]
    if cfg.task.suite == "arith" and cfg.task.scratchpad != "none" and verifier != want:
        raise ValueError(f"task.verifier: task.scratchpad = {cfg.task.scratchpad!r} needs a verifier that reads "
                         f"its answers; use task.verifier = {want!r} (or 'auto')")
    check_reward_shaping(cfg.task)
    if getattr(cfg.algo.correction, "baseline", None) == "opob" and cfg.algo.shaping:
        raise ValueError(f"algo.correction: {cfg.algo.correction.type!r} (baseline = 'opob') replaces the "
                         "advantages; not with algo.shaping (set baseline = 'estimator')")
    transform, source = cfg.sampler.transform.type, getattr(cfg.sampler.transform, "source", "own")
    if cfg.task.suite != "arith" and (transform == "hill" or (transform == "prefix_rl" and source == "reference")):
        what = "hint generators" if transform == "hill" else "worked reference traces"
        raise ValueError(f"sampler.transform: {transform!r} needs {what}, which only task.suite = 'arith' has"
                         + ("; use source = 'own' or 'both'" if transform == "prefix_rl" else ""))
    tau = getattr(cfg.generation.engine, "entropy_temperature_tau", 0.0)
    if tau > 0 and cfg.algo.loss.type not in ENTROPY_STATS_LOSSES:
        raise ValueError(f"generation.engine.entropy_temperature_tau: HAPO's adaptive temperature needs a loss "
                         f"that measures the entropy statistics it samples with (algo.loss = "
                         f"{' | '.join(sorted(ENTROPY_STATS_LOSSES))}), got {cfg.algo.loss.type!r}")
    if tau > 0 and cfg.run.mode == "async":
        raise ValueError("generation.engine.entropy_temperature_tau: not with run.mode = 'async' (the rollout "
                         "workers do not receive the update's entropy statistics)")
    rows = cfg.sampler.batch_prompts * cfg.sampler.group_size
    if cfg.generation.strategy.type == "april" and cfg.generation.batch_size < rows:
        raise ValueError(f"generation.batch_size: APRIL stops a call once enough groups finished, but the engine "
                         f"decodes {cfg.generation.batch_size} rows at a time and a later chunk never starts; set "
                         f"generation.batch_size >= sampler.batch_prompts x sampler.group_size = {rows}")
    low, high = cfg.task.reward_range
    if not low < high:
        raise ValueError(f"task.reward_range: low must be below high, got [{low}, {high}]")
    if cfg.trainer.eval_samples > 1 and cfg.generation.eval_temperature == 0:
        raise ValueError("trainer.eval_samples: greedy eval (generation.eval_temperature = 0) gives identical "
                         "samples; set generation.eval_temperature > 0 or eval_samples = 1")
