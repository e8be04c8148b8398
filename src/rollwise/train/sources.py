"""Where a step's rollouts come from. The trainer asks ``collect(pipeline, step, version)`` and, after each
update, ``publish(model, version)``; it does not know which mode runs:

- :class:`LocalRollouts` (``run.mode = "sync"``): the trainer's own engine generates each step when it starts;
- ``AsyncRollouts`` (``run.mode = "async"``, ``train/async_rollouts.py``): Ray rollout workers generate ahead of
  the trainer, at most ``async.max_staleness`` weight versions ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollwise.sampling import Budget, SamplingPipeline
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
        pass


def build_rollouts(cfg: Any, collector: RolloutCollector, make_budget: Callable[[], Budget],
                   seed_of: Callable[[int], int], may_start: Callable[[int], bool]) -> Any:
    """The rollout source of ``run.mode``; ``may_start(step)`` says whether a step may still be generated
    (the run's step and token limits), so async mode does not generate past the end of the run."""
    if cfg.run.mode == "async":
        from rollwise.train.async_rollouts import AsyncRollouts

        return AsyncRollouts(cfg, collector, make_budget, seed_of, may_start)
    return LocalRollouts(collector, make_budget, seed_of)
