"""DOTS: difficulty-targeted online data selection (spec §7); rollout replay is ``replay.py`` (preset).

Every ``mu`` steps, predict every pool prompt's current pass rate, score it -|p_hat - alpha|, and sample
``mu * k`` prompts without replacement from softmax(score / tau) (Gumbel-top-k, vectorised over 10^6 prompts);
the next ``mu`` steps take consecutive slices of that plan.

Adaptation (documented choice): the authors' predictor is an attention regressor over frozen question
embeddings, trained offline on one dataset, plus a fresh random reference rollout each round. Here the
predictor is pluggable (``predictor`` = a name below or ``package.module:function`` with the signature of
:func:`predict_level`) and the reference set is free: the prompts rolled out in the last ``window`` steps
(their observed EMA pass rates in the stats store). The default ``level`` predictor kernel-regresses those
rates on the difficulty level (``ctx.levels``; one global mean without levels), and shrinks a seen prompt's
own EMA toward its level mean by its rollout count: p = (n * ema + m * level) / (n + m), m = prior_rollouts.
Before anything was rolled out every prediction is the prior, so the first plan is uniformly random (the
authors' first round is random too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from rollwise.components import Knobs
from rollwise.registry import import_object
from rollwise.sampling.base import SampleContext, Selector
from rollwise.sampling.vade import top_k

Predictor = Callable[..., np.ndarray]


def predict_level(ctx: SampleContext, window: int, bandwidth: float = 1.0, prior: float = 0.5,
                  prior_rollouts: float = 8.0) -> np.ndarray:
    """Predicted pass rate of every pool prompt [N] float32 (see the module docstring)."""
    st = ctx.stats
    ref = np.flatnonzero(st.last_step >= max(ctx.step - window, 0))  # reference set (never seen: -1)
    y = st.pass_rate(ref, prior=prior)  # [R]
    if ctx.levels is None:
        level_mean = np.full(st.size, (y.sum() + prior) / (y.size + 1), dtype=np.float32)  # + 1 prior count
    else:
        lv = np.asarray(ctx.levels)
        lo = int(lv.min()) if lv.size else 0
        lv = lv - lo if lo else lv
        m = int(lv.max()) + 1 if lv.size else 1
        sums = np.bincount(lv[ref], weights=y, minlength=m)  # [M]
        cnt = np.bincount(lv[ref], minlength=m).astype(np.float64)  # [M]
        grid = np.arange(m, dtype=np.float64)
        kern = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / max(bandwidth, 1e-9)) ** 2)  # [M, M]
        per_level = (kern @ sums + prior) / (kern @ cnt + 1.0)  # [M], one pseudo-count at the prior
        level_mean = per_level.astype(np.float32)[lv]  # [N]
    # full-array float32 arithmetic (no index gathers): w = n / (n + m) is 0 for never-seen prompts
    n = st.attempts.astype(np.float32)
    w = n / (n + np.float32(prior_rollouts))
    own = st.ema_pass.astype(np.float32)
    np.copyto(own, level_mean, where=np.isnan(own))
    own -= level_mean
    own *= w
    own += level_mean
    return own


PREDICTORS: dict[str, Predictor] = {"level": predict_level}

# Gumbel noise is made from float32 uniforms clipped to [2^-25, 1 - 2^-24], so it lies in a bounded range;
# an index whose base score trails the k-th best base by more than that range can never enter the top k.
_U_MIN = np.float32(2.0**-25)
_G_RANGE = float(-np.log(-np.log1p(-(2.0**-24))) + np.log(-np.log(2.0**-25))) + 0.5


def gumbel_top_k(scores: np.ndarray, k: int, rng: np.random.Generator, tau: float,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """Sample ``k`` distinct indices with P proportional to softmax(scores / tau), sequentially without
    replacement, via the Gumbel-top-k trick: top-k of scores / tau + Gumbel noise, returned in draw order.

    Exact pruning keeps it fast for small tau over 10^6 scores: noise is drawn only for indices within the
    noise range of the k-th best score (all of them when tau is large)."""
    base = (np.asarray(scores) / tau).astype(np.float32)
    if exclude is not None and len(exclude):
        base[np.asarray(exclude, dtype=np.int64)] = -np.inf
    best = top_k(base, k)
    if best.size == 0:
        return best
    cand = np.flatnonzero(base >= base[best[-1]] - np.float32(_G_RANGE)) if best.size == k else best
    u = np.maximum(rng.random(cand.size, dtype=np.float32), _U_MIN)
    keys = base[cand] - np.log(-np.log(u))
    return cand[top_k(keys, k)]


class DotsSelector(Selector):
    """Every ``mu`` steps, sample prompts predicted near pass rate ``alpha`` (softmax at temperature tau)."""

    class Config(Knobs):
        alpha: float = Field(0.5, ge=0, le=1, description="target pass rate (DOTS: 0.5)")
        tau: float = Field(1e-3, gt=0, description="softmax temperature of -|p - alpha| (DOTS: 1e-3, ~greedy)")
        mu: int = Field(2, ge=1, description="steps between re-selections (DOTS: 2)")
        predictor: str = Field("level", description="pass-rate predictor: level | package.module:function")
        window: int | None = Field(None, ge=1, description="reference set = prompts rolled out in the last "
                                   "this many steps (None = mu)")
        bandwidth: float = Field(1.0, gt=0, description="level predictor: kernel width over levels")
        prior: float = Field(0.5, ge=0, le=1, description="level predictor: pass rate before any data")
        prior_rollouts: float = Field(8.0, gt=0, description="level predictor: pseudo-rollouts of the level "
                                      "mean when shrinking a prompt's own estimate")

        @field_validator("predictor")
        @classmethod
        def _importable(cls, name: str) -> str:  # a user predictor is imported at load, not at the first plan
            if name not in PREDICTORS:
                try:
                    import_object(name)
                except (ImportError, ValueError) as exc:
                    raise ValueError(f"{exc} (built-in: {', '.join(PREDICTORS)})") from None
            return name

    def setup(self) -> None:
        self._predict: Predictor = PREDICTORS.get(self.predictor) or import_object(self.predictor)
        self.window = self.mu if self.window is None else self.window
        self.kwargs = {"bandwidth": self.bandwidth, "prior": self.prior, "prior_rollouts": self.prior_rollouts}
        self._queue = np.zeros(0, dtype=np.int64)  # planned prompts not yet served, in draw order
        self._plan_step = -(10**9)
        self.replans = 0
        self._metrics: dict[str, float] = {}

    def predict(self, ctx: SampleContext) -> np.ndarray:
        """Predicted pass rate of every pool prompt [N] float32."""
        return np.asarray(self._predict(ctx, self.window, **self.kwargs), dtype=np.float32)

    def _sample(self, k: int, ctx: SampleContext) -> tuple[np.ndarray, np.ndarray]:
        pred = self.predict(ctx)  # [N]
        chosen = gumbel_top_k(-np.abs(pred - self.alpha), k, ctx.rng, self.tau, ctx.exclude)
        return chosen, pred

    def select(self, k: int, ctx: SampleContext) -> np.ndarray:
        if ctx.exclude is not None:  # refill within a step: a fresh draw that leaves the plan alone
            return self._sample(k, ctx)[0]
        if ctx.step - self._plan_step >= self.mu or self._queue.size < k:
            self._queue, pred = self._sample(self.mu * k, ctx)
            self._plan_step, self.replans = ctx.step, self.replans + 1
            planned = pred[self._queue] if self._queue.size else np.full(1, np.nan)
            ref = np.count_nonzero(ctx.stats.last_step >= max(ctx.step - self.window, 0))
            self._metrics = {"reference": float(ref), "pred_mean": float(planned.mean()),
                             "pred_gap": float(np.abs(planned - self.alpha).mean())}
        chosen, self._queue = self._queue[:k], self._queue[k:]
        return chosen

    def metrics(self) -> dict[str, float]:
        return {**self._metrics, "replans": self.replans}

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self._queue.copy(), "plan_step": self._plan_step, "replans": self.replans}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._queue = np.asarray(state["queue"], dtype=np.int64).copy()
        self._plan_step, self.replans = int(state["plan_step"]), int(state["replans"])
