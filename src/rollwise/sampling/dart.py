"""DART's adaptive data curation (arXiv:2509.23866), as sampler components that can each be turned off.

- ``dart`` allocator: the dynamic rollout number of dart_rollouter's ``get_dynamic_rollout_n``. s = the task's
  mean of max(reward, 0) over its last ``window`` trajectories; n = G (``rollout_n``) while s < ``threshold``,
  else n = max(``min_n``, floor(9 / s - 7)): 2 at s = 1, 3 at s = 0.9, 8 at s = 0.6. The code's defaults
  (threshold 1.0, min_n 1) reduce only fully solved tasks. Off: the ``fixed`` allocator.
- ``dart_inject`` transform: a persistent rollout store (:class:`RolloutStore`: every successful trajectory with
  its task, id, weight version and ``used`` flag, newest kept, checkpointed with the sampler) and the experience
  pool of DART-GUI's ``trainable_filter.filter_fn``: a task whose trajectories all failed gets the store's newest
  success in place of its *oldest* trajectory, so the group has a contrast; with none stored the group stays
  all-failed (the gates drop it, as DART drops the task). Off: the ``none`` transform.

The trajectory is the unit: in an ``[env]`` run a pool's rows are the turns of its task's episodes (step samples
grouped by task, as DART's ``trajectory_splitter``: longer trajectories weigh more in the group's baseline), and
``GroupObs.traj`` says which rows are one trajectory; a single-turn rollout is a trajectory of one step. A
trajectory's reward is its first row's (the episode's return under ``credit = "return"``).

Choices [unverified]: the success rate's window (8 trajectories, DART's ``rollout_n``); the store keeps the
policy's own successes only (the release's pre-collection of successes is not public); what is injected is the
stored trajectory as generated (its behaviour logprobs and versions), so the update's correction sees its
staleness (the ``dart`` correction's truncated IS, cap 1). The freshness filter, ``used`` bookkeeping and trimming
of DART's data manager matter when a database feeds an asynchronous trainer; here each step trains its own fresh
groups once (``used`` is recorded, and reported, not filtered on).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from rollwise.components import Knobs
from rollwise.sampling.base import Allocator, GroupObs, SampleContext, TrainGroup, Transform


def compute_dart_rollouts(success: float | None, group_size: int, threshold: float = 1.0, min_n: int = 1) -> int:
    """DART's rollouts for a task with success rate ``success`` (None: never seen -> G): G below ``threshold``,
    else max(min_n, floor(9 / s - 7)), at most G. The 1e-9 keeps floor exact where 9 / s is an integer that floating
    point lands just under."""
    if success is None or success < threshold or success <= 0:
        return group_size
    return int(min(max(min_n, math.floor(9.0 / success - 7.0 + 1e-9)), group_size))


def trajectories(pool: GroupObs) -> np.ndarray:
    """[n] trajectory id per row (``pool.traj``; each row its own when absent)."""
    return pool.traj if pool.traj is not None else np.arange(pool.n)


def trajectory_rewards(rewards: np.ndarray, traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids [k] in first-seen order, reward [k] = the reward of each trajectory's first row)."""
    ids, first = np.unique(traj, return_index=True)
    order = np.argsort(first, kind="stable")
    return ids[order], rewards[first[order]]


