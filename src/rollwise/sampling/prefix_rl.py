"""PrefixRL ("Reuse your FLOPs", arXiv:2601.18795): a stuck prompt is continued from a prefix of a correct trace.

Spec: ``shared/methods/generation.md`` section 13 (paper only; the schedule and the mix are [unverified]).
A prompt the policy cannot solve (stuck, see ``rescue.py``) is shown ``PromptContext(answer_prefix=y[:h])``
where y is a correct trace of the same prompt: with ``source = "both"`` (default) the policy's own latest plain
success if it ever had one, else the off-policy reference trace the trainer lends (for the arithmetic task the
worked answer, carries then ``|`` then the answer: what a stronger model's rejection sampling would give);
``own`` uses only the former (datasets without worked solutions), ``reference`` only the latter. The prefix
tokens are context (the collector forces them into the prompt: no loss, no importance weight) and the
verifier reads prefix + completion, so the update is plain on-policy RL from the prefixed state.

Choices for the open items:

- h is measured in characters of the trace (one token each for the char tokenizer; a cut at a character
  boundary otherwise), h = clip(floor(s * L), 1, L - 1) for a per-prompt share s: at least one character of
  help, never the whole trace (the policy always writes the end of the answer). A trace of one character
  cannot be cut: the prompt stays plain.
- Curriculum per prompt over s, starting at ``start_share``: after a prefixed pool with pass rate >=
  ``shrink_at`` s drops by ``share_step`` (less help), after an all-wrong prefixed pool it rises by
  ``share_step`` (more help, at most ``max_share``); otherwise it stays. The paper picks h so the accuracy
  from the prefixed state is "reasonable"; a pass-rate band walked by fixed steps is our reading.
- One h per prompt per step (the paper trains several h per problem): the pipeline keys a step's pool by
  prompt, so the advantage group is per (x, h) and is never mixed with plain rollouts of x.
- ``plain_share`` of the stuck prompts are still shown plain each step: that is where back-generalisation
  is measured (``rescued``: helped prompts later solved without a prefix).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rollwise.sampling.base import GroupObs, PromptContext, SampleContext, TrainGroup
from rollwise.sampling.rescue import RescueTransform


def compute_prefix_length(share: float, length: int) -> int:
    """h = clip(floor(share * L), 1, L - 1) characters of a trace of length L (0 when L < 2: no cut)."""
    if length < 2:
        return 0
    return int(min(max(int(np.floor(share * length)), 1), length - 1))


def compute_next_share(share: float, pass_rate: float, step: float, shrink_at: float, max_share: float) -> float:
    """The curriculum: less prefix after a pool at or above ``shrink_at``, more after an all-wrong pool."""
    if pass_rate >= shrink_at:
        return max(share - step, 0.0)
    if pass_rate <= 0.0:
        return min(share + step, max_share)
    return share


class PrefixRL(RescueTransform):
    """Stuck prompts continue from a prefix of a correct trace, its length on a per-prompt curriculum."""

    class Config(RescueTransform.Config):
        source: Literal["own", "reference", "both"] = Field("both", description="trace: the policy's own latest "
                                                            "plain success, the lent reference, or own else reference")
        start_share: float = Field(0.5, ge=0, le=1, description="share of the trace given at first")
        share_step: float = Field(0.25, gt=0, le=1, description="change of the share after a pool (curriculum)")
        shrink_at: float = Field(0.5, gt=0, le=1, description="prefixed pass rate at or above which the prefix "
                                 "shrinks [unverified schedule]")
        max_share: float = Field(0.9, gt=0, le=1, description="largest share of the trace given")
        capacity: int = Field(4096, ge=1, description="own successes kept (latest per prompt, FIFO over prompts)")

    def setup(self) -> None:
        super().setup()
        self._share: dict[int, float] = {}  # prompt -> curriculum share
        self._own: OrderedDict[int, str] = OrderedDict()  # prompt -> latest plain correct completion
        self._shares: list[float] = []  # h / L of this step's prefixes
        self._from = {"own": 0, "reference": 0}

    def trace(self, prompt: int) -> tuple[str | None, str]:
        """(trace, where from) for ``prompt`` under ``source``; (None, '') when there is none."""
        if self.source != "reference" and prompt in self._own:
            return self._own[prompt], "own"
        traces = self.sources.traces
        if self.source != "own" and traces is not None and traces[prompt]:
            return traces[prompt], "reference"
        return None, ""

    def contexts(self, prompts: np.ndarray, pools: dict[int, GroupObs], ctx: SampleContext) -> list[Any] | None:
        if ctx.step != self._step:
            self._shares, self._from = [], {"own": 0, "reference": 0}
        return super().contexts(prompts, pools, ctx)

    def help(self, prompt: int, ctx: SampleContext) -> PromptContext | None:
        trace, origin = self.trace(prompt)
        if trace is None:
            return None
        h = compute_prefix_length(self._share.setdefault(prompt, self.start_share), len(trace))
        if h == 0:
            return None
        self._shares.append(h / len(trace))
        self._from[origin] += 1
        return PromptContext(answer_prefix=trace[:h], tag=f"prefix:{h}/{len(trace)}")

    def learn(self, pool: GroupObs, given: PromptContext, ctx: SampleContext) -> None:
        rate = float((pool.rewards > ctx.stats.positive_threshold).mean()) if pool.n else 0.0
        self._share[pool.prompt] = compute_next_share(self._share.get(pool.prompt, self.start_share), rate,
                                                      self.share_step, self.shrink_at, self.max_share)

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        super().observe(ctx, pools, trained, losses)
        if self.source == "reference":
            return
        thr = ctx.stats.positive_threshold
        for pool in pools:  # the policy's own solutions: plain pools only (a prefixed one is part reference)
            wins = np.flatnonzero(pool.rewards > thr)
            if self.given(pool.prompt) is None and pool.texts is not None and wins.size:
                self._own.pop(pool.prompt, None)
                self._own[pool.prompt] = pool.texts[int(wins[-1])]
                while len(self._own) > self.capacity:
                    self._own.popitem(last=False)

    def metrics(self) -> dict[str, float]:
        return super().metrics() | {
            "prefixed": float(self.helped_last()),
            "h_share_mean": float(np.mean(self._shares)) if self._shares else 0.0,
            "from_own": float(self._from["own"]),
            "from_reference": float(self._from["reference"]),
        }

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"share": dict(self._share), "own": list(self._own.items())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._share = {int(p): float(s) for p, s in state["share"].items()}
        self._own = OrderedDict((int(p), str(t)) for p, t in state["own"])
