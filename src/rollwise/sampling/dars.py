"""DARS: difficulty-adaptive rollout re-balancing (spec §6, authors' ``schedule_ET`` / ``schedule_HW``).

Stage 1 rolls out N per prompt; prompts with accuracy a < 0.5 get dN extra rollouts in one more round so that
their cumulative advantage mass sum|A| reaches a target: the p = 0.5 peak (Equal Treatment, ``et``) or a
hardness-weighted target (``hw``). Groups whose combined mean is 0 or >= ``upper_threshold`` are then dropped
without refill (``dars_filter``). The advantage is r - mean over the combined group (preset: ``dr_grpo``).

Stage-1 accuracy is taken on rewards binarised at the stats store's ``positive_threshold`` (the authors use
binary verifier scores). The spec's pitfall "a = 0 prompts get the maximum extra budget even if hopeless" is
kept as published; cap it with ``n_max``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from rollwise.components import Knobs
from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, FilterGate, GroupObs, SampleContext

_SCHEDULES = ("et", "hw")


def compute_dars_extra(acc: np.ndarray, n: int, n_max: int, schedule: str = "et",
                       use_std: bool = False) -> np.ndarray:
    """Extra rollouts per prompt [P] int64 from stage-1 accuracy ``acc`` [P] over ``n`` rollouts each.

    a = 0 is replaced by 0.5/n; a >= 0.5 gets 0. Without std S(a) = 2a(1-a) and A_peak = n/2; with std
    S(a) = 2 sqrt(a(1-a)) and A_peak = n. ET: dN = ceil((A_peak - n S)/S); HW: ceil((2(1-a) A_peak - n S)/S).
    Capped to [0, n_max - n].
    """
    if schedule not in _SCHEDULES:
        raise ValueError(f"dars schedule must be one of {_SCHEDULES}, got {schedule!r}")
    a = np.asarray(acc, dtype=np.float64)
    a = np.where(a <= 0, 0.5 / n, a)
    hard = a < 0.5
    a = np.where(hard, a, 0.25)  # placeholder for easy prompts, masked below (avoids 0-division at a = 1)
    s = 2 * np.sqrt(a * (1 - a)) if use_std else 2 * a * (1 - a)
    peak = float(n) if use_std else 0.5 * n
    target = peak if schedule == "et" else 2 * (1 - a) * peak
    want = (target - n * s) / s
    extra = np.ceil(want - 1e-9)  # guard exact integers against round-off (8, a = 1/16 -> 56, not 57)
    extra = np.clip(extra, 0, max(n_max - n, 0))
    return np.where(hard, extra, 0).astype(np.int64)


class DarsAllocator(Allocator):
    """N rollouts per prompt, then one extra round of closed-form dN for prompts with accuracy < 0.5."""

    max_rounds = 2

    class Config(Knobs):
        n: int | None = Field(None, ge=1, le=MAX_ROLLOUTS_PER_PROMPT,
                              description="stage-1 rollouts per prompt (None = sampler.group_size)")
        n_max: int = Field(32, ge=1, le=MAX_ROLLOUTS_PER_PROMPT,
                           description="cap on a prompt's total rollouts (ET: 32, HW: 64)")
        schedule: Literal["et", "hw"] = Field("et", description="extra-rollout target: equal treatment | "
                                              "hardness-weighted")
        use_std: bool = Field(False, description="advantage mass with std scaling (the authors' scripts: off)")

        @model_validator(mode="after")
        def _stage_one_under_cap(self) -> DarsAllocator.Config:
            if self.n is not None and self.n > self.n_max:
                raise ValueError(f"n ({self.n}) must be at most n_max ({self.n_max}): stage 1 alone would pass the cap "
                                 "and no prompt would get a second stage")
            return self

    def setup(self) -> None:
        self._metrics: dict[str, float] = {}

    def first_round(self, group_size: int) -> int:
        return self.n or group_size

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        n = self.first_round(group_size)
        return prompts * max(self.n_max, n), prompts * n + 1

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        return np.full(len(prompts), self.n or ctx.group_size, dtype=np.int64)

    def extend(self, round_index: int, pools: list[GroupObs], ctx: SampleContext) -> np.ndarray:
        if round_index != 1 or not pools:
            return np.zeros(len(pools), dtype=np.int64)
        thr, n = ctx.stats.positive_threshold, self.n or ctx.group_size
        acc = np.array([float((p.rewards > thr).mean()) if p.n else 0.0 for p in pools])  # [P]
        extra = compute_dars_extra(acc, n, self.n_max, self.schedule, self.use_std)
        self._metrics = {"extended_prompts": float((extra > 0).sum()), "extra_rollouts": float(extra.sum()),
                         "stage1_acc": float(acc.mean())}
        return extra

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)


class DarsFilterGate(FilterGate):
    """Keep a group iff lower_threshold (0) < mean(kept rewards) < upper_threshold (1); no refill."""

    refill = False

    class Config(Knobs):
        upper_threshold: float = Field(1.0, description="drop groups whose mean reward is >= this")
        lower_threshold: float = Field(0.0, description="drop groups whose mean reward is <= this")

        @model_validator(mode="after")
        def _window(self) -> DarsFilterGate.Config:
            if not self.lower_threshold < self.upper_threshold:
                raise ValueError(f"lower_threshold ({self.lower_threshold}) must be below upper_threshold "
                                 f"({self.upper_threshold}), or every group is dropped")
            return self

    def passes(self, pools: list[GroupObs], kept: list[np.ndarray]) -> np.ndarray:
        means = np.array([p.rewards[k].mean() if len(k) else np.nan for p, k in zip(pools, kept)])  # [P]
        return (means > self.lower_threshold) & (means < self.upper_threshold)  # NaN (empty) -> dropped
