"""Rollout-GDRO (spec §5; arXiv:2601.19280): an EXP3-style arms game over rollout counts per online pass@k
bin, with the batch total held at P x n_mean by an exact dynamic programme (see ``GdroArmsAllocator``)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from rollwise.knobs import MAX_ROLLOUTS_PER_PROMPT
from rollwise.sampling.base import Allocator, GroupObs, SampleContext, TrainGroup
from rollwise.sampling.gdro import PassKClassifier, PassKKnobs, check_rollout_range, parse_edges


def compute_arm_probs(scores: np.ndarray, eta: float, gamma: float) -> np.ndarray:
    """Arm probabilities [B, K] per bin: p_b(n) = (1-gamma) softmax(eta S_b)[n] + gamma / K."""
    z = eta * scores
    w = np.exp(z - z.max(axis=1, keepdims=True))
    return (1 - gamma) * w / w.sum(axis=1, keepdims=True) + gamma / scores.shape[1]


def _arm_dp(logp: np.ndarray, counts: np.ndarray, off: np.ndarray, cap: int | None) -> list[np.ndarray]:
    """Forward pass: vals[b] [T_b] = best sum of log-probs of bins < b reaching each offset total (-inf if
    unreachable), offset totals above ``cap`` dropped (arms only add rollouts, so they never come back)."""
    vals = [np.zeros(1)]
    for b in range(len(counts)):
        prev, c = vals[-1], int(counts[b])
        size = len(prev) + c * int(off[-1])
        size = size if cap is None else min(size, cap + 1)
        new = np.full(size, -np.inf)
        for k in range(len(off)):
            s = c * int(off[k])
            if s >= size:
                break
            e = min(s + len(prev), size)
            np.maximum(new[s:e], prev[: e - s] + logp[b, k], out=new[s:e])
        vals.append(new)
    return vals


def compute_arm_plan(logp: np.ndarray, counts: np.ndarray, arms: np.ndarray, total: int) -> np.ndarray:
    """Arm index per bin [B] maximising sum_b logp[b, a_b] subject to sum_b counts[b] * arms[a_b] == total.

    ``logp`` [B, K] (log arm probabilities), ``counts`` [B] prompts per bin (>= 1), ``arms`` [K] increasing
    integer rollout counts. Exact dynamic programme over bins whose state is the running total (offset by
    arms[0]), vectorised over totals with numpy: O(B K T), T <= total - sum(counts) arms[0] + 1, about a
    millisecond at P = 512, K = 23, B = 7. When ``total`` is unreachable the closest reachable total is
    planned (the lower one on a tie). Ties in value go to the lower arm of the later bin; the backward pass
    recomputes each bin's best arm at the one total on the path (bit-identical sums), so no [B, T] table of
    choices is kept."""
    counts = np.asarray(counts, dtype=np.int64)
    n_bins = logp.shape[0]
    if n_bins == 0:
        return np.zeros(0, dtype=np.int64)
    off = np.asarray(arms, dtype=np.int64) - int(arms[0])  # [K] extra rollouts over the smallest arm
    want = int(total) - int(counts.sum()) * int(arms[0])
    vals = _arm_dp(logp, counts, off, want) if want >= 0 else []
    if want >= 0 and want < len(vals[-1]) and np.isfinite(vals[-1][want]):
        t = want
    else:  # unreachable: rerun without the cap and take the closest reachable total
        vals = _arm_dp(logp, counts, off, None)
        reach = np.flatnonzero(np.isfinite(vals[-1]))
        t = int(reach[np.lexsort((reach, np.abs(reach - want)))[0]])
    out = np.zeros(n_bins, dtype=np.int64)
    for b in range(n_bins - 1, -1, -1):
        prev, c = vals[b], int(counts[b])
        j = t - c * off  # [K] the previous total each arm would come from
        ok = (j >= 0) & (j < len(prev))
        cand = np.where(ok, prev[np.clip(j, 0, len(prev) - 1)] + logp[b], -np.inf)
        out[b] = int(np.argmax(cand))
        t -= c * int(off[out[b]])
    return out


class GdroArmsAllocator(Allocator):
    """Rollout-GDRO (Panaganti et al., "Group Distributionally Robust Optimization-Driven Reinforcement
    Learning for LLM Reasoning", arXiv:2601.19280): a compute adversary plays an EXP3-style game per online
    pass@k bin over discrete rollout counts n in [n_min, n_max], with the batch mean held at n_mean.

    Per bin b an arm score vector S_b[n] gives p_b(n) = (1-gamma) softmax(eta S_b)[n] + gamma/|arms|. Each
    step one arm per bin maximises sum_b log p_b(n_b) subject to sum_b count_b n_b = P n_mean *exactly*
    (``compute_arm_plan``), bins from the previous step's classification. After the update only the played
    arm changes: value_b = signal_b - mu (n_b - n_mean), then dual ascent mu += dual_lr (n_realised - n_mean).

    Choices (what the spec leaves open, and where this departs from the authors' code):
    * Plan from the previous step's bins; the classifier (this allocator's own) folds in the step's
      any-correct flags in ``observe``, after the update. Prompts never seen sit in the bin of accuracy 0.
    * The first step (nothing observed yet) is uniform: every prompt gets n_mean. A step whose prompts all
      share one bin is uniform too (n_mean is then the only exact total). Excluded-bin prompts
      (``exclude_extremes``) get n_mean, stay out of the DP and are never scored.
    * n_mean is an integer (arms are), so uniform plans and the excluded bin are exact; n_max defaults to
      round(3 n_mean) (the code's 3.0 multiplier).
    * Scores start at 0 for every arm (uniform p); the EMA starts from that 0 rather than from the first
      value, so an untried arm stays the neutral reference the played ones are compared with.
    * Update form: ``ema`` (default 0.3, the spec's 0.2-0.4) gives S <- (1-ema) S + ema value on the played
      arm; ``ema=None`` is the code's additive S += value.
    * Signal: ``difficulty`` (default) = 1 - mean pool pass rate of the bin's prompts; ``loss`` = mean of
      ``losses`` over the bin's trained fresh groups (the code; ~0 under GRPO, the spec's pitfall). A bin
      with no trained group is not scored that step; without ``losses`` the signal is difficulty.
    * ``center`` (default on) subtracts the step's mean signal over the in-game prompts. The arm choice is a
      deterministic argmax and only the played arm is scored, so with a signal that is never negative
      (difficulty) the played arm only gains and the game never leaves its first, uniform plan (a test
      shows this). Centring makes the value signed, like the code's ~zero-mean loss: a bin easier than the
      batch average marks its arm down and moves; a harder one keeps its arm. ``center=False``,
      ``signal="loss"``, ``ema=None`` is the code's update.
    * The DP meets P n_mean exactly, so the realised mean is n_mean and mu stays at ``mu0`` (the spec's
      pitfall): it moves only when a request is trimmed to the budget. mu is not projected to >= 0.
    * Exact ties (equal scores, e.g. untried arms) go to the arm nearer n_mean (a 1e-9 per-rollout nudge to
      log p), then to the lower arm; an unreachable total plans the closest reachable one (lower on a tie).
      Nothing is random, so ``ctx.rng`` is not used.
    * Several ``initial`` calls in one step (refills) each meet their own total; every played (bin, arm)
      pair is scored.
    """

    needs_revisits = True  # acts on what earlier visits of a prompt taught it

    TIE = 1e-9  # per rollout of distance from n_mean: breaks exact ties toward uniform, never a real preference

    class Config(PassKKnobs):
        n_mean: int | None = Field(None, ge=1, le=MAX_ROLLOUTS_PER_PROMPT,
                                   description="mean rollouts per prompt (None = group_size)")
        n_min: int = Field(2, ge=2, le=MAX_ROLLOUTS_PER_PROMPT, description="smallest arm")
        n_max: int | None = Field(None, ge=2, le=MAX_ROLLOUTS_PER_PROMPT,
                                  description="largest arm (None = round(3 x n_mean))")
        signal: Literal["difficulty", "loss"] = Field("difficulty", description="arm value: 1 - pool pass "
                                                      "rate of the bin, or its groups' mean surrogate loss")
        center: bool = Field(True, description="subtract the step's mean signal over in-game prompts, so the "
                             "played arm of an easier-than-average bin loses score (else it only ever gains)")
        eta: float = Field(0.65, ge=0, description="softmax temperature of the arm scores")
        gamma: float = Field(0.01, ge=0, le=1, description="uniform exploration mixed into the arm probs")
        ema: float | None = Field(0.3, gt=0, le=1, description="S <- (1-ema) S + ema value on the played "
                                  "arm (the spec's 0.2-0.4); None = the code's additive S += value")
        dual_lr: float = Field(0.05, ge=0, description="dual ascent rate of the shadow price mu")
        mu0: float = Field(0.0, description="initial shadow price")

        @model_validator(mode="after")
        def _arm_range(self) -> GdroArmsAllocator.Config:
            check_rollout_range(self.n_min, self.n_mean, self.n_max)
            return self

    def setup(self) -> None:
        self.classifier = PassKClassifier(parse_edges(self.edges), self.history, self.hysteresis,
                                          self.exclude_extremes)
        self.mu = self.mu0
        self.scores: np.ndarray | None = None  # [B, K] arm scores S_b[n]; allocated once the arms are known
        self.steps = 0  # steps observed (the first plan is uniform)
        self._plan: dict[int, tuple[int, int]] = {}  # prompt -> (bin, arm) planned this step
        self._metrics: dict[str, float] = {}

    def arms(self, group_size: int) -> tuple[int, np.ndarray]:
        """(n_mean, arms [K]) for a sampler of ``group_size``; allocates the scores on first use."""
        n_mean = int(self.n_mean or group_size)
        n_max = int(self.n_max) if self.n_max is not None else int(round(3 * n_mean))
        if not self.n_min <= n_mean <= n_max:
            raise ValueError(f"gdro_arms needs n_min <= n_mean <= n_max, got {self.n_min}, {n_mean}, {n_max}")
        arms = np.arange(self.n_min, n_max + 1, dtype=np.int64)
        if self.scores is None:
            self.scores = np.zeros((self.classifier.n_bins, len(arms)))
        elif self.scores.shape != (self.classifier.n_bins, len(arms)):
            raise ValueError(f"gdro_arms scores have shape {self.scores.shape}, the arms need "
                             f"{(self.classifier.n_bins, len(arms))}")
        return n_mean, arms

    def budget(self, prompts: int, group_size: int) -> tuple[int, int]:
        n = int(round(prompts * (self.n_mean or group_size)))
        return n, n

    def first_round(self, group_size: int) -> int:
        check_rollout_range(self.n_min, self.n_mean or group_size, self.n_max, from_group_size=self.n_mean is None)
        return int(round(self.n_mean or group_size))

    def probs(self) -> np.ndarray:
        """Current arm probabilities [B, K] (the arms are known once a step has been planned)."""
        assert self.scores is not None, "plan a step first"
        return compute_arm_probs(self.scores, self.eta, self.gamma)

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        n_mean, arms = self.arms(ctx.group_size)
        prompts = np.asarray(prompts, dtype=np.int64)  # [P]
        nb = self.classifier.n_bins
        bins = self.classifier.bins(prompts)  # [P] the previous step's classification
        cnt = np.bincount(bins, minlength=nb + 1)[:nb]  # [B] prompts per in-game bin
        arm = np.full(nb, n_mean, dtype=np.int64)  # [B] rollouts per prompt of each bin
        p = self.probs()
        present = np.flatnonzero(cnt)
        if self.steps > 0 and present.size:
            logp = np.log(p[present]) - self.TIE * np.abs(arms - n_mean)  # [B', K]
            arm[present] = arms[compute_arm_plan(logp, cnt[present], arms, n_mean * int(cnt.sum()))]
        counts = np.where(bins < nb, arm[np.minimum(bins, nb - 1)], n_mean)  # [P]; excluded bin: n_mean
        self._plan.update(zip(prompts.tolist(), zip(bins.tolist(), counts.tolist())))
        k = arm - arms[0]
        ent = -(p * np.log(p)).sum(axis=1)
        self._metrics = {"excluded_share": float((bins >= nb).mean()) if len(bins) else 0.0, "mu": self.mu,
                         "n_planned": float(counts.mean()) if len(counts) else 0.0}
        for b in range(nb):
            self._metrics |= {f"bin{b}_share": float(cnt[b] / max(len(bins), 1)),
                              f"bin{b}_arm": int(arm[b]) if cnt[b] else 0,
                              f"bin{b}_p": float(p[b, k[b]]), f"bin{b}_entropy": float(ent[b])}
        return counts.astype(np.int64)

    def _signal(self, pools: list[GroupObs], trained: list[TrainGroup], losses: np.ndarray | None,
                thr: float) -> np.ndarray:
        """Per-pool value [P]: 1 - pool pass rate, or the trained group's mean loss (NaN if not trained)."""
        if self.signal == "loss" and losses is not None:
            loss = {g.prompt: float(x) for g, x in zip(trained, losses) if not g.replayed}
            return np.array([loss.get(p.prompt, np.nan) for p in pools])
        return np.array([1.0 - float((p.rewards > thr).mean()) if p.n else np.nan for p in pools])

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        if not pools:
            return
        n_mean, _ = self.arms(ctx.group_size)
        thr = ctx.stats.positive_threshold
        plan = [self._plan.get(p.prompt) for p in pools]
        played = np.array([pl is not None and pl[0] < self.classifier.n_bins for pl in plan])  # [P] in game
        sig = self._signal(pools, trained, losses, thr)  # [P]
        use = played & np.isfinite(sig)
        if use.any():
            bins = np.array([pl[0] for pl, u in zip(plan, use) if u], dtype=np.int64)
            arm = np.array([pl[1] for pl, u in zip(plan, use) if u], dtype=np.int64)
            s = sig[use] - (sig[use].mean() if self.center else 0.0)
            self.update_scores(bins, arm, s, n_mean)
        realised = float(np.mean([p.n for p in pools]))
        self.mu += self.dual_lr * (realised - n_mean)  # dual ascent; ~0 as the plan meets n_mean exactly
        prompts = np.array([p.prompt for p in pools], dtype=np.int64)
        self.classifier.update(prompts, np.array([bool((p.rewards > thr).any()) for p in pools]), ctx.stats.size)
        self.steps += 1
        self._plan = {}
        self._metrics |= {"mu": self.mu, "n_realised": realised}

    def update_scores(self, bins: np.ndarray, arm: np.ndarray, signal: np.ndarray, n_mean: int) -> None:
        """S_b[n] for every played (bin, arm) pair: value = mean signal of its prompts - mu (n - n_mean),
        folded in additively (``ema=None``) or as an EMA. One plan per step plays one arm per bin."""
        assert self.scores is not None
        n_min = int(self.n_min)
        pairs = np.unique(np.stack([bins, arm]), axis=1)  # [2, U]
        for b, n in pairs.T:
            m = (bins == b) & (arm == n)
            value = float(signal[m].mean()) - self.mu * (int(n) - n_mean)
            old = self.scores[b, n - n_min]
            self.scores[b, n - n_min] = old + value if self.ema is None else (1 - self.ema) * old + self.ema * value

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)

    def state_dict(self) -> dict[str, Any]:
        plan = np.array([[p, b, n] for p, (b, n) in self._plan.items()], dtype=np.int64).reshape(-1, 3)
        return {"classifier": self.classifier.state_dict(), "mu": self.mu, "steps": self.steps, "plan": plan,
                "scores": None if self.scores is None else self.scores.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.mu, self.steps = float(state["mu"]), int(state["steps"])
        self.scores = None if state["scores"] is None else np.array(state["scores"], dtype=np.float64)
        self._plan = {int(p): (int(b), int(n)) for p, b, n in np.asarray(state["plan"]).reshape(-1, 3)}
