"""UI-S1 semi-online RL (Lu et al., "UI-S1: Advancing GUI Automation via Semi-online Reinforcement Learning",
arXiv 2509.11543; X-PLUG MobileAgent ``MultiRoundGenerator``, ``core_uis1.py``) on an environment with an expert.

**Rollout**: each task is played ``n`` times over its expert trajectory. At step t the policy generates one action
from a history made of its *own* earlier actions (their sampled tokens, in the run's turn format). The action
is scored against the expert's (``extract_match``: a string match, score 1 or 0, of the actions parsed out of the
replies where the env has ``canonical_action``: ``ledger``'s ``CALC: 23+45`` matches ``CALC: 23 + 45``). On a
match the action is played. On a mismatch the **Patch Module** puts the expert's action into the history (and
plays it) while the rollout's patches are under ``patch_threshold`` (-1 = unlimited); past the budget the rollout
ends. The failed action is still a training sample with its own reward: a patch changes only the history. (Patch
sources "thought-free / off-policy thought / on-policy thought" do not apply: a chain step has no thought; the
patch is the expert's action.)

**Credit** (``algos/step_methods.py``): discounted step returns that break at a step that left the expert,
``A = w_ep A_ep + w_step A_step`` with both readings of the episode term (``episode``), the group filter on the
std of ``G_0``. The advantages go to the trainer as the rows' rewards with ``algo.advantage = "precomputed"``.

**Semi-Online Performance** (SOP, ``evaluate``): the same loop with no patch, stopping at the first mismatch:
``sop_success`` (every step matched) and ``sop_progress`` (matched steps / expert steps, averaged), reported
beside free-running success. The paper's combined SOP score is unverified; both numbers are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rollwise.algos.step_methods import step_returns, uis1_advantages, uis1_keep_tasks
from rollwise.envs.base import check_messages, check_step, guarded_call
from rollwise.envs.methods import StepCollectorBase
from rollwise.sampling import Budget, SamplingPipeline
from rollwise.train.rollout import StepRollouts
from rollwise.types import Prompt, Rollout


@dataclass
class StepSample:
    """One generated action of a semi-online rollout (a training row)."""

    context_ids: list[int]  # [S]
    action_ids: list[int]  # [A]
    logprobs: list[float]  # [A]
    versions: list[int]  # [A]
    finish_reason: str
    text: str
    step: int  # index into the expert trajectory
    reward: float  # r_t: 1 if it matched the expert's action
    matched: bool


@dataclass
class SemiOnlineRollout:
    task_index: int
    expert_len: int
    steps: list[StepSample] = field(default_factory=list)
    patches: int = 0

    @property
    def matched(self) -> int:
        return sum(s.matched for s in self.steps)

    @property
    def success(self) -> bool:
        """Every expert step matched (no patch): the SOP task success."""
        return self.matched == self.expert_len


@dataclass
class _Live:
    roll: SemiOnlineRollout
    env: Any
    expert: list[str]
    history: list[int]  # token ids in the run's turn format
    done: bool = False


def play_semi_online(coll: StepCollectorBase, tasks: list[Prompt], index: list[int], params: Any,
                     patch_threshold: int, seed: int | None, version: int = 0) -> list[SemiOnlineRollout]:
    """One semi-online rollout per task given (``index``: pool indices); ``patch_threshold`` 0 = no patch (SOP)."""
    timeout = coll.limits.timeout_s
    live = []
    for task, i in zip(tasks, index):
        env = coll.make_env()
        first = check_messages(guarded_call(env.reset, task, timeout_s=timeout))
        expert = env.expert(task)
        if not expert:
            raise ValueError(f"uis1: task {task.uid!r} has no expert trajectory (env.expert returned {expert!r})")
        live.append(_Live(SemiOnlineRollout(i, len(expert)), env, list(expert), coll.fmt.first(first)))
    for t in range(max((len(x.expert) for x in live), default=0)):
        act = [x for x in live if not x.done]
        if not act:
            break
        got = coll.generate([x.history for x in act], [1] * len(act), params,
                            None if seed is None else seed + 1_000_003 * t)
        for x, (c,) in zip(act, got):
            want = x.expert[t]
            matched = coll.matches(c.text, want)
            x.roll.steps.append(StepSample(list(x.history), list(c.token_ids), list(c.logprobs),
                                           list(c.versions) or [version] * len(c.token_ids), c.finish_reason,
                                           c.text, t, float(matched), matched))
            if matched:
                action, ids = c.text, list(c.token_ids)
            elif patch_threshold < 0 or x.roll.patches < patch_threshold:
                action, ids, x.roll.patches = want.strip(), None, x.roll.patches + 1  # the Patch Module
            else:
                x.done = True
                continue
            obs, _, done, _ = check_step(guarded_call(x.env.step, action, timeout_s=timeout), (-1e9, 1e9))
            x.history = x.history + coll.after(ids, action, obs)
            x.done = done or t + 1 >= len(x.expert)
    return [x.roll for x in live]


def rollout_rows(rolls: list[SemiOnlineRollout], gamma: float, version: int, **adv: Any) -> tuple[
        list[Rollout], dict[str, float]]:
    """Every step sample of ``rolls`` as a training row whose reward is its UI-S1 advantage, after the group
    filter; and the counters (rows, filtered tasks)."""
    samples, g, rid, tid, sid, rew, g0 = [], [], [], [], [], [], []
    for k, ro in enumerate(rolls):
        r = torch.tensor([s.reward for s in ro.steps])
        m = torch.tensor([s.matched for s in ro.steps])
        ret = step_returns(r, m, gamma)  # [T]
        g0.append(float(ret[0]) if len(ret) else 0.0)
        for s, gt in zip(ro.steps, ret.tolist()):
            samples.append((ro, s))
            g.append(gt), rid.append(k), tid.append(ro.task_index), sid.append(s.step), rew.append(s.reward)
    if not samples:
        return [], {"rows": 0, "filtered_tasks": 0}
    std_threshold = adv.pop("std_threshold")
    advantages = uis1_advantages(torch.tensor(g), torch.tensor(rew), torch.tensor(rid), torch.tensor(tid),
                                 torch.tensor(sid), **adv)  # [N]
    keep_roll = torch.ones(len(rolls), dtype=torch.bool)
    if std_threshold is not None:
        keep_roll = uis1_keep_tasks(torch.tensor(g0), torch.tensor([ro.task_index for ro in rolls]), std_threshold)
    dropped = {ro.task_index for ro, k in zip(rolls, keep_roll.tolist()) if not k}
    rows = []
    for (ro, s), a, k in zip(samples, advantages.tolist(), rid):
        if not keep_roll[k]:
            continue
        rows.append(Rollout(ro.task_index, s.context_ids, s.action_ids, s.logprobs, s.text, s.finish_reason,
                            min([version, *s.versions]), float(a), True,
                            {"step_reward": s.reward, "matched": s.matched, "step": s.step, "patches": ro.patches},
                            versions=list(s.versions), meta={"turn": s.step, "traj": k}))
    return rows, {"rows": len(rows), "filtered_tasks": len(dropped)}


def sop_metrics(rolls: list[SemiOnlineRollout], prefix: str) -> dict[str, float]:
    """SOP of no-patch rollouts: task success (all steps matched) and progress (matched / expert steps)."""
    n = max(len(rolls), 1)
    return {f"{prefix}/sop_success": sum(r.success for r in rolls) / n,
            f"{prefix}/sop_progress": sum(r.matched / r.expert_len for r in rolls) / n}


class SemiOnlineCollector(StepCollectorBase):
    """UI-S1's rollout source (module docstring)."""

    def __init__(self, cfg: Any, engine: Any, pool: list[Prompt], tok: Any, params: Any, **knobs: Any) -> None:
        super().__init__(cfg, engine, pool, tok, params)
        self.patch_threshold, self.gamma = knobs.pop("patch_threshold"), knobs.pop("gamma")
        self.adv = knobs  # episode, mode, w_ep, w_step, std_threshold

    def collect(self, pipeline: SamplingPipeline, step: int, budget: Budget, seed: int, version: int) -> StepRollouts:
        out = StepRollouts()
        rolls_all: list[SemiOnlineRollout] = []
        counts = {"rows": 0, "filtered_tasks": 0}
        req = pipeline.begin_step(step, budget)
        while req is not None and len(req):
            index = [int(p) for p, c in zip(req.prompts, req.counts) for _ in range(int(c))]
            t0 = time.perf_counter()
            rolls = play_semi_online(self, [self.pool[i] for i in index], index, self.params, self.patch_threshold,
                                     seed + 7919 * out.calls, version)
            out.gen_seconds += time.perf_counter() - t0
            out.calls += 1
            rows, got = rollout_rows(rolls, self.gamma, version, **dict(self.adv))
            for r in rows:
                out.rollouts.setdefault(r.prompt_index, []).append(r)
            counts = {k: counts[k] + got[k] for k in counts}
            decoded = sum(len(s.action_ids) for ro in rolls for s in ro.steps)
            out.decoded_tokens += decoded
            out.discarded_rollouts += sum(len(ro.steps) for ro in rolls) - got["rows"]
            budget.charge(len(rolls), decoded)
            rolls_all += rolls
            req = pipeline.next_request(out.obs())
        n = max(len(rolls_all), 1)
        self.last = {"uis1/rollouts": len(rolls_all),
                     "uis1/step_samples_per_rollout": sum(len(r.steps) for r in rolls_all) / n,
                     "uis1/patches_per_rollout": sum(r.patches for r in rolls_all) / n,
                     "uis1/patched_rollouts": sum(r.patches > 0 for r in rolls_all),
                     "uis1/match_rate": float(np.mean([s.matched for r in rolls_all for s in r.steps] or [0.0])),
                     "uis1/rows_trained": counts["rows"], "uis1/filtered_tasks": counts["filtered_tasks"]}
        return out

    def evaluate(self, eval_sets: dict[str, list[Prompt]], params: Any, n: int = 1, prefix: str = "eval") -> dict:
        """Free-running success (``evaluate`` of the episode collector) and SOP of every set."""
        out = super().evaluate(eval_sets, params, n, prefix)
        sops = []
        for name, tasks in eval_sets.items():
            index = [i for i in range(len(tasks)) for _ in range(n)]
            got = sop_metrics(play_semi_online(self, [tasks[i] for i in index], index, params, 0, params.seed),
                              f"{prefix}/{name}")
            out |= got
            sops.append(got)
        for key in ("sop_success", "sop_progress"):
            if sops:
                out[f"{prefix}/mean/{key}"] = float(np.mean([v for s in sops for k, v in s.items()
                                                             if k.endswith(key)]))
        return out


def build_uis1_collector(cfg: Any, engine: Any, pool: list[Prompt], tok: Any, params: Any,
                         **knobs: Any) -> SemiOnlineCollector:
    return SemiOnlineCollector(cfg, engine, pool, tok, params, **knobs)
