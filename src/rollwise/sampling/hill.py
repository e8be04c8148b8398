"""HiLL (Xia et al., "Learning to Hint for Reinforcement Learning", arXiv:2604.00698; code Andree-9/HiLL):
a learned hinter shows stuck prompts a hint, rewarded for hints that make the group informative *and* that
the correct answers do not lean on.

Spec: ``shared/methods/generation.md`` section 12 (read in the authors' code). Kept from HiLL:

- the reasoner re-rolls a hard prompt x as x + "\\n" + h and is trained on the hinted prompt;
- hinter reward (``transfer_weighted_non_deg``), n rollouts of the hinted prompt, p = their pass rate:

      R_h = (1 - p^n - (1 - p)^n) * exp(min(Delta_bar, 0) / T),   T = 0.3,

  0 when p is 0 or 1 (a degenerate group gives GRPO nothing); Delta(y) = mean_t log pi(y|x) - mean_t
  log pi(y|x+h), teacher-forced under the current policy before its update, Delta_bar its mean over the
  CORRECT hinted rollouts (hint reliance: negative when the answer needs the hint);
- the gates: a hint containing the reference answer string (leakage), or one the generator cannot write
  (parse failure), scores -0.2 and is not shown.

What differs, and why:

- **The hinter is a second, small learned model, not an LLM.** At this scale the policy (a 4-layer char model
  trained on arithmetic) cannot write hints, so the hinter is a softmax policy per difficulty level over a
  library of hint generators the trainer lends (``RescueSources.hints``; for the arithmetic task: the carries,
  the first half of the carries, the number of answer digits, the last digit, the units-column sub-problem, a
  rounded estimate, none of which is the full answer; the leakage gate checks anyway). It is trained online by
  REINFORCE: logits += lr * mean_i (R_i - b) (onehot(g_i) - pi), b the mean reward of the step's hints at that
  level when there are at least two (HiLL's group of M hints), else a running mean of the level's rewards.
  It conditions on the level, not on the failed rollout and the reference solution as HiLL's LLM hinter does.
- **One valid hint per stuck prompt per step**, not M = 4 hints each re-rolled n times with the best one
  trained: the pipeline keys a step's pool by prompt, so a prompt's pool is one context (the advantage group
  is per (x, hint)). Up to ``tries`` hints are drawn (without replacement) until one passes the gates; each
  rejected draw is a hinter sample with reward -0.2. The hinter learns across steps and prompts of a level.
- A prompt is hard when *stuck* (its latest plain pool all wrong, ``rescue.py``), decided from history at its
  first request of the step (HiLL re-rolls a group found all wrong in the same step); ``plain_share`` of the
  stuck prompts stay plain, which measures transfer to the no-hint prompt (``rescued``).
- Without a scorer (``RescueSources.reliance`` unset, e.g. sampler unit tests) Delta_bar is taken as 0: no
  reliance penalty (``reliance_scored`` counts the pools that were scored).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rollwise.sampling.base import GroupObs, PromptContext, SampleContext, TrainGroup
from rollwise.sampling.rescue import RescueTransform


def compute_hint_reward(pass_rate: float, n: int, reliance: float | None, temperature: float = 0.3) -> float:
    """R_h = (1 - p^n - (1-p)^n) * exp(min(Delta_bar, 0) / T); ``reliance`` None (unscored) counts as 0."""
    informative = 1.0 - pass_rate**n - (1.0 - pass_rate) ** n
    weight = math.exp(min(reliance or 0.0, 0.0) / temperature)
    return float(informative * weight)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def compute_hinter_step(logits: np.ndarray, actions: np.ndarray, rewards: np.ndarray, baseline: float,
                        lr: float) -> np.ndarray:
    """One REINFORCE step of a softmax policy: logits + lr * mean_i (R_i - b) (onehot(a_i) - pi); [A] logits,
    [M] actions and rewards."""
    pi = softmax(logits)  # [A]
    onehot = np.eye(len(logits))[actions]  # [M, A]
    grad = ((rewards - baseline)[:, None] * (onehot - pi[None, :])).mean(axis=0)  # [A]
    return logits + lr * grad


class HillHints(RescueTransform):
    """Stuck prompts get one hint per step from a per-level softmax hinter trained on HiLL's hinter reward."""

    needs = ("hints",)

    class Config(RescueTransform.Config):
        tries: int = Field(4, ge=1, description="hints drawn per stuck prompt until one passes the gates (HiLL's "
                           "M = 4)")
        temperature: float = Field(0.3, gt=0, description="T of the reliance weight exp(min(Delta_bar, 0) / T)")
        gate_reward: float = Field(-0.2, description="hinter reward of a leaking or unwritable hint (not shown)")
        lr: float = Field(0.5, gt=0, description="hinter step size on its logits (REINFORCE)")
        baseline_decay: float = Field(0.9, ge=0, lt=1, description="running mean of a level's hint rewards, the "
                                      "baseline when a step has one hint at that level")
        position: Literal["after", "before"] = Field("after", description="hint after the prompt (HiLL: x + "
                                                     "'\\n' + h) or before it")

    def setup(self) -> None:
        super().setup()
        self._logits: dict[int, np.ndarray] = {}  # level -> [A] hinter logits
        self._baseline: dict[int, float] = {}  # level -> running mean hint reward
        self._hint: dict[int, tuple[int, int]] = {}  # this step: prompt -> (level, generator) shown
        self._samples: list[tuple[int, int, float]] = []  # this step: (level, generator, reward) to learn from
        self._scored: dict[int, tuple[float, bool, float | None]] = {}  # prompt -> (R_h, solved, Delta_bar)
        self._leaks = self._unwritable = 0
        self._report = self._step_report()  # the last observed step's hint metrics

    def _level(self, ctx: SampleContext, prompt: int) -> int:
        return int(ctx.levels[prompt]) if ctx.levels is not None else 0

    def probs(self, level: int) -> np.ndarray:
        """The hinter's [A] distribution over the hint generators at ``level``."""
        n = len(self.sources.hint_names)
        return softmax(self._logits.get(level, np.zeros(n)))

    def contexts(self, prompts: np.ndarray, pools: dict[int, GroupObs], ctx: SampleContext) -> list[Any] | None:
        if ctx.step != self._step:
            self._hint, self._samples, self._scored = {}, [], {}
            self._leaks = self._unwritable = 0
        return super().contexts(prompts, pools, ctx)

    def help(self, prompt: int, ctx: SampleContext) -> PromptContext | None:
        names, hints, refs = self.sources.hint_names, self.sources.hints, self.sources.references
        if not names or hints is None:
            return None
        level = self._level(ctx, prompt)
        texts = hints(prompt)
        answer = refs[prompt].strip() if refs is not None else ""
        left = np.ones(len(names), dtype=bool)
        for _ in range(min(self.tries, len(names))):
            pi = self.probs(level) * left
            g = int(ctx.rng.choice(len(names), p=pi / pi.sum()))
            left[g] = False
            text = texts.get(names[g]) or ""
            if not text or (answer and answer in text):
                self._samples.append((level, g, self.gate_reward))
                if text:
                    self._leaks += 1
                else:
                    self._unwritable += 1
                continue
            self._hint[prompt] = (level, g)
            if self.position == "after":
                return PromptContext(after="\n" + text, tag=f"hint:{names[g]}")
            return PromptContext(before=text + "\n", tag=f"hint:{names[g]}")
        return None

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        """Score each hinted pool before the update (Delta uses the policy that sampled it)."""
        thr = ctx.stats.positive_threshold
        for pool in pools:
            if pool.prompt not in self._hint or pool.prompt in self._scored or not pool.n:
                continue
            wins = np.flatnonzero(pool.rewards > thr)
            reliance = None
            if wins.size and self.sources.reliance is not None and pool.payload is not None:
                reliance = float(np.mean(self.sources.reliance(pool.prompt, [pool.payload[j] for j in wins])))
            reward = compute_hint_reward(wins.size / pool.n, pool.n, reliance, self.temperature)
            self._scored[pool.prompt] = (reward, bool(wins.size), reliance)

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        super().observe(ctx, pools, trained, losses)
        samples = self._samples + [(*self._hint[p], r) for p, (r, _, _) in self._scored.items()]
        for level in sorted({s[0] for s in samples}):
            acts = np.array([g for lv, g, _ in samples if lv == level], dtype=np.int64)
            rew = np.array([r for lv, _, r in samples if lv == level], dtype=np.float64)
            run = self._baseline.get(level, 0.0)
            base = float(rew.mean()) if len(rew) >= 2 else run
            logits = self._logits.get(level, np.zeros(len(self.sources.hint_names)))
            self._logits[level] = compute_hinter_step(logits, acts, rew, base, self.lr)
            self._baseline[level] = self.baseline_decay * run + (1 - self.baseline_decay) * float(rew.mean())
        self._report = self._step_report()
        self._samples, self._scored = [], {}  # learnt once: a later step without requests must not replay them

    def _step_report(self) -> dict[str, float]:
        scored = list(self._scored.values())
        deltas = [d for _, _, d in scored if d is not None]
        return {
            "hinted": float(len(self._hint)),
            "hint_success_rate": float(np.mean([s for _, s, _ in scored])) if scored else 0.0,
            "hinter_reward_mean": float(np.mean([r for r, _, _ in scored])) if scored else 0.0,
            "leak_rejections": float(self._leaks),
            "unwritable": float(self._unwritable),
            "reliance_scored": float(len(deltas)),
            "reliance_mean": float(np.mean(deltas)) if deltas else 0.0,
        }

    def metrics(self) -> dict[str, float]:
        out = super().metrics() | self._report
        levels = sorted(self._logits) or [0]
        mean_pi = np.mean([self.probs(lv) for lv in levels], axis=0) if self.sources.hint_names else []
        return out | {f"p_{name}": float(p) for name, p in zip(self.sources.hint_names, mean_pi)}

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"logits": {lv: v.tolist() for lv, v in self._logits.items()},
                                       "baseline": dict(self._baseline)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._logits = {int(lv): np.array(v, dtype=np.float64) for lv, v in state["logits"].items()}
        self._baseline = {int(lv): float(b) for lv, b in state["baseline"].items()}
