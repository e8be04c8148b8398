"""PivotRL (NVIDIA, "PivotRL: ...", arXiv 2603.21383; NeMo-Gym pivot datasets, NeMo-RL one-turn GRPO): turn-level
RL on the high-variance turns ("pivots") of expert trajectories, with a functional reward.

**Pivot table** (built once, at the first step, from the weights the run starts with: the frozen pi_0): every
assistant turn of every expert trajectory is a candidate, its context the task plus the expert's earlier actions
(and the environment's answers), rendered with the run's turn format (the chat template where the episodes use
it). K actions of pi_0 are sampled at each candidate (one turn, never executed) and scored with the environment's
functional step check (``action_reward``). A candidate is kept iff the variance of its K rewards is above 0 and
their mean below ``lambda_diff`` (``algos/step_methods.py:pivot_keep``); ``filter = false`` keeps every candidate
(the ablation). The table is static after profiling.

**Training**: a sampler request for task p trains one pivot: one of p's own (chosen per step with the run's seed),
or, when p has none, one of the whole table's (so every request trains a pivot). G actions of the current policy
are sampled there and scored with the functional check (``reward = "exact"``: a string match with the expert's
action, through the env's ``canonical_action`` where it has one; the paper's ablation), and the trainer's GRPO
takes them as p's group. The trajectory is not continued past the pivot turn.

Profiling turns are reported (``pivot/profile_turns``) but not charged to the step budget: PivotRL's cost
comparison counts them separately.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rollwise.algos.step_methods import pivot_keep, pivot_stats
from rollwise.envs.base import check_messages, check_step, guarded_call
from rollwise.envs.methods import StepCollectorBase
from rollwise.sampling import Budget, SamplingPipeline
from rollwise.train.rollout import StepRollouts
from rollwise.types import Prompt, Rollout


@dataclass
class Candidate:
    """One assistant turn of an expert trajectory: a state PivotRL may train."""

    task_index: int
    turn: int
    context: list[int]  # the conversation before the turn, token ids in the run's turn format
    state: Any  # the environment's snapshot at the turn
    expert: str  # the expert's action there
    mu: float = 0.0  # profiling mean of the functional reward
    var: float = 0.0  # profiling variance


def expert_candidates(coll: StepCollectorBase, tasks: list[Prompt], index: list[int]) -> list[Candidate]:
    """Every turn of every task's expert trajectory, with its context and state."""
    out = []
    timeout = coll.limits.timeout_s
    for task, i in zip(tasks, index):
        env = coll.make_env()
        context = coll.fmt.first(check_messages(guarded_call(env.reset, task, timeout_s=timeout)))
        for t, action in enumerate(env.expert(task) or []):
            out.append(Candidate(i, t, context, env.snapshot(), action))
            obs, _, done, _ = check_step(guarded_call(env.step, action, timeout_s=timeout), (-1e9, 1e9))
            if done:
                break
            context = context + coll.after(None, action, obs)
    return out


