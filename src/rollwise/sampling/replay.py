"""Rollout replay (DOTS+RR): a FIFO buffer of recent informative groups mixed into later batches.

The buffered rollouts are opaque to the sampler (the trainer's ``Rollout`` objects with their behaviour
logprobs); the loss corrects them with the decoupled importance ratio pi_old / mu.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rollwise.sampling.base import Component, Replayed, SampleContext


class Replay(Component):
    """FIFO buffer of mixed-reward groups, one per prompt (latest kept), drawn uniformly without replacement."""

    kind = "replay"

    def __init__(self, capacity: int = 512, fresh_fraction: float = 0.5) -> None:
        if not 0 < fresh_fraction <= 1:
            raise ValueError("replay fresh_fraction must be in (0, 1]")
        self.capacity, self.fresh_fraction = capacity, fresh_fraction
        self._buf: OrderedDict[int, Replayed] = OrderedDict()
        self._drawn = 0

    def __len__(self) -> int:
        return len(self._buf)

    def push(self, groups: list[Replayed]) -> None:
        for g in groups:
            rewards = [r.reward for r in g.rollouts]
            if len(rewards) < 2 or max(rewards) == min(rewards):
                continue  # zero-variance groups carry no gradient: never buffered
            self._buf.pop(g.prompt, None)
            self._buf[g.prompt] = g
            while len(self._buf) > self.capacity:
                self._buf.popitem(last=False)

    def draw(self, k: int, ctx: SampleContext) -> list[Replayed]:
        keys = list(self._buf)
        if k <= 0 or not keys:
            return []
        idx = ctx.rng.choice(len(keys), size=min(k, len(keys)), replace=False)
        self._drawn = len(idx)
        return [self._buf[keys[i]] for i in sorted(idx)]

    def metrics(self) -> dict[str, float]:
        return {"size": len(self._buf), "drawn": self._drawn}

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": list(self._buf.values())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._buf = OrderedDict((g.prompt, g) for g in state.get("buffer", []))
