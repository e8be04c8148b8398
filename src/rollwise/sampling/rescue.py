"""What the rescue transforms (PrefixRL, HiLL) share: which prompts are stuck, one context per prompt per step,
the share of stuck prompts still shown plain, and the count of rescued prompts later solved without help
(``rescued``: helped first; ``unstuck``: any stuck prompt later solved plain, helped or not, so that a control
arm with ``plain_share = 1`` -- uniform GRPO that only keeps the books -- gives the share a prompt gets unstuck
by itself).

*Stuck*: the prompt's latest plain pool (shown without any context) had at least ``min_failures`` rollouts
and none solved. This is xrpo_icl's all-wrong rule read on the transform's own plain record rather than the
stats store: the store counts helped rollouts too, so one prefixed success would end the rescue of a prompt
the policy still cannot solve alone. A plain success ends it (and counts as ``rescued`` if the prompt had
been helped); a plain pool with fewer than ``min_failures`` failures changes nothing.

*One context per step*: the pipeline keys pools by prompt, so a prompt's step pool must be all one context
(advantage groups per (x, h) or (x, hint), never mixed with plain rollouts of x). The context is decided at
the prompt's first request of the step, from history only, and repeated for its later rounds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.sampling.base import GroupObs, PromptContext, RescueSources, SampleContext, TrainGroup, Transform


class RescueTransform(Transform):
    """Base of a transform that helps stuck prompts; subclasses implement :meth:`help` and :meth:`learn`."""

    needs_revisits = True  # acts on what earlier visits of a prompt taught it

    class Config(Knobs):
        min_failures: int = Field(4, ge=1, description="failed plain rollouts (none solved) before a prompt "
                                  "is helped")
        plain_share: float = Field(0.25, ge=0, le=1, description="share of stuck prompts still shown plain each "
                                   "step (the mix of helped and plain prompts) [unverified]")

    def setup(self) -> None:
        self.sources = RescueSources()
        self._stuck: set[int] = set()  # prompts whose latest plain pool was all wrong
        self._helped: set[int] = set()  # stuck prompts given a context at least once
        self._rescued = 0  # helped prompts later solved plain (all steps)
        self._ever_stuck: set[int] = set()  # prompts stuck at least once
        self._unstuck = 0  # stuck prompts later solved plain, helped or not (what a control arm gets by itself)
        self._step = -1
        self._given: dict[int, PromptContext | None] = {}  # this step's context per prompt

    def bind(self, sources: RescueSources) -> None:
        self.sources = sources

    # ------------------------------------------------------------------ hooks for subclasses
    def help(self, prompt: int, ctx: SampleContext) -> PromptContext | None:
        """The context for a stuck prompt this step (None: nothing to show it)."""
        raise NotImplementedError

    def learn(self, pool: GroupObs, given: PromptContext, ctx: SampleContext) -> None:
        """Learn from a helped pool (after the update)."""

    # ------------------------------------------------------------------ transform
    def contexts(self, prompts: np.ndarray, pools: dict[int, GroupObs], ctx: SampleContext) -> list[Any] | None:
        if ctx.step != self._step:
            self._step, self._given = ctx.step, {}
        out: list[Any] = []
        for p in (int(x) for x in prompts):
            if p not in self._given:
                helped = p in self._stuck and ctx.rng.random() >= self.plain_share
                self._given[p] = self.help(p, ctx) if helped else None
                if self._given[p] is not None:
                    self._helped.add(p)
            out.append(self._given[p])
        return out if any(c is not None for c in out) else None

    def given(self, prompt: int) -> PromptContext | None:
        """The context ``prompt`` was shown this step (None: plain, or not requested)."""
        return self._given.get(prompt)

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        thr = ctx.stats.positive_threshold
        for pool in pools:
            c = self.given(pool.prompt)
            if c is not None:
                self.learn(pool, c, ctx)
                continue
            if bool((pool.rewards > thr).any()):
                if pool.prompt in self._helped:
                    self._rescued += 1
                    self._helped.discard(pool.prompt)
                if pool.prompt in self._stuck:
                    self._unstuck += 1
                    self._stuck.discard(pool.prompt)
            elif pool.n >= self.min_failures:
                self._stuck.add(pool.prompt)
                self._ever_stuck.add(pool.prompt)

    def helped_last(self) -> int:
        return sum(c is not None for c in self._given.values())

    def metrics(self) -> dict[str, float]:
        return {"helped": float(self.helped_last()), "stuck": float(len(self._stuck)),
                "rescued": float(self._rescued), "ever_stuck": float(len(self._ever_stuck)),
                "unstuck": float(self._unstuck),
                "unstuck_share": self._unstuck / len(self._ever_stuck) if self._ever_stuck else 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {"stuck": sorted(self._stuck), "helped": sorted(self._helped), "rescued": self._rescued,
                "ever_stuck": sorted(self._ever_stuck), "unstuck": self._unstuck}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._stuck, self._helped = {int(p) for p in state["stuck"]}, {int(p) for p in state["helped"]}
        self._rescued = int(state["rescued"])
        self._ever_stuck = {int(p) for p in state.get("ever_stuck", [])}
        self._unstuck = int(state.get("unstuck", 0))
        self._step, self._given = -1, {}