class PivotCollector(StepCollectorBase):
    """PivotRL's rollout source (module docstring)."""

    def __init__(self, cfg: Any, engine: Any, pool: list[Prompt], tok: Any, params: Any, *, samples: int = 8,
                 lambda_diff: float = 0.75, filter: bool = True, reward: str = "functional",
                 profile_tasks: int = 0) -> None:
        super().__init__(cfg, engine, pool, tok, params)
        self.K, self.lambda_diff, self.filter, self.reward = samples, lambda_diff, filter, reward
        self.profile_tasks, self.seed = profile_tasks, cfg.run.seed
        self.pivots: list[Candidate] | None = None
        self.by_task: dict[int, list[Candidate]] = {}
        self.profile: dict[str, float] = {}
        self.totals = {"rows": 0, "reward": 0.0, "functional_not_exact": 0}  # over the run

    def score(self, c: Candidate, text: str, how: str) -> float:
        if how == "exact":
            return float(self.matches(text, c.expert))
        return float(self.checker.action_reward(c.state, text))

    def build_pivots(self, seed: int) -> list[Candidate]:
        """Profile every candidate with K samples of the current (start) weights and keep the pivots."""
        n = self.profile_tasks or len(self.pool)
        cands = expert_candidates(self, self.pool[:n], list(range(min(n, len(self.pool)))))
        rewards = torch.zeros(len(cands), self.K)  # [C, K]
        chunk, inexact = 256, 0
        for s in range(0, len(cands), chunk):
            part = cands[s:s + chunk]
            got = self.generate([c.context for c in part], [self.K] * len(part), self.params, seed + s)
            for j, (c, comps) in enumerate(zip(part, got)):
                rewards[s + j] = torch.tensor([self.score(c, x.text, "functional") for x in comps])
                inexact += sum(not self.matches(x.text, c.expert) for x in comps) - int((rewards[s + j] == 0).sum())
        mu, var = pivot_stats(rewards)
        keep = pivot_keep(rewards, self.lambda_diff) if self.filter else torch.ones(len(cands), dtype=torch.bool)
        for c, m, v in zip(cands, mu.tolist(), var.tolist()):
            c.mu, c.var = m, v
        pivots = [c for c, k in zip(cands, keep.tolist()) if k]
        self.profile = {"pivot/candidates": len(cands), "pivot/kept": len(pivots),
                        "pivot/profile_turns": len(cands) * self.K,
                        "pivot/profile_functional_not_exact": inexact,
                        "pivot/all_correct": int(((var == 0) & (mu == 1)).sum()),
                        "pivot/all_wrong": int(((var == 0) & (mu == 0)).sum()),
                        "pivot/too_easy": int(((var > 0) & (mu >= self.lambda_diff)).sum())}
        if not pivots:
            raise ValueError(f"pivotrl: none of {len(cands)} candidate turns has mixed outcomes under "
                             f"lambda_diff {self.lambda_diff} with K = {self.K}; the start policy is all right or "
                             "all wrong there (raise K or lambda_diff, or set filter = false)")
        return pivots

    def choose(self, p: int, step: int) -> Candidate:
        assert self.pivots is not None
        own = self.by_task.get(p) or self.pivots
        return own[random.Random(f"pivot:{self.seed}:{step}:{p}").randrange(len(own))]

    def collect(self, pipeline: SamplingPipeline, step: int, budget: Budget, seed: int, version: int) -> StepRollouts:
        if self.pivots is None:
            t0 = time.perf_counter()
            self.pivots = self.build_pivots(seed)
            for c in self.pivots:
                self.by_task.setdefault(c.task_index, []).append(c)
            self.profile["pivot/profile_seconds"] = time.perf_counter() - t0
        out = StepRollouts()
        zero_var = groups = skip_hits = 0
        trained: set[tuple[int, int]] = set()
        req = pipeline.begin_step(step, budget)
        while req is not None and len(req):
            chosen = [self.choose(int(p), step) for p in req.prompts]
            counts = [int(c) for c in req.counts]
            t0 = time.perf_counter()
            got = self.generate([c.context for c in chosen], counts, self.params, seed + 7919 * out.calls)
            out.gen_seconds += time.perf_counter() - t0
            out.calls += 1
            decoded = 0
            for p, cand, comps in zip(req.prompts, chosen, got):
                ids = list(cand.context)
                rs = [self.score(cand, x.text, self.reward) for x in comps]
                func = [self.score(cand, x.text, "functional") for x in comps]
                skip_hits += sum(f == 1 and not self.matches(x.text, cand.expert) for f, x in zip(func, comps))
                zero_var += len(set(rs)) <= 1
                groups += 1
                trained.add((cand.task_index, cand.turn))
                for x, r, f in zip(comps, rs, func):
                    decoded += len(x.token_ids)
                    out.rollouts.setdefault(int(p), []).append(Rollout(
                        int(p), ids, list(x.token_ids), list(x.logprobs), x.text, x.finish_reason,
                        min([version, *(x.versions or [version])]), r, True,
                        {"pivot": (cand.task_index, cand.turn), "functional": f, "profile_mu": cand.mu},
                        versions=list(x.versions) or [version] * len(x.token_ids), meta={"turn": cand.turn}))
            out.decoded_tokens += decoded
            budget.charge(sum(counts), decoded)
            req = pipeline.next_request(out.obs())
        rows = [r for rs in out.rollouts.values() for r in rs]
        self.totals["rows"] += len(rows)
        self.totals["reward"] += sum(r.reward for r in rows)
        self.totals["functional_not_exact"] += skip_hits
        self.last = self.profile | {
            "pivot/run_reward_mean": self.totals["reward"] / max(self.totals["rows"], 1),
            "pivot/run_functional_not_exact": self.totals["functional_not_exact"],
            "pivot/groups": groups, "pivot/zero_var_share": zero_var / max(groups, 1),
            "pivot/distinct_trained": len(trained),
            "pivot/reward_mean": float(np.mean([r.reward for r in rows])) if rows else 0.0,
            "pivot/functional_not_exact": skip_hits}
        return out


def build_pivot_collector(cfg: Any, engine: Any, pool: list[Prompt], tok: Any, params: Any,
                          **knobs: Any) -> PivotCollector:
    return PivotCollector(cfg, engine, pool, tok, params, **knobs)
