"""Rollout replay (DOTS+RR): a FIFO buffer of recent informative groups mixed into later batches.

A buffered group is a :class:`TrainGroup` exactly as it was trained when generated: its opaque rollouts (with
behaviour logprobs and policy version) and the advantages they had then, so a replayed group keeps its own
pool's baseline whatever estimator is configured; the loss corrects it with the decoupled ratio pi_old / mu.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.sampling.base import Component, GroupObs, SampleContext, TrainGroup


class Replay(Component):
    """FIFO buffer of mixed-reward groups, one per prompt (latest kept), drawn uniformly without replacement."""

    kind = "replay"

    class Config(Knobs):
        capacity: int = Field(512, ge=1, description="groups kept in the buffer (DOTS: 512)")
        fresh_fraction: float = Field(0.5, gt=0, le=1, description="share of each batch freshly generated "
                                      "(DOTS sigma = 0.5); the rest is replayed")
        max_age: int | None = Field(None, ge=1, description="replay only groups of the last K policies: a group "
                                    "generated more than K steps before the step that draws it is evicted (ReMix's "
                                    "K; None = by capacity only, as DOTS)")

    def setup(self) -> None:
        self._buf: OrderedDict[int, TrainGroup] = OrderedDict()
        self._drawn = 0
        self._stopped = False  # after a policy reset: purely on-policy, nothing buffered

    def on_policy_reset(self) -> None:
        """ReMix's reincarnation (arXiv:2507.06892): clear the buffer and replay nothing from here on."""
        self._buf.clear()
        self._stopped = True

    def __len__(self) -> int:
        return len(self._buf)

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        """End of step ``ctx.step``: evict the groups too old for the next step's draw (``max_age``)."""
        if self.max_age is None:
            return
        for key in [k for k, g in self._buf.items() if ctx.step + 1 - g.step > self.max_age]:
            del self._buf[key]

    def push(self, groups: list[TrainGroup]) -> None:
        """Buffer this step's fresh trained groups that carry a signal (non-zero advantages)."""
        for g in groups:
            if self._stopped or g.replayed or len(g.rollouts) < 2 or not np.any(g.advantages):
                continue  # zero-advantage groups carry no gradient: never buffered
            self._buf.pop(g.prompt, None)
            self._buf[g.prompt] = g
            while len(self._buf) > self.capacity:
                self._buf.popitem(last=False)

    def draw(self, k: int, ctx: SampleContext) -> list[TrainGroup]:
        keys = list(self._buf)
        if k <= 0 or not keys:
            self._drawn = 0
            return []
        idx = ctx.rng.choice(len(keys), size=min(k, len(keys)), replace=False)
        self._drawn = len(idx)
        return [dataclasses.replace(self._buf[keys[i]], replayed=True) for i in sorted(idx)]

    def metrics(self) -> dict[str, float]:
        return {"size": len(self._buf), "drawn": self._drawn}

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": list(self._buf.values()), "stopped": self._stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._buf = OrderedDict((g.prompt, g) for g in state.get("buffer", []))
        self._stopped = bool(state.get("stopped", False))
