"""Where a step's rollouts come from. The trainer asks ``collect(pipeline, step, version)`` and, after each
update, ``publish(model, version)``; it does not know which mode runs:

- :class:`LocalRollouts` (``run.mode = "sync"``): the trainer's own engine generates each step when it starts;
- ``AsyncRollouts`` (``run.mode = "async"``, ``train/async_rollouts.py``): Ray rollout workers generate ahead of
  the trainer, at most ``async.max_staleness`` weight versions ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollwise.config import ConfigError
from rollwise.sampling import Budget, SamplingPipeline
from rollwise.sampling.presets import prompts_per_step
from rollwise.train.rollout import RolloutCollector, StepRollouts


class LocalRollouts:
    """Synchronous: generate, verify and hand over step ``step``'s rollouts when the trainer asks for them."""

    def __init__(self, collector: RolloutCollector, make_budget: Callable[[], Budget],
                 seed_of: Callable[[int], int]) -> None:
        self.collector, self.make_budget, self.seed_of = collector, make_budget, seed_of

    def collect(self, pipeline: SamplingPipeline, step: int, version: int) -> StepRollouts:
        return self.collector.collect(pipeline, step, self.make_budget(), seed=self.seed_of(step), version=version)

    def publish(self, model: Any, version: int) -> None:
        """The engine decodes with the new weights from now on."""
        self.collector.engine.sync_weights(model, version)

    def metrics(self) -> dict[str, Any]:
        return self.collector.metrics()

    def in_flight_tokens(self) -> int:
        return 0

    def state_dict(self) -> dict[str, Any]:
        return self.collector.strategy.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collector.strategy.load_state_dict(state)

    def close(self) -> None:
        getattr(self.collector, "close", lambda: None)()  # an [env] run's environment workers


def check_staleness_window(cfg: Any, pool_size: int) -> None:
    """Refuse an async run whose prompt pool cannot hold its staleness window: up to max_staleness + 1 steps are
    in flight at once and no prompt is rolled out by two of them, so with (max_staleness + 1) x prompts per step
    above the pool a step would start short of prompts, or with none (a step that trains nothing)."""
    if cfg.run.mode != "async":
        return
    eta, per_step = cfg.async_.max_staleness, prompts_per_step(cfg.sampler)
    if (eta + 1) * per_step > pool_size:
        fits = pool_size // per_step - 1
        fix = f"set async.max_staleness <= {fits}, " if fits >= 0 else ""
        raise ConfigError(f"async.max_staleness: (max_staleness + 1) x prompts per step = ({eta} + 1) x {per_step} "
                          f"exceeds the prompt pool ({pool_size}, task.train_size), so steps would start short of "
                          f"prompts or with none; {fix}lower sampler.batch_prompts or raise task.train_size")


def build_rollouts(cfg: Any, collector: RolloutCollector, make_budget: Callable[[], Budget],
                   seed_of: Callable[[int], int], may_start: Callable[[int], bool]) -> Any:
    """The rollout source of ``run.mode``; ``may_start(step)`` says whether a step may still be generated
    (the run's step and token limits), so async mode does not generate past the end of the run."""
    if cfg.run.mode == "async":
        from rollwise.train.async_rollouts import AsyncRollouts

        return AsyncRollouts(cfg, collector, make_budget, seed_of, may_start)
    return LocalRollouts(collector, make_budget, seed_of)
