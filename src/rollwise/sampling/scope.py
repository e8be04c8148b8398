"""SCOPE (arXiv:2602.24110): step-wise off-policy rectification of failed rollouts located by a process reward.

A failed rollout that is mostly right is not thrown away: a process reward model (PRM, ``rewards/prm.py``) finds
its *first wrong step* k, the policy's own prefix y_<k is kept, the steps from k on are replaced by off-policy
guidance c (the reference solution's steps from k), and y' = y_<k + c replaces y in its group if it verifies.
The prefix tokens stay on-policy (clipped ratio with their stored behaviour logprobs); the suffix tokens are
marked off-policy (``Rollout.off_policy_mask``) and trained with the policy-shaping loss ``scope``
(``algos/policy_shaping.py``: -A p/(p + gamma)). The reward stays outcome-only: the PRM never adds a dense reward.

This transform decides which failures are rectified and keeps the books; what needs the tokenizer, the PRM, the
traces and the verifier is lent by the trainer side (a judge and a splice, built in ``train/scope.py``, through
``RescueSources.rectifier``), since ``sampling/`` imports neither. It acts in ``on_generated``, after verification
and before the advantages, so GRPO's statistics are recomputed on the modified group (group size unchanged).

Choices for the points the paper leaves open (no code released; every one [unverified]):

- Eligible rollouts: failed ones (reward <= the positive threshold) whose first error k satisfies
  k >= ``min_prefix_share`` * S (S = the rollout's steps; rho = 0.3: "largely correct"). A failed rollout whose
  every step passes (it stopped early) has k = S: the missing steps are the error.
- First error: the first step scored below ``tau`` (0.5).
- At most ``per_group`` (1) rectified rollouts per group, the eligible ones with the longest correct prefix first;
  with ``only_all_failed`` only groups where every rollout failed (the groups GRPO drops) are rectified. A group's
  last failure is never rectified (``leave_failure``): on the long-tail testbed, salvaging the single failure of
  a 7-of-8 group made it all-correct and cut the share of mixed trained groups from 0.30 to 0.24 (one seed, 40
  steps, before this rule).
- ``splice = "whole"`` is the whole-trajectory replacement arm (the LUFFY analogue: k = 0, no PRM cut, the full
  reference off-policy); SCOPE's default is ``first_error``.
- The stats store learns from the policy's own rewards (``GroupObs.own_rewards``), not the rectified ones.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from rollwise.components import Knobs
from rollwise.registry import import_object
from rollwise.sampling.base import GroupObs, RescueSources, SampleContext, Transform

#: the PRMs registered in ``rewards/prm.py`` (named here: ``sampling/`` does not import the reward layer)
BUILTIN_PRMS = ("arith",)


def compute_first_error(scores: list[float], tau: float = 0.5) -> int | None:
    """Index of the first step scored below ``tau`` (None: every step passes)."""
    for i, s in enumerate(scores):
        if s < tau:
            return i
    return None


def compute_rectify_step(scores: list[float], tau: float, min_prefix_share: float) -> int | None:
    """The step a failed rollout is rectified from: its first error k (S, the end, when every step passes), or
    None when it has no steps or its correct prefix is too short (k < min_prefix_share * S)."""
    steps = len(scores)
    if steps == 0:
        return None
    k = compute_first_error(scores, tau)
    k = steps if k is None else k
    return k if k >= min_prefix_share * steps else None


class ScopeRectify(Transform):
    """Failed rollouts rectified from their first wrong step (PRM-located) with the reference's steps."""

    needs = ("rectifier",)

    class Config(Knobs):
        prm: str = Field("arith", description="the process reward model: a registered name (rewards/prm.py) or "
                         "package.module:attr, a callable (prompt, reference, completion) -> StepScores")
        @field_validator("prm")
        @classmethod
        def _known(cls, name: str) -> str:  # a user PRM is imported at load, not at the first failure
            if name not in BUILTIN_PRMS:
                try:
                    import_object(name)
                except (ImportError, ValueError) as exc:
                    raise ValueError(f"{exc} (built-in: {', '.join(BUILTIN_PRMS)})") from None
            return name

        tau: float = Field(0.5, ge=0, le=1, description="a step scored below this is wrong (PRM threshold) "
                           "[unverified]")
        min_prefix_share: float = Field(0.3, ge=0, le=1, description="rectify only rollouts whose first error k "
                                        ">= this share of their steps (rho: largely correct) [unverified]")
        per_group: int = Field(1, ge=1, description="most rectified rollouts per group (longest correct prefix "
                               "first) [unverified]")
        only_all_failed: bool = Field(False, description="rectify only groups where every rollout failed (the "
                                      "groups GRPO drops)")
        leave_failure: bool = Field(True, description="never rectify a group's last failed rollout (an all-correct "
                                    "group has no contrast: salvaging the one failure of a mixed group would erase "
                                    "its signal) [unverified]")
        splice: Literal["first_error", "whole"] = Field("first_error", description="first_error: keep the policy's "
                                                        "prefix (SCOPE); whole: replace the whole rollout with the "
                                                        "reference (the LUFFY-like control arm)")

    def setup(self) -> None:
        self.sources = RescueSources()
        self._judge_fn: Any = None
        self._splice: Any = None
        self._step = {"failed": 0, "eligible": 0, "rectified": 0, "salvaged": 0, "rejected": 0,
                      "groups_unlocked": 0, "first_error_sum": 0.0, "steps_sum": 0.0}
        self._total = {"failed": 0, "salvaged": 0}

    def bind(self, sources: RescueSources) -> None:
        self.sources = sources
        if sources.rectifier is not None:
            self._judge_fn, self._splice = sources.rectifier(self.prm)

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        st = dict.fromkeys(self._step, 0)
        thr = ctx.stats.positive_threshold
        for pool in pools:
            if pool.payload is None or pool.texts is None:
                continue
            failed = np.flatnonzero(pool.rewards <= thr)
            st["failed"] += len(failed)
            if not len(failed) or (self.only_all_failed and len(failed) < pool.n):
                continue
            candidates = []
            for i in failed.tolist():
                starts, scores = self._judge(pool.prompt, pool.texts[i])
                k = 0 if self.splice == "whole" else compute_rectify_step(scores, self.tau, self.min_prefix_share)
                if k is None:
                    continue
                st["eligible"] += 1
                st["first_error_sum"] += k
                st["steps_sum"] += len(scores)
                candidates.append((-k, i, k, starts[k] if k < len(starts) else len(pool.texts[i])))
            was_all_failed = len(failed) == pool.n
            cap = min(self.per_group, len(failed) - 1) if self.leave_failure else self.per_group
            done = 0
            for _, i, k, char in sorted(candidates):
                if done >= cap:
                    break
                st["rectified"] += 1
                got = self._splice(pool.prompt, pool.payload[i], k, char)
                if got is None or got[1] <= thr:
                    st["rejected"] += 1  # y' did not verify: y stays as it was
                    continue
                self._replace(pool, i, got)
                done += 1
                st["salvaged"] += 1
            if done and was_all_failed:
                st["groups_unlocked"] += 1
        self._step = st
        self._total["failed"] += int(st["failed"])
        self._total["salvaged"] += int(st["salvaged"])

    def _judge(self, prompt: int, text: str) -> tuple[list[int], list[float]]:
        starts, scores = self._judge_fn(prompt, text)
        if len(starts) != len(scores):
            raise ValueError(f"PRM returned {len(starts)} step starts and {len(scores)} scores")
        return list(starts), [float(s) for s in scores]

    @staticmethod
    def _replace(pool: GroupObs, i: int, got: tuple[Any, float, str, int, float]) -> None:
        """Put the rectified rollout in row ``i`` (arrays copied: the collector's view is not touched)."""
        rollout, reward, text, length, mean_logprob = got
        if pool.own_rewards is None:
            pool.own_rewards = pool.rewards.copy()
        pool.rewards = pool.rewards.astype(np.float64, copy=True)
        pool.rewards[i] = reward
        pool.lengths = pool.lengths.copy()
        pool.lengths[i] = length
        if pool.mean_logprob is not None:
            pool.mean_logprob = pool.mean_logprob.copy()
            pool.mean_logprob[i] = mean_logprob
        pool.payload = list(pool.payload or [])
        pool.payload[i] = rollout
        pool.texts = list(pool.texts or [])
        pool.texts[i] = text

    def metrics(self) -> dict[str, float]:
        st = self._step
        eligible = max(st["eligible"], 1)
        return {"failed": float(st["failed"]), "eligible": float(st["eligible"]), "rectified": float(st["rectified"]),
                "salvaged": float(st["salvaged"]), "rejected": float(st["rejected"]),
                "groups_unlocked": float(st["groups_unlocked"]),
                "salvage_rate": st["salvaged"] / st["failed"] if st["failed"] else 0.0,
                "first_error_share": st["first_error_sum"] / max(st["steps_sum"], 1) if st["eligible"] else 0.0,
                "first_error_mean": st["first_error_sum"] / eligible,
                "salvaged_total": float(self._total["salvaged"]), "failed_total": float(self._total["failed"])}

    def state_dict(self) -> dict[str, Any]:
        return {"total": dict(self._total)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._total = {k: int(v) for k, v in state.get("total", self._total).items()}