class DartAllocator(Allocator):
    """Per-task rollout counts from the task's recent success rate (DART's dynamic rollout number)."""

    needs_revisits = True

    class Config(Knobs):
        threshold: float = Field(1.0, gt=0, le=1, description="success rate at or above which a task gets fewer "
                                 "rollouts (dart_rollouter's default 1.0: only solved tasks; 0.6 is where the "
                                 "formula meets 8)")
        min_n: int = Field(1, ge=1, description="fewest rollouts of a reduced task (min_rollout_n)")
        window: int = Field(8, ge=1, le=4096, description="recent trajectories the success rate is taken over "
                            "[unverified: DART's rollout_n]")

    def setup(self) -> None:
        self._recent: dict[int, deque[float]] = {}  # task -> max(reward, 0) of its last trajectories
        self._planned: list[int] = []

    def success(self, prompt: int) -> float | None:
        r = self._recent.get(prompt)
        return float(np.mean(r)) if r else None

    def initial(self, prompts: np.ndarray, ctx: SampleContext) -> np.ndarray:
        n = [compute_dart_rollouts(self.success(int(p)), ctx.group_size, self.threshold, self.min_n) for p in prompts]
        self._planned = n
        return np.asarray(n, dtype=np.int64)

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        """Record the policy's own trajectory outcomes (before any transform injects stored ones)."""
        for pool in pools:
            _, rs = trajectory_rewards(pool.rewards, trajectories(pool))
            recent = self._recent.setdefault(pool.prompt, deque(maxlen=self.window))
            recent.extend(np.maximum(rs, 0.0).tolist())

    def metrics(self) -> dict[str, float]:
        n = self._planned
        return {"n_mean": float(np.mean(n)) if n else 0.0, "n_min": float(min(n)) if n else 0.0,
                "reduced": float(sum(x < max(n) for x in n)) if n else 0.0,
                "tasks_tracked": float(len(self._recent))}

    def state_dict(self) -> dict[str, Any]:
        return {"recent": {p: list(d) for p, d in self._recent.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._recent = {int(p): deque(v, maxlen=self.window) for p, v in state["recent"].items()}


@dataclass
class StoredTrajectory:
    """One trajectory of the store: its rows as generated, with DART's ``rollout_run`` columns."""

    task: int
    traj_id: int  # global, increasing: newer trajectories have larger ids
    version: int  # the step (weight version) that generated it
    reward: float
    used: bool = False  # trained at least once (fresh or injected)
    rewards: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [m] row rewards
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [m]
    mean_logprob: np.ndarray | None = None  # [m]
    payload: list[Any] = field(default_factory=list)  # [m] the trainer's rollouts
    texts: list[str] = field(default_factory=list)  # [m]


class RolloutStore:
    """Successful trajectories per task, newest ``capacity`` kept, with versions and ``used`` flags."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._by_task: dict[int, list[StoredTrajectory]] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_task.values())

    def add(self, entry: StoredTrajectory) -> None:
        entry.traj_id = self._next_id
        self._next_id += 1
        kept = self._by_task.setdefault(entry.task, [])
        kept.append(entry)
        del kept[: max(len(kept) - self.capacity, 0)]

    def newest_positive(self, task: int, threshold: float) -> StoredTrajectory | None:
        """The newest stored trajectory of ``task`` with reward above ``threshold`` (any version, used or not)."""
        for e in reversed(self._by_task.get(task, [])):
            if e.reward > threshold:
                return e
        return None

    def versions(self) -> list[int]:
        return sorted({e.version for v in self._by_task.values() for e in v})

    def state_dict(self) -> dict[str, Any]:
        return {"by_task": self._by_task, "next_id": self._next_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._by_task = {int(k): list(v) for k, v in state["by_task"].items()}
        self._next_id = int(state["next_id"])


class DartInjection(Transform):
    """All-failed groups get the store's newest success of their task in place of their oldest trajectory."""

    needs_revisits = True

    class Config(Knobs):
        capacity: int = Field(4, ge=1, le=1_000_000, description="successful trajectories kept per task (newest)")

    def setup(self) -> None:
        self.store = RolloutStore(self.capacity)
        self._pending: list[StoredTrajectory] = []  # this step's own successes, stored after the update
        self._injected: list[StoredTrajectory] = []
        self._step = {"all_failed": 0, "injected": 0, "no_success": 0, "injected_staleness": 0.0}
        self._total_injected = 0

    def on_generated(self, ctx: SampleContext, pools: list[GroupObs]) -> None:
        thr = ctx.stats.positive_threshold
        st = dict.fromkeys(self._step, 0)
        self._pending, self._injected = [], []
        for pool in pools:
            traj = trajectories(pool)
            ids, rs = trajectory_rewards(pool.rewards, traj)
            if pool.payload is not None:
                for t, r in zip(ids.tolist(), rs.tolist()):
                    if r > thr:
                        self._pending.append(self._entry(pool, traj == t, r, ctx.step))
            if len(ids) == 0 or bool((rs > thr).any()):
                continue
            st["all_failed"] += 1
            stored = self.store.newest_positive(pool.prompt, thr)
            if stored is None or pool.payload is None:
                st["no_success"] += 1
                continue
            self._inject(pool, traj, int(ids[0]), stored)
            self._injected.append(stored)
            st["injected"] += 1
            st["injected_staleness"] += ctx.step - stored.version
        if st["injected"]:
            st["injected_staleness"] /= st["injected"]
        self._step = st
        self._total_injected += int(st["injected"])

    @staticmethod
    def _entry(pool: GroupObs, rows: np.ndarray, reward: float, step: int) -> StoredTrajectory:
        idx = np.flatnonzero(rows)
        return StoredTrajectory(pool.prompt, -1, step, float(reward), False, pool.rewards[idx].copy(),
                                pool.lengths[idx].copy(),
                                None if pool.mean_logprob is None else pool.mean_logprob[idx].copy(),
                                [pool.payload[i] for i in idx] if pool.payload is not None else [],
                                [pool.texts[i] for i in idx] if pool.texts is not None else [])

    @staticmethod
    def _inject(pool: GroupObs, traj: np.ndarray, oldest: int, e: StoredTrajectory) -> None:
        """Replace the rows of trajectory ``oldest`` by the stored trajectory's rows (at its place, first)."""
        keep = np.flatnonzero(traj != oldest)
        m = len(e.rewards)
        if pool.own_rewards is None:
            pool.own_rewards = pool.rewards.copy()
        pool.rewards = np.concatenate([e.rewards, pool.rewards[keep]]).astype(np.float64)
        pool.lengths = np.concatenate([e.lengths, pool.lengths[keep]])
        if pool.mean_logprob is not None:
            lp = e.mean_logprob if e.mean_logprob is not None else np.zeros(m)
            pool.mean_logprob = np.concatenate([lp, pool.mean_logprob[keep]])
        pool.payload = list(e.payload) + [pool.payload[i] for i in keep] if pool.payload is not None else None
        if pool.texts is not None:
            pool.texts = list(e.texts or [""] * m) + [pool.texts[i] for i in keep]
        pool.traj = np.concatenate([np.full(m, oldest), traj[keep]])

    def observe(self, ctx: SampleContext, pools: list[GroupObs], trained: list[TrainGroup],
                losses: np.ndarray | None = None) -> None:
        done = {g.prompt for g in trained}
        for e in self._injected:
            e.used = e.used or e.task in done
        for e in self._pending:
            e.used = e.task in done
            self.store.add(e)
        self._pending, self._injected = [], []

    def metrics(self) -> dict[str, float]:
        versions = self.store.versions()
        return {**{k: float(v) for k, v in self._step.items()}, "injected_total": float(self._total_injected),
                "store_size": float(len(self.store)), "store_versions": float(len(versions)),
                "store_oldest_version": float(versions[0]) if versions else -1.0}

    def state_dict(self) -> dict[str, Any]:
        return {"store": self.store.state_dict(), "injected_total": self._total_injected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.store.load_state_dict(state["store"])
        self._total_injected = int(state["injected_total"])
